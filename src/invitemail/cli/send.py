"""`send`: the options parsed, the plan the library prepares (send/plan.py) confirmed, its
run shown. `send --due` is due.py's, shown here."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from invitemail.cli.shared import (
    delimiter_of,
    event_options,
    handle_errors,
    open_campaign,
    print_problems,
    say,
    terminal_console,
)
from invitemail.errors import ExitCode, InvitemailError

if TYPE_CHECKING:
    from invitemail.auth.credentials import TokenCredential
    from invitemail.campaign import Campaign
    from invitemail.send.delivery import SendOptions, SendResult
    from invitemail.send.plan import SendPlan

PASSWORD_ENV = "INVITEMAIL_SMTP_PASSWORD"
PASSWORD_TRIES = 3  # a password typed at the prompt that the relay refuses is asked again


def take_password_from_environment() -> None:
    """Take the SMTP password out of the environment before anything else runs, so that no
    process started from here (the worker processes, SpamAssassin, a token command)
    inherits it: the worker processes fork from a server that is started with the
    environment as it is then. It is kept with this command's context."""
    password = os.environ.pop(PASSWORD_ENV, None)
    click.get_current_context().meta[PASSWORD_ENV] = password


def _password(campaign: Campaign, dry_run: bool) -> str | TokenCredential | None:
    from invitemail.send.plan import credential

    smtp = campaign.config.smtp
    # Taken out of the environment as the command started (main); popped here as well for
    # a caller that did not go through main.
    password = os.environ.pop(PASSWORD_ENV, None) or \
        click.get_current_context().meta.pop(PASSWORD_ENV, None)
    if smtp.username is None or dry_run:
        return None
    if smtp.auth.xoauth2:
        return credential(campaign.config)
    if password:
        return password
    if sys.stdin.isatty():
        return _prompt_password(campaign)
    raise InvitemailError(f"{smtp.where}: no SMTP password for {smtp.username}",
                          hint=f"set the environment variable {PASSWORD_ENV}, or run in a "
                          "terminal to be asked for it")


def _prompt_password(campaign: Campaign) -> str:
    """Ask for the password and try it (log in and quit) before anything is sent; a password
    the relay refuses is asked for again, up to PASSWORD_TRIES times."""
    from invitemail.send.plan import login_refused

    smtp = campaign.config.smtp
    for attempt in range(1, PASSWORD_TRIES + 1):
        value: str = click.prompt(f"SMTP password for {smtp.username} at {smtp.where}",
                                  hide_input=True)
        refused = login_refused(smtp, value)
        if refused is None:
            return value
        if attempt == PASSWORD_TRIES:
            raise type(refused)(
                f"{refused} ({PASSWORD_TRIES} passwords tried; nothing was sent)",
                hint="check smtp.username, then run again and type the password at the "
                f"prompt, or set {PASSWORD_ENV}") from None
        left = PASSWORD_TRIES - attempt
        say(f"Error: {refused}", err=True)
        say(f"Type the password again ({left} tr{'ies' if left != 1 else 'y'} left).",
            err=True)
    raise AssertionError("unreachable")  # the last try returns or raises


def _rate(value: str | None) -> float | None:
    if value is None:
        return None
    from invitemail.inputs.config import parse_rate

    try:
        return parse_rate(value)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--rate") from None


@click.command()
@event_options
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--dry-run", is_flag=True, help="Do everything except connecting.")
@click.option("--test-to", metavar="ADDR", help="Send the first registrant's message (or "
              "--limit N) to ADDR only, marked as a test; not journaled.")
@click.option("--limit", type=click.IntRange(min=1), help="Send at most N messages this run.")
@click.option("--concurrency", type=click.IntRange(1, 100),
              help="SMTP connections at once (default: sending.concurrency).")
@click.option("--rate", "rate_text", metavar="RATE",
              help='Cap the rate: "N/s", "N/min" or "N/h" (default: sending.rate).')
@click.option("--retry-failed", is_flag=True, help="Also send to registrants whose last "
              "attempt failed.")
@click.option("--resend-uncertain", is_flag=True, help="Also send to registrants whose "
              "message may or may not have arrived.")
@click.option("--skip-invalid", is_flag=True, help="Send to the valid rows even when others "
              "have problems.")
@click.option("--restore-journal", is_flag=True, help="The journal is missing, damaged or "
              "replaced: rebuild it from the record of what was sent from this machine, then "
              "continue.")
@click.option("--new-journal", is_flag=True, help="The journal is missing, damaged or of "
              "another event: move it aside (it is kept) and start afresh; whoever it had as "
              "sent may be mailed again.")
@click.option("--due", is_flag=True, help="Send what [schedule] says is due now (reminders "
              "to invited registrants; with --attendance, the follow-up in its window) and "
              "nothing else; no question asked: for cron or a systemd timer.")
@click.option("--reschedule", is_flag=True, help="After a cancellation, with a new [event] "
              "start: send the update that restores the calendar entry, and lift the block.")
@handle_errors
@handle_errors
def send(event: Path, template: str, registrants: Path | None, sheet: str | None,
         encoding: str | None, delimiter: str | None, attendance: Path | None, yes: bool,
         dry_run: bool, test_to: str | None,
         limit: int | None, concurrency: int | None, rate_text: str | None,
         retry_failed: bool, resend_uncertain: bool, skip_invalid: bool,
         restore_journal: bool, new_journal: bool, due: bool, reschedule: bool) -> None:
    """Send the messages, with a journal so that a rerun continues where it stopped.

    Only one send runs per event folder at a time; a second one exits 1 and says which
    process holds the folder."""
    if not (due or dry_run or test_to is not None or sheet is not None):
        # The workers' imports, at once: before this process imports the sending stack.
        from invitemail.pool import start_server

        start_server("invitemail.preload", registrants or Path(event) / "registrants.csv")
    if due:
        from invitemail.send.delivery import SendOptions

        given = [name for name, on in (
            ("--template", template != "invitation"), ("--test-to", test_to is not None),
            ("--limit", limit is not None), ("--retry-failed", retry_failed),
            ("--resend-uncertain", resend_uncertain), ("--reschedule", reschedule),
            ("--restore-journal", restore_journal), ("--new-journal", new_journal)) if on]
        if given:
            raise click.UsageError(f"--due sends what the schedule says; it does not go with "
                                   f"{', '.join(given)}")
        _send_due(event, registrants=registrants, sheet=sheet, attendance=attendance,
                  encoding=encoding, delimiter=delimiter_of(delimiter),
                  options=SendOptions(dry_run=dry_run, concurrency=concurrency,
                                      rate=_rate(rate_text)))
        return
    if reschedule:
        if template not in ("invitation", "update"):  # invitation: the default, not given
            raise click.UsageError(f"--reschedule sends the update, not {template!r}: leave "
                                   "out --template")
        template = "update"

    if restore_journal and new_journal:
        raise click.UsageError("--restore-journal rebuilds the journal, --new-journal starts "
                               "afresh: give one of them")
    if (restore_journal or new_journal) and (dry_run or test_to is not None):
        raise click.UsageError("--restore-journal and --new-journal change the journal; "
                               f"{'--dry-run' if dry_run else '--test-to'} does not use them")
    rate = _rate(rate_text)
    if test_to is not None and (retry_failed or resend_uncertain):
        raise click.UsageError("--test-to sends test copies; it does not go with "
                               "--retry-failed or --resend-uncertain")
    if not (yes or dry_run) and not sys.stdin.isatty():
        raise click.UsageError("send asks for confirmation, and there is no terminal to ask "
                               "on; add --yes to send, or --dry-run to try")
    campaign = open_campaign(event, template, registrants, encoding, delimiter, sheet,
                             attendance, sending=True)
    if not (dry_run or test_to is not None or restore_journal or new_journal):
        # The workers start on the other core (from the fork server's imports) while this
        # process imports the sending stack; a rebuilt journal would change what they build.
        campaign.start_workers()
    from invitemail.send.delivery import SendOptions

    if test_to is not None:
        from invitemail.send.plan import test_recipient

        try:
            test_to = test_recipient(campaign.config, test_to)
        except ValueError as err:
            raise click.BadParameter(f"{test_to!r}: {err}", param_hint="--test-to") from None
    options = SendOptions(limit=limit, retry_failed=retry_failed,
                          resend_uncertain=resend_uncertain, skip_invalid=skip_invalid,
                          dry_run=dry_run, test_to=test_to, concurrency=concurrency, rate=rate,
                          restore_journal=restore_journal, new_journal=new_journal,
                          reschedule=reschedule)
    _send_planned(campaign, options, yes=yes)


def _send_planned(campaign: Campaign, options: SendOptions, *, yes: bool) -> None:
    """The library prepares (lock, journal, check); here the question, the run's progress,
    the summary and the exit code."""
    from invitemail.outputs.progress import make_progress
    from invitemail.send.plan import prepare_send

    with prepare_send(campaign, options) as plan:
        report = plan.checked
        print_problems(report)  # warnings, and with --skip-invalid the rows left out
        if report.scan.invalid:
            from invitemail.send.status import rows_line  # only for a list with invalid rows

            say(rows_line(report.scan))
        if not options.dry_run and not yes and plan.planned:
            config = campaign.config
            click.confirm(f"Send {_question(plan)} for {config.event.title!r} from "
                          f"{config.sender.address} via {config.smtp.where}?", abort=True)
        password = _password(campaign, options.dry_run)
        with make_progress(terminal_console(), campaign.template) as progress:
            result = plan.run(password, progress=progress)
        print_send_summary(campaign, result)
        if plan.record_reschedule(result):
            say("The event is rescheduled: the cancellation no longer stops the invitation, "
                "reminders and updates.")
    sys.exit(int(send_exit_code(result)))


def _question(plan: SendPlan) -> str:
    """The question's words: how many messages go now, of how many, and for an update what
    changed since the registrants' last message."""
    from invitemail.send.status import variants_text

    options, planned = plan.options, plan.planned
    if options.test_to is not None:
        return f"a test of {planned} message(s) to {options.test_to}"
    what = f"{plan.campaign.template} message{'s' if planned != 1 else ''} to {planned} " \
        f"registrant{'s' if planned != 1 else ''}"
    if planned < plan.messages:
        what += f" (of {plan.messages}; the others have it or wait for a rerun option)"
    if plan.variants:
        what += f" ({variants_text(plan.variants)} of all the follow-ups)"
    changed = plan.changed()
    if changed:
        what += f", saying that the {' and the '.join(changed)} changed"
    return what


def _send_due(event: Path, *, registrants: Path | None, sheet: str | None,
              attendance: Path | None, encoding: str | None, delimiter: str | None,
              options: SendOptions) -> None:
    """`send --due`: the library plans and sends (due.py); here the password (asked only
    when something goes), the progress and the summary."""
    from invitemail.outputs.progress import make_progress
    from invitemail.send.due import send_due
    from invitemail.send.due_report import due_exit_code, due_summary

    result = send_due(
        event, password=lambda campaign: _password(campaign, options.dry_run),
        progress=lambda name: make_progress(terminal_console(), name),
        registrants=registrants, encoding=encoding, delimiter=delimiter, sheet=sheet,
        attendance=attendance, base=options)
    for line, to_stderr in due_summary(result, event):
        say(line, err=to_stderr)
    sys.exit(int(due_exit_code(result)))


def send_exit_code(result: SendResult) -> ExitCode:
    """0 when every registrant has the message; 3 when some do and a rerun (maybe with
    --retry-failed or --resend-uncertain) continues; 1 when this run sent nothing and the
    relay or the settings stopped it."""
    if result.dry_run or result.complete:
        return ExitCode.OK
    if result.stopped is not None and not result.sent and not result.interrupted:
        return ExitCode.INPUT
    return ExitCode.PARTIAL


def print_send_summary(campaign: Campaign, result: SendResult) -> None:
    where = campaign.config.smtp.where
    if result.dry_run:
        say(f"Dry run: {result.planned} message{'s' if result.planned != 1 else ''} would be "
            f"sent via {where}; nothing was sent.")
        if result.held_back_by is not None:
            say(f"The daily limit of {result.held_back_by} (sending.daily_limit) lets only "
                "these go now; the others would stay pending for a later run.")
        _print_skipped(result)
        return
    if result.set_aside is not None:
        say(f"The old journal was moved aside to {result.set_aside} (kept).")
    if result.restored:
        say(f"Rebuilt the journal from the record of what was sent: {result.restored} "
            f"message{'s' if result.restored != 1 else ''}.")
    if result.reconciled:
        say(f"{result.reconciled} message(s) the journal had as in flight or uncertain are "
            "recorded as sent; they are marked sent.")
    if result.recovered:
        say(f"{result.recovered} message(s) were in flight when an earlier run stopped; they "
            "are marked uncertain.")
    kind = "test message" if result.test else "message"
    say(f"Sent {result.sent} {kind}{'s' if result.sent != 1 else ''}, {result.failed} failed, "
        f"{result.uncertain} uncertain, via {where}.")
    _print_skipped(result)
    for address, reply in result.failures[:20]:
        say(f"  failed: {address}: {reply}", err=True)
    if len(result.failures) > 20:
        say(f"  ... and {len(result.failures) - 20} more; see `invitemail status`", err=True)
    if result.stopped is not None:
        say(f"Error: the run stopped: {result.stopped}", err=True)
        if result.stopped.hint:
            say(f"Hint: {result.stopped.hint}", err=True)
    if result.interrupted:
        say("Interrupted: messages in flight finished or are marked uncertain.", err=True)
    if result.test:
        return
    event = campaign.config.folder
    template = "" if campaign.template == "invitation" else f" --template {campaign.template}"
    if campaign.stage != campaign.template:  # a reschedule (`--due` says its own)
        template = " --reschedule"
    if getattr(result.stopped, "reason", None) is not None:  # a quota, the daily limit
        say("The registrants not sent to stay pending. To continue, run the same command "
            f"again then: invitemail send {event}{template}", err=True)
    elif result.interrupted or result.stopped is not None:
        if send_exit_code(result) is ExitCode.INPUT:  # stopped before sending anything
            say(f"Nothing was sent. Once that is fixed, run the same command again: "
                f"invitemail send {event}{template}", err=True)
        else:
            say(f"To continue, run the same command again: invitemail send {event}{template}",
                err=True)
    if result.failed:
        say(f"To try the failed ones again: invitemail send {event}{template} --retry-failed",
            err=True)
    if result.uncertain:
        say(f"Uncertain ones may have arrived; see `invitemail status {event}{template}`, and "
            "resend them with --resend-uncertain only if they did not.", err=True)


def _print_skipped(result: SendResult) -> None:
    from invitemail.send.delivery import Skip

    for skip in Skip:  # in the order of the enum: sent, failed, uncertain
        if result.skipped[skip]:
            say(f"Skipped {result.skipped[skip]}: {skip.value}.")
    removed = sum(result.removed.values())
    if removed:
        states = ", ".join(f"{number} {state}" for state, number in sorted(result.removed.items()))
        say(f"Not sent to {removed}: removed from the list ({states} in the journal); "
            "`invitemail status` lists them.")
