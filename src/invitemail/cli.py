"""The command line: the only module that uses click, and the only one that prints.

Each command parses its options, calls the library, and turns the library's errors into a
sentence on stderr and the exit code product.md promises. Heavy imports (Jinja2, aiosmtplib,
icalendar, babel) happen inside the commands so that ``invitemail --help`` stays fast.
"""

from __future__ import annotations

import functools
import itertools
import os
import sys
import traceback
from collections.abc import Callable, Container
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from invitemail import __version__
from invitemail.errors import ExitCode, InvitemailError

if TYPE_CHECKING:
    from rich.console import Console

    from invitemail.auth.credentials import TokenCredential
    from invitemail.auth.settings import OAuthSettings
    from invitemail.campaign import Built, Campaign, CheckReport
    from invitemail.inputs.registrants import Scan
    from invitemail.journal.folderlock import FolderLock
    from invitemail.journal.safeguard import Prepared
    from invitemail.send.delivery import SendOptions, SendResult

PASSWORD_ENV = "INVITEMAIL_SMTP_PASSWORD"
PASSWORD_TRIES = 3  # a password typed at the prompt that the relay refuses is asked again
F = TypeVar("F", bound=Callable[..., Any])


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # No colour and no markup tricks when the output is not a terminal.
    return Console(file=stream, highlight=False, soft_wrap=True,
                   no_color=not stream.isatty() or "NO_COLOR" in os.environ)


def _say(text: str = "", *, err: bool = False) -> None:
    click.echo(text, err=err)


def handle_errors(command: F) -> F:
    """Turn the library's errors into a message and an exit code; never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = bool(click.get_current_context().find_root().params.get("debug"))
        try:
            return command(*args, **kwargs)
        except InvitemailError as err:
            if debug:
                traceback.print_exc()
            _say(f"Error: {err}", err=True)
            if err.hint:
                _say(f"Hint: {err.hint}", err=True)
            sys.exit(int(err.exit_code))
        except KeyboardInterrupt:
            _say("Interrupted; nothing more was done.", err=True)
            sys.exit(int(ExitCode.PARTIAL))

    return wrapper  # type: ignore[return-value]


def event_options(command: F) -> F:
    """The argument and options every command that reads an event shares."""
    decorators = [
        click.argument("event", default=".", type=click.Path(path_type=Path)),
        click.option("--template", "-t", default="invitation", show_default=True,
                     help="invitation, reminder, update, cancellation, or a template of the "
                     "event's templates/ folder."),
        click.option("--registrants", type=click.Path(path_type=Path, dir_okay=False),
                     help="Read registrants from FILE (.csv or .xlsx) instead of "
                     "EVENT/registrants.csv (or EVENT/registrants.xlsx)."),
        click.option("--sheet", metavar="NAME", help="The workbook's sheet with the "
                     "registrants (default: the first)."),
        click.option("--encoding", help="The registrant file's encoding (default: detected; "
                     "UTF-8 or cp1252)."),
        click.option("--delimiter", type=click.Choice([",", ";", "tab"]),
                     help="The registrant file's delimiter (default: detected)."),
        click.option("--attendance", type=click.Path(path_type=Path, dir_okay=False),
                     help="With --template followup: the platform's attendee or participants "
                     "report (Zoom, Teams); attendees get thanks, the others missed."),
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


def _open_campaign(event: Path, template: str, registrants: Path | None, encoding: str | None,
                   delimiter: str | None, sheet: str | None = None,
                   attendance: Path | None = None, *, assume: str | None = None,
                   sending: bool = False) -> Campaign:
    from invitemail.campaign import Campaign

    return Campaign.open(event, template=template, registrants=registrants, encoding=encoding,
                         delimiter="\t" if delimiter == "tab" else delimiter, sheet=sheet,
                         attendance=attendance, assume=assume, attendance_required=sending)


def _assumed(template: str, attendance: Path | None) -> tuple[str | None, ...]:
    """The follow-ups to show in turn: without the attendance report, `check` and `preview`
    go over both (thanks, then missed); otherwise each registrant's own (None)."""
    from invitemail.send.followup import FOLLOWUP_TEMPLATE, VARIANTS

    return VARIANTS if template == FOLLOWUP_TEMPLATE and attendance is None else (None,)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="invitemail")
@click.option("--debug", is_flag=True, help="Show a traceback with errors (for bug reports).")
def main(debug: bool) -> None:
    """Send event invitations from a registrant list: check, preview, send, status.

    Every command takes the event folder (with event.toml and registrants.csv) as EVENT,
    default the current folder. Start with `invitemail init DIR`.
    """
    _take_password_from_environment()


# -- init ---------------------------------------------------------------------------------


@main.command()
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--templates", is_flag=True,
              help="Also copy the built-in templates into FOLDER/templates to edit.")
@handle_errors
def init(folder: Path, templates: bool) -> None:
    """Create a ready event folder to edit (never overwrites a file)."""
    from invitemail.outputs.scaffold import create_event

    written = create_event(folder, templates=templates)
    for path in written[:2]:
        _say(f"wrote {path}")
    if templates:
        _say(f"copied {len(written) - 2} template files into {folder / 'templates'}")
    _say(f"\nNext: edit {folder / 'event.toml'} and {folder / 'registrants.csv'}, then run\n"
         f"  invitemail check {folder}")


# -- check --------------------------------------------------------------------------------


def _print_problems(report: CheckReport) -> None:
    for problem in report.problems:
        _say(str(problem), err=True)
    for error in report.template_errors:
        _say(f"Error: {error}", err=True)
        if error.hint:
            _say(f"Hint: {error.hint}", err=True)


def _summary_line(campaign: Campaign, report: CheckReport) -> str:
    scan = report.scan
    languages = ", ".join(sorted(scan.languages)) or "none"
    dup = f", {scan.duplicates} duplicate{'s' if scan.duplicates != 1 else ''} skipped" \
        if scan.duplicates else ""
    variants = _variants_text(report.variants)
    return (f"{campaign.source.label}: {scan.valid} registrant{'s' if scan.valid != 1 else ''} "
            f"(languages: {languages}){dup}; {report.messages} {campaign.template} "
            f"message{'s' if report.messages != 1 else ''} built"
            + (f" ({variants})" if variants else ""))


def _variants_text(variants: dict[str, int]) -> str:
    """``"3 thanks, 2 missed"``: a follow-up's messages by the template each got."""
    from invitemail.send.followup import VARIANTS

    return ", ".join(f"{variants[v]} {v}" for v in VARIANTS if variants.get(v))


def _rows_line(scan: Scan, *, journal_keys: Container[str] | None = None) -> str:
    """How every row of the list was taken: registrants, duplicates, problems."""
    def count(number: int, what: str, plural: str = "s") -> str:
        return f"{number} {what}{plural if number != 1 else ''}"

    registrants = count(scan.valid, "registrant")
    if journal_keys is not None:
        absent = sum(1 for a in scan.addresses if a.lower() not in journal_keys)
        registrants += f" ({absent} not in the journal yet)" if absent else ""
    parts = [registrants]
    if scan.duplicates:
        parts.append(count(scan.duplicates, "duplicate"))
    if scan.invalid:
        parts.append(f"{scan.invalid} with {'problems' if scan.invalid != 1 else 'a problem'}"
                     " (never sent)")
    if scan.ignored:
        parts.append(count(scan.ignored, "repeated header row"))
    return f"{count(scan.rows, 'row')} read: " + ", ".join(parts)


@main.command()
@event_options
@click.option("--lint", is_flag=True, help="Also lint every built message (headers, MIME, "
              "line lengths) and score a sample with SpamAssassin when it is installed.")
@handle_errors
def check(event: Path, template: str, registrants: Path | None, sheet: str | None,
          encoding: str | None, delimiter: str | None, attendance: Path | None, lint: bool) -> None:
    """Validate the settings, every registrant and every message; send nothing."""
    errors = 0
    for assume in _assumed(template, attendance):
        campaign = _open_campaign(event, template, registrants, encoding, delimiter,
                                  sheet, attendance, assume=assume)
        if assume is not None:
            _say(f"The follow-up as {assume} (without --attendance, both are checked):")
        errors += _check_campaign(campaign, lint)
    errors += _check_signed_in(campaign)
    if errors:
        _say(f"{errors} problem{'s' if errors != 1 else ''} to fix before sending.", err=True)
        sys.exit(int(ExitCode.INPUT))
    _say("No problems found. Nothing was sent.")


def _check_campaign(campaign: Campaign, lint: bool) -> int:
    """`check` of one campaign: its problems printed, and counted."""
    lint_problems: list[str] = []
    sample: list[Built] = []
    on_message = inspect = None
    if lint:
        from invitemail.outputs.lint import SPAM_SAMPLE, lint_built

        def on_message(built: Built, problems: list[str]) -> None:
            lint_problems.extend(f"{built.recipient}: {p}" for p in problems)
            if len(sample) < SPAM_SAMPLE:
                sample.append(built)

        inspect = lint_built  # run where each message is built: on every core

    report = campaign.check(on_message=on_message, inspect=inspect)
    _print_problems(report)
    _warn_sending_time(campaign, report)
    if sample:
        lint_problems.extend(_spamassassin(sample))
    for problem in lint_problems:
        _say(f"lint: {problem}", err=True)
    _say(_summary_line(campaign, report))
    _say(_rows_line(report.scan))
    return len(report.errors) + len(report.template_errors) + len(lint_problems)


def _check_signed_in(campaign: Campaign) -> int:
    """With smtp.auth = "xoauth2": 1 (after saying why) when no access token can be had
    (no login, an expired or revoked one, a failing token_command); else 0."""
    if not campaign.config.smtp.auth.xoauth2:
        return 0
    try:
        _credential(campaign)
    except InvitemailError as err:
        _say(f"Error: {err}", err=True)
        if err.hint:
            _say(f"Hint: {err.hint}", err=True)
        return 1
    return 0


def _credential(campaign: Campaign) -> TokenCredential:
    """The access token's source for smtp.auth = "xoauth2", tried once (nothing is sent
    with a login that does not work)."""
    from invitemail.auth.oauth import credential_for

    config = campaign.config
    credential = credential_for(config.smtp, config.path,
                                login_command=f"invitemail login {config.folder}")
    credential.fetch_now()
    return credential


def _warn_sending_time(campaign: Campaign, report: CheckReport) -> None:
    from invitemail.send.limits import sending_time_check

    config = campaign.config
    warning = sending_time_check(config, campaign.template, report.messages, campaign.now)
    if warning is not None:
        _say(f"{config.path}: warning: {warning}", err=True)


def _spamassassin(sample: list[Built]) -> list[str]:
    """Score a sample with SpamAssassin's local rules when it is installed; print each
    score and return the messages it takes for spam."""
    from invitemail.outputs.lint import (
        SPAM_GOOD,
        SPAM_REQUIRED,
        SpamAssassinError,
        spamassassin_scores,
    )

    try:
        scores = spamassassin_scores([built.data for built in sample])
    except SpamAssassinError as err:
        _say(f"warning: no spam score: {err}", err=True)
        return []
    if scores is None:
        _say("SpamAssassin is not installed, so no spam score "
             "(on Debian or Ubuntu: apt-get install spamassassin).")
        return []
    problems = []
    for built, score in zip(sample, scores, strict=True):
        _say(f"SpamAssassin: {built.recipient}: {score}")
        if score.score >= SPAM_REQUIRED:
            problems.append(f"{built.recipient}: SpamAssassin takes it for spam: {score}")
        elif score.score >= SPAM_GOOD:
            _say(f"warning: {built.recipient}: SpamAssassin scores it {score.score:.1f}; "
                 f"keep it under {SPAM_GOOD:.1f} (the rules named above say why)", err=True)
    return problems


# -- preview ------------------------------------------------------------------------------


@main.command()
@event_options
@click.option("--limit", "-n", type=click.IntRange(min=0), default=None,
              help="How many messages to print (default 1), or to write with --out "
              "(default all).")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False),
              help="Write one .eml file per registrant into this folder, and index.html: a "
              "gallery of them to open in a browser.")
@click.option("--open", "open_gallery", is_flag=True,
              help="Open the gallery in the default browser (without --out, it is written "
              "to a new temporary folder).")
@handle_errors
def preview(event: Path, template: str, registrants: Path | None, sheet: str | None,
            encoding: str | None, delimiter: str | None, attendance: Path | None,
            limit: int | None, out: Path | None, open_gallery: bool) -> None:
    """Show exactly what registrants will receive, without sending."""
    from invitemail.inputs.registrants import Scan, unique_registrants
    from invitemail.outputs.preview import readable

    # A follow-up without the attendance report: both of its templates, one after the other.
    campaigns = [_open_campaign(event, template, registrants, encoding, delimiter, sheet,
                                attendance, assume=assume)
                 for assume in _assumed(template, attendance)]
    campaign = campaigns[0]
    if out is None and open_gallery:
        import tempfile

        out = Path(tempfile.mkdtemp(prefix="invitemail-preview-"))
    if out is not None:
        from invitemail.outputs.gallery import GalleryWriter, view_of
        from invitemail.outputs.preview import journal_states

        config = campaign.config
        failed = False
        with GalleryWriter(out, journal_states(config.folder, campaign.template),
                           title=f"{config.event.title}: {campaign.template}",
                           zone=config.event.zone) as writer:
            for campaign in campaigns:
                if limit is None:
                    report = campaign.check(on_message=writer, inspect=view_of)
                    writer.skipped(report.scan.duplicates)
                    _print_problems(report)
                    failed = failed or bool(report.template_errors)
                else:
                    scan = Scan()  # the duplicates among the rows read, for the summary
                    for built in campaign.messages(
                            itertools.islice(unique_registrants(campaign.source, scan), limit),
                            expected=limit):
                        writer(built)
                    writer.skipped(scan.duplicates)
        # The count line stays last: scripts (and tests/test_cli_input.py) read it.
        _say(f"gallery: {writer.index} (open it in a browser)")
        _say(f"wrote {writer.count} message{'s' if writer.count != 1 else ''} to {out}")
        if failed:  # the gallery shows what could be built; the template must still be fixed
            sys.exit(int(ExitCode.INPUT))
        if open_gallery:
            import webbrowser

            if not webbrowser.open(writer.index.resolve().as_uri()):
                _say(f"No browser could be started; open {writer.index} in one.", err=True)
        return
    shown = 0
    wanted = 1 if limit is None else limit
    for campaign in campaigns:
        built_ones = campaign.messages(unique_registrants(campaign.source), expected=wanted)
        for built in itertools.islice(built_ones, wanted):
            if shown:
                _say("\n" + "-" * 72 + "\n")
            _say(readable(built))
            shown += 1
    if not shown and wanted:
        _say("No registrants to preview.", err=True)
        sys.exit(int(ExitCode.INPUT))


# -- send ---------------------------------------------------------------------------------


def _take_password_from_environment() -> None:
    """Take the SMTP password out of the environment before anything else runs, so that no
    process started from here (the worker processes, SpamAssassin, a token command)
    inherits it: the worker processes fork from a server that is started with the
    environment as it is then. It is kept with this command's context."""
    password = os.environ.pop(PASSWORD_ENV, None)
    click.get_current_context().meta[PASSWORD_ENV] = password


def _password(campaign: Campaign, dry_run: bool) -> str | TokenCredential | None:
    smtp = campaign.config.smtp
    # Taken out of the environment as the command started (main); popped here as well for
    # a caller that did not go through main.
    password = os.environ.pop(PASSWORD_ENV, None) or \
        click.get_current_context().meta.pop(PASSWORD_ENV, None)
    if smtp.username is None or dry_run:
        return None
    if smtp.auth.xoauth2:
        return _credential(campaign)
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
    import asyncio

    from invitemail.send.transport import AuthenticationError, check_login

    smtp = campaign.config.smtp
    for attempt in range(1, PASSWORD_TRIES + 1):
        value: str = click.prompt(f"SMTP password for {smtp.username} at {smtp.where}",
                                  hide_input=True)
        try:
            asyncio.run(check_login(smtp, value))
        except AuthenticationError as err:
            if attempt == PASSWORD_TRIES:
                raise AuthenticationError(
                    f"{err} ({PASSWORD_TRIES} passwords tried; nothing was sent)",
                    hint="check smtp.username, then run again and type the password at the "
                    f"prompt, or set {PASSWORD_ENV}") from None
            left = PASSWORD_TRIES - attempt
            _say(f"Error: {err}", err=True)
            _say(f"Type the password again ({left} tr{'ies' if left != 1 else 'y'} left).",
                 err=True)
            continue
        return value
    raise AssertionError("unreachable")  # the last try returns or raises


def _rate(value: str | None) -> float | None:
    if value is None:
        return None
    from invitemail.inputs.config import parse_rate

    try:
        return parse_rate(value)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--rate") from None


@main.command()
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
def send(event: Path, template: str, registrants: Path | None, sheet: str | None,
         encoding: str | None, delimiter: str | None, attendance: Path | None, yes: bool,
         dry_run: bool, test_to: str | None,
         limit: int | None, concurrency: int | None, rate_text: str | None,
         retry_failed: bool, resend_uncertain: bool, skip_invalid: bool,
         restore_journal: bool, new_journal: bool, due: bool, reschedule: bool) -> None:
    """Send the messages, with a journal so that a rerun continues where it stopped.

    Only one send runs per event folder at a time; a second one exits 1 and says which
    process holds the folder."""
    from invitemail.inputs.addresses import AddressError, is_loopback_host, normalize_address
    from invitemail.send.delivery import SendOptions

    if due:
        given = [name for name, on in (
            ("--template", template != "invitation"), ("--test-to", test_to is not None),
            ("--limit", limit is not None), ("--retry-failed", retry_failed),
            ("--resend-uncertain", resend_uncertain), ("--reschedule", reschedule),
            ("--restore-journal", restore_journal), ("--new-journal", new_journal)) if on]
        if given:
            raise click.UsageError(f"--due sends what the schedule says; it does not go with "
                                   f"{', '.join(given)}")
        _send_due(event, registrants=registrants, sheet=sheet, attendance=attendance,
                  encoding=encoding,
                  delimiter="\t" if delimiter == "tab" else delimiter,
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
    campaign = _open_campaign(event, template, registrants, encoding, delimiter, sheet,
                              attendance, sending=True)
    if test_to is not None:  # .test and the like only through a local test server
        try:
            test_to = normalize_address(
                test_to, local_test=is_loopback_host(campaign.config.smtp.host))
        except AddressError as err:
            raise click.BadParameter(f"{test_to!r}: {err}", param_hint="--test-to") from None
    options = SendOptions(limit=limit, retry_failed=retry_failed,
                          resend_uncertain=resend_uncertain, skip_invalid=skip_invalid,
                          dry_run=dry_run, test_to=test_to, concurrency=concurrency, rate=rate,
                          restore_journal=restore_journal, new_journal=new_journal,
                          reschedule=reschedule)
    if test_to is None:  # before any work: nothing after a cancellation (reschedule.py)
        from invitemail.send.reschedule import prepare_reschedule, refuse_if_cancelled

        refuse_if_cancelled(campaign, reschedule=reschedule)
        if reschedule:
            options.only = prepare_reschedule(campaign)
    lock = None
    if not dry_run and test_to is None:  # at once: a second run stops before any work
        from invitemail.journal.folderlock import FolderLock

        lock = FolderLock.acquire(campaign.config.folder)
    try:
        _send_locked(campaign, options, yes=yes, lock=lock)
    finally:
        if lock is not None:
            lock.release()


def _send_locked(campaign: Campaign, options: SendOptions, *, yes: bool,
                 lock: FolderLock | None) -> None:
    from invitemail.journal.safeguard import diagnose
    from invitemail.send.delivery import prepare_journal

    dry_run, test_to, limit = options.dry_run, options.test_to, options.limit
    # Before the long check and the question: a journal that cannot be trusted stops here,
    # and one to rebuild is rebuilt (the messages are built with its calendars).
    prepared = None
    if options.restore_journal or options.new_journal:
        prepared = prepare_journal(campaign, options)
    elif lock is not None:
        problem = diagnose(campaign.config.folder, campaign.config.event.uid)
        if problem is not None:
            raise problem
    try:
        if not dry_run and test_to is None:
            campaign.start_workers()
        report = campaign.check()
        campaign.require_valid(report, skip_invalid=options.skip_invalid)  # every problem
        _print_problems(report)  # warnings, and with --skip-invalid the rows left out
        if report.scan.invalid:
            _say(_rows_line(report.scan))
        config = campaign.config
        planned = report.messages if test_to else _planned_now(campaign, options, report)
        if not dry_run and not yes and planned:
            what = f"a test of {min(limit or 1, report.messages)} message(s) to {test_to}" \
                if test_to else _what_is_new(campaign, planned, report)
            click.confirm(f"Send {what} for {config.event.title!r} from "
                          f"{config.sender.address} via {config.smtp.where}?", abort=True)
        password = _password(campaign, dry_run)
        result = _run_send(campaign, password, options, report, lock, prepared)
    finally:
        if prepared is not None:
            prepared.close()
    _print_send_summary(campaign, result)
    if options.reschedule and not dry_run and test_to is None:
        from invitemail.send.reschedule import record_reschedule

        if record_reschedule(campaign, result.sent, campaign.now):
            _say("The event is rescheduled: the cancellation no longer stops the invitation, "
                 "reminders and updates.")
    sys.exit(int(_send_exit_code(result)))


def _send_due(event: Path, *, registrants: Path | None, sheet: str | None,
              attendance: Path | None, encoding: str | None, delimiter: str | None,
              options: SendOptions) -> None:
    """`send --due`: the library plans and sends (due.py); here the lock, the password (asked
    only when something goes), the progress and the summary."""
    import asyncio

    from invitemail.inputs.config import find_event_file
    from invitemail.journal.folderlock import FolderLock
    from invitemail.outputs.progress import make_progress
    from invitemail.send.due import due_exit_code, due_summary, run_due

    lock = None if options.dry_run else FolderLock.acquire(find_event_file(event).parent)
    try:
        result = asyncio.run(run_due(
            event, password=lambda campaign: _password(campaign, options.dry_run),
            progress=lambda name: make_progress(_console(), name), lock=lock,
            registrants=registrants, encoding=encoding, delimiter=delimiter, sheet=sheet,
            attendance=attendance, base=options))
    finally:
        if lock is not None:
            lock.release()
    for line, to_stderr in due_summary(result, event):
        _say(line, err=to_stderr)
    sys.exit(int(due_exit_code(result)))


def _planned_now(campaign: Campaign, options: SendOptions, report: CheckReport) -> int:
    """How many messages the run would send as the journal stands (read only, before the
    question): the rows that already have the message, or wait for a rerun option, aside."""
    from invitemail.journal.store import Journal, JournalError
    from invitemail.send.delivery import count_planned

    try:
        journal = Journal.open(campaign.config.folder, create=False)
    except JournalError:
        return report.messages  # the run itself says what is wrong with it
    if journal is None:
        return min(report.messages, options.limit or report.messages)
    with journal:
        states = journal.states(campaign.stage, pending=False)
    return count_planned(report.scan.addresses, states, options)


def _what_is_new(campaign: Campaign, planned: int, report: CheckReport) -> str:
    """The question's words: how many messages go now, of how many, and for an update what
    changed since the registrants' last message."""
    from invitemail.inputs.registrants import unique_registrants

    messages = report.messages
    what = f"{campaign.template} message{'s' if planned != 1 else ''} to {planned} " \
        f"registrant{'s' if planned != 1 else ''}"
    if planned < messages:
        what += f" (of {messages}; the others have it or wait for a rerun option)"
    if campaign.followup is not None and report.variants:
        what += f" ({_variants_text(report.variants)} of all the follow-ups)"
    if campaign.template == "update":
        first = next(iter(unique_registrants(campaign.source)), None)
        if first is not None:
            previous = campaign.history.get(first.key) or campaign.latest
            changed = [c["field"] for c in campaign.changes(first, previous)]
            if changed:
                what += f", saying that the {' and the '.join(changed)} changed"
    return what


def _run_send(campaign: Campaign, password: str | TokenCredential | None,
              options: SendOptions,
              report: CheckReport, lock: FolderLock | None,
              prepared: Prepared | None) -> SendResult:
    import asyncio
    import signal

    from invitemail.outputs.progress import make_progress
    from invitemail.send.delivery import send as send_campaign

    async def run() -> SendResult:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGINT, stop.set)
            loop.add_signal_handler(signal.SIGTERM, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread (tests), or Windows
            pass
        with make_progress(_console(), campaign.template) as progress:
            return await send_campaign(campaign, password=password, options=options,
                                       progress=progress, stop=stop, report=report, lock=lock,
                                       prepared=prepared)

    return asyncio.run(run())


def _send_exit_code(result: SendResult) -> ExitCode:
    """0 when every registrant has the message; 3 when some do and a rerun (maybe with
    --retry-failed or --resend-uncertain) continues; 1 when this run sent nothing and the
    relay or the settings stopped it."""
    if result.dry_run or result.complete:
        return ExitCode.OK
    if result.stopped is not None and not result.sent and not result.interrupted:
        return ExitCode.INPUT
    return ExitCode.PARTIAL


def _print_send_summary(campaign: Campaign, result: SendResult) -> None:
    where = campaign.config.smtp.where
    if result.dry_run:
        _say(f"Dry run: {result.planned} message{'s' if result.planned != 1 else ''} would be "
             f"sent via {where}; nothing was sent.")
        if result.held_back_by is not None:
            _say(f"The daily limit of {result.held_back_by} (sending.daily_limit) lets only "
                 "these go now; the others would stay pending for a later run.")
        _print_skipped(result)
        return
    if result.set_aside is not None:
        _say(f"The old journal was moved aside to {result.set_aside} (kept).")
    if result.restored:
        _say(f"Rebuilt the journal from the record of what was sent: {result.restored} "
             f"message{'s' if result.restored != 1 else ''}.")
    if result.reconciled:
        _say(f"{result.reconciled} message(s) the journal had as in flight or uncertain are "
             "recorded as sent; they are marked sent.")
    if result.recovered:
        _say(f"{result.recovered} message(s) were in flight when an earlier run stopped; they "
             "are marked uncertain.")
    kind = "test message" if result.test else "message"
    _say(f"Sent {result.sent} {kind}{'s' if result.sent != 1 else ''}, {result.failed} failed, "
         f"{result.uncertain} uncertain, via {where}.")
    _print_skipped(result)
    for address, reply in result.failures[:20]:
        _say(f"  failed: {address}: {reply}", err=True)
    if len(result.failures) > 20:
        _say(f"  ... and {len(result.failures) - 20} more; see `invitemail status`", err=True)
    if result.stopped is not None:
        _say(f"Error: the run stopped: {result.stopped}", err=True)
        if result.stopped.hint:
            _say(f"Hint: {result.stopped.hint}", err=True)
    if result.interrupted:
        _say("Interrupted: messages in flight finished or are marked uncertain.", err=True)
    if result.test:
        return
    event = campaign.config.folder
    template = "" if campaign.template == "invitation" else f" --template {campaign.template}"
    if campaign.stage != campaign.template:  # a reschedule (`--due` says its own)
        template = " --reschedule"
    if getattr(result.stopped, "reason", None) is not None:  # a quota, the daily limit
        _say("The registrants not sent to stay pending. To continue, run the same command "
             f"again then: invitemail send {event}{template}", err=True)
    elif result.interrupted or result.stopped is not None:
        if _send_exit_code(result) is ExitCode.INPUT:  # stopped before sending anything
            _say(f"Nothing was sent. Once that is fixed, run the same command again: "
                 f"invitemail send {event}{template}", err=True)
        else:
            _say(f"To continue, run the same command again: invitemail send {event}{template}",
                 err=True)
    if result.failed:
        _say(f"To try the failed ones again: invitemail send {event}{template} --retry-failed",
             err=True)
    if result.uncertain:
        _say(f"Uncertain ones may have arrived; see `invitemail status {event}{template}`, and "
             "resend them with --resend-uncertain only if they did not.", err=True)


def _print_skipped(result: SendResult) -> None:
    skipped = [(result.skipped_sent, "already sent"),
               (result.skipped_failed, "failed before (--retry-failed sends them)"),
               (result.skipped_uncertain, "uncertain (--resend-uncertain sends them)")]
    for count, why in skipped:
        if count:
            _say(f"Skipped {count}: {why}.")
    removed = sum(result.removed.values())
    if removed:
        states = ", ".join(f"{number} {state}" for state, number in sorted(result.removed.items()))
        _say(f"Not sent to {removed}: removed from the list ({states} in the journal); "
             "`invitemail status` lists them.")


# -- login, logout -----------------------------------------------------------------------


def _oauth_account(event: Path) -> tuple[OAuthSettings, str]:
    """The event's OAuth2 provider settings and the account to sign in."""
    from invitemail.auth.oauth import settings_for
    from invitemail.inputs.config import load_config

    config = load_config(event)
    smtp = config.smtp
    if not smtp.auth.xoauth2 or smtp.username is None:
        raise InvitemailError(f"{config.path}: smtp.auth is \"password\"; login is for OAuth2",
                              hint='set auth = "xoauth2" under [smtp] (and username, the '
                              "mailbox) to sign in with Microsoft 365, Google or another "
                              "OAuth2 provider")
    if smtp.auth.token_command is not None:
        raise InvitemailError(f"{config.path}: smtp.token_command gives the token; its helper "
                              "signs in on its own", hint="sign in with the helper itself, or "
                              "remove smtp.token_command and add [smtp.oauth] to use login")
    return settings_for(smtp, config.path), smtp.username


@main.command()
@click.argument("event", default=".", type=click.Path(path_type=Path))
@click.option("--no-browser", is_flag=True, help="Do not open a browser; show the address "
              "to open (the google and generic browser sign-in).")
@handle_errors
def login(event: Path, no_browser: bool) -> None:
    """Sign in to the OAuth2 provider of EVENT's [smtp.oauth] and keep the login (the
    refresh token, never shown) in your config folder."""
    from invitemail.auth.oauth import login as sign_in

    settings, account = _oauth_account(event)
    _say(f"Signing in {account} with {settings.provider}.")
    path = sign_in(settings, account, say=_say, open_browser=not no_browser)
    _say(f"Signed in; the login is kept in {path}. `invitemail logout {event}` forgets it.")


@main.command()
@click.argument("event", default=".", type=click.Path(path_type=Path))
@handle_errors
def logout(event: Path) -> None:
    """Forget the OAuth2 login kept for EVENT's account."""
    from invitemail.auth.oauth import forget

    settings, account = _oauth_account(event)
    path = forget(settings, account)
    if path is None:
        _say(f"No login of {account} with {settings.provider} is kept; nothing to forget.")
    else:
        _say(f"Forgot the login of {account} with {settings.provider} (removed {path}).")


# -- status -------------------------------------------------------------------------------


def _scan_list(folder: Path, registrants: Path | None, encoding: str | None,
               delimiter: str | None, sheet: str | None) -> tuple[Path, Scan | None]:
    """The registrant list read for `status`; None, after a warning, when it cannot be read
    (`status` then tells what the journal says only)."""
    from invitemail.inputs.config import REGISTRANTS_FILE
    from invitemail.inputs.registrants import default_registrants, scan_file

    path = registrants or folder / REGISTRANTS_FILE
    try:
        path = registrants or default_registrants(folder)
        return path, scan_file(path, encoding=encoding, sheet=sheet,
                               delimiter="\t" if delimiter == "tab" else delimiter)
    except InvitemailError as err:
        _say(f"warning: {str(err).splitlines()[0]}; the counts are the journal's only", err=True)
        return path, None


@main.command()
@click.argument("event", default=".", type=click.Path(path_type=Path))
@click.option("--template", "-t", default="invitation", show_default=True,
              help="Which template's journal to show.")
@click.option("--report", "report_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Write one row per registrant (state, attempts, last reply) to FILE.csv "
              "or FILE.xlsx.")
@click.option("--excel", is_flag=True, help="Write the .csv report for Excel set to Danish "
              "(or another language with a decimal comma): ; between the cells.")
@click.option("--registrants", type=click.Path(path_type=Path, dir_okay=False),
              help="Count the rows of FILE (.csv or .xlsx) instead of the event's list.")
@click.option("--sheet", metavar="NAME", help="The workbook's sheet with the registrants "
              "(default: the first).")
@click.option("--encoding", help="The registrant file's encoding (default: detected).")
@click.option("--delimiter", type=click.Choice([",", ";", "tab"]),
              help="The registrant file's delimiter (default: detected).")
@handle_errors
def status(event: Path, template: str, report_path: Path | None, excel: bool,
           registrants: Path | None, sheet: str | None, encoding: str | None,
           delimiter: str | None) -> None:
    """What the journal says: sent, failed, pending, uncertain; and how every row of the
    registrant list was taken."""
    from invitemail.inputs.config import find_event_file
    from invitemail.journal.safeguard import diagnose
    from invitemail.journal.store import Journal, JournalError, State
    from invitemail.outputs.report import check_report_path, write_report
    from invitemail.send.delivery import removed_from_list
    from invitemail.send.limits import stop_lines

    if report_path is not None:
        check_report_path(report_path, excel=excel)
    elif excel:
        raise click.UsageError("--excel is for the report: give --report FILE.csv too")
    folder = find_event_file(event).parent
    uid = _event_uid(folder)
    problem = diagnose(folder, uid) if uid is not None else None
    try:
        journal = Journal.open(folder, create=False, event_uid=uid)
    except JournalError:  # another event's, damaged: the diagnosis says more, when there is one
        if problem is not None:
            raise problem from None
        raise
    if journal is None:
        if problem is not None:
            raise problem
        _say(f"{folder}: nothing has been sent for this event yet (no journal).")
        path, scan = _scan_list(folder, registrants, encoding, delimiter, sheet)
        if scan is not None:
            _say(f"{path}: {_rows_line(scan)}")
        return
    with journal:
        counts = journal.counts(template)
        total = sum(counts.values())
        path, scan = _scan_list(folder, registrants, encoding, delimiter, sheet)
        removed = {} if scan is None else removed_from_list(
            journal, template, (*scan.addresses, *scan.left_out))
        for state in removed.values():  # shown as removed, not as still to send
            counts[state] -= 1
        if not total:
            others = journal.templates()
            _say(f"{folder}: nothing in the journal for template {template!r}"
                 + (f" (it has: {', '.join(others)})" if others else "") + ".")
        else:
            _say(f"{folder}: template {template!r}, {total} registrants: "
                 + ", ".join([f"{counts[s]} {s.value}" for s in State if counts[s]]
                             + ([f"{len(removed)} removed from the list"] if removed else [])))
        if scan is not None:
            _say(f"{path}: {_rows_line(scan, journal_keys=journal.states(template))}")
        _say_variants(journal, template)
        if total:
            for row in journal.rows(template, [State.FAILED]):
                if row.key not in removed:
                    _say(f"  failed: {row.address} (line {row.line}): {row.last_reply}")
            for row in journal.rows(template, [State.UNCERTAIN]):
                if row.key not in removed:
                    _say(f"  uncertain: {row.address} (line {row.line}): {row.last_reply}")
            for row in journal.rows(template):
                if row.key in removed:
                    _say(f"  removed from the list: {row.address} (was line {row.line}, "
                         f"{row.state.value}); not sent to")
            for line in stop_lines(journal, folder, template,
                                   waiting=counts[State.PENDING] > 0):
                _say(line)
            if report_path is not None:
                written = write_report(report_path, journal.rows(template), excel=excel)
                _say(f"wrote {written} rows to {report_path}")
        from invitemail.send.due import status_lines

        for line in status_lines(folder, journal, None if scan is None else scan.addresses):
            _say(line)
    if problem is not None:  # what the journal says is not all that was sent
        raise problem


def _say_variants(journal: Any, template: str) -> None:
    """For the follow-up: which template each registrant got, counted and listed."""
    from invitemail.send.followup import FOLLOWUP_TEMPLATE

    if template != FOLLOWUP_TEMPLATE:
        return
    variants = journal.variants(template)
    if not variants:
        return
    counts: dict[str, int] = {}
    for variant in variants.values():
        counts[variant] = counts.get(variant, 0) + 1
    _say(f"  follow-ups: {_variants_text(counts)}")
    for row in journal.rows(template):
        if row.key in variants:
            _say(f"  {variants[row.key]}: {row.address} ({row.state.value})")


def _event_uid(folder: Path) -> str | None:
    """The event's uid, to check the journal against; None when event.toml cannot be read
    (`status` still shows the journal)."""
    from invitemail.inputs.config import load_config

    try:
        return load_config(folder).event.uid
    except InvitemailError:
        return None
