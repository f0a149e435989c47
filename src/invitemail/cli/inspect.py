"""`check` and `preview`: every registrant and message validated, or shown, nothing sent."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from invitemail.cli.shared import (
    event_options,
    handle_errors,
    open_campaign,
    print_problems,
    say,
    say_error,
)
from invitemail.errors import ExitCode, InvitemailError

if TYPE_CHECKING:
    from invitemail.campaign import Built, Campaign, CheckReport


def _assumed(template: str, attendance: Path | None) -> tuple[str | None, ...]:
    """The follow-ups to show in turn: without the attendance report, `check` and `preview`
    go over both (thanks, then missed); otherwise each registrant's own (None)."""
    from invitemail.send.followup import FOLLOWUP_TEMPLATE, VARIANTS

    return VARIANTS if template == FOLLOWUP_TEMPLATE and attendance is None else (None,)


def _summary_line(campaign: Campaign, report: CheckReport) -> str:
    from invitemail.send.status import variants_text

    scan = report.scan
    languages = ", ".join(sorted(scan.languages)) or "none"
    dup = f", {scan.duplicates} duplicate{'s' if scan.duplicates != 1 else ''} skipped" \
        if scan.duplicates else ""
    variants = variants_text(report.variants)
    return (f"{campaign.source.label}: {scan.valid} registrant{'s' if scan.valid != 1 else ''} "
            f"(languages: {languages}){dup}; {report.messages} {campaign.template} "
            f"message{'s' if report.messages != 1 else ''} built"
            + (f" ({variants})" if variants else ""))




@click.command()
@event_options
@click.option("--lint", is_flag=True, help="Also lint every built message (headers, MIME, "
              "line lengths) and score a sample with SpamAssassin when it is installed.")
@handle_errors
def check(event: Path, template: str, registrants: Path | None, sheet: str | None,
          encoding: str | None, delimiter: str | None, attendance: Path | None, lint: bool) -> None:
    """Validate the settings, every registrant and every message; send nothing."""
    errors = 0
    for assume in _assumed(template, attendance):
        campaign = open_campaign(event, template, registrants, encoding, delimiter,
                                  sheet, attendance, assume=assume)
        if assume is not None:
            say(f"The follow-up as {assume} (without --attendance, both are checked):")
        errors += _check_campaign(campaign, lint)
    errors += _check_signed_in(campaign)
    if errors:
        say(f"{errors} problem{'s' if errors != 1 else ''} to fix before sending.", err=True)
        sys.exit(int(ExitCode.INPUT))
    say("No problems found. Nothing was sent.")


def _check_campaign(campaign: Campaign, lint: bool) -> int:
    """`check` of one campaign: its problems printed, and counted."""
    from invitemail.send.status import rows_line

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
    print_problems(report)
    _warn_sending_time(campaign, report)
    if sample:
        lint_problems.extend(_spamassassin(sample))
    for problem in lint_problems:
        say(f"lint: {problem}", err=True)
    say(_summary_line(campaign, report))
    say(rows_line(report.scan))
    return len(report.errors) + len(report.template_errors) + len(lint_problems)


def _check_signed_in(campaign: Campaign) -> int:
    """With smtp.auth = "xoauth2": 1 (after saying why) when no access token can be had
    (no login, an expired or revoked one, a failing token_command); else 0."""
    if not campaign.config.smtp.auth.xoauth2:
        return 0
    from invitemail.send.plan import credential

    try:
        credential(campaign.config)
    except InvitemailError as err:
        say_error(err)
        return 1
    return 0


def _warn_sending_time(campaign: Campaign, report: CheckReport) -> None:
    from invitemail.send.limits import sending_time_check

    config = campaign.config
    warning = sending_time_check(config, campaign.template, report.messages, campaign.now)
    if warning is not None:
        say(f"{config.path}: warning: {warning}", err=True)


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
        say(f"warning: no spam score: {err}", err=True)
        return []
    if scores is None:
        say("SpamAssassin is not installed, so no spam score "
            "(on Debian or Ubuntu: apt-get install spamassassin).")
        return []
    problems = []
    for built, score in zip(sample, scores, strict=True):
        say(f"SpamAssassin: {built.recipient}: {score}")
        if score.score >= SPAM_REQUIRED:
            problems.append(f"{built.recipient}: SpamAssassin takes it for spam: {score}")
        elif score.score >= SPAM_GOOD:
            say(f"warning: {built.recipient}: SpamAssassin scores it {score.score:.1f}; "
                f"keep it under {SPAM_GOOD:.1f} (the rules named above say why)", err=True)
    return problems


# -- preview ------------------------------------------------------------------------------


@click.command()
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
    campaigns = [open_campaign(event, template, registrants, encoding, delimiter, sheet,
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
                    print_problems(report)
                    failed = failed or bool(report.template_errors)
                else:
                    scan = Scan()  # the duplicates among the rows read, for the summary
                    for built in campaign.messages(
                            itertools.islice(unique_registrants(campaign.source, scan), limit),
                            expected=limit):
                        writer(built)
                    writer.skipped(scan.duplicates)
        # The count line stays last: scripts (and tests/test_cli_input.py) read it.
        say(f"gallery: {writer.index} (open it in a browser)")
        say(f"wrote {writer.count} message{'s' if writer.count != 1 else ''} to {out}")
        if failed:  # the gallery shows what could be built; the template must still be fixed
            sys.exit(int(ExitCode.INPUT))
        if open_gallery:
            import webbrowser

            if not webbrowser.open(writer.index.resolve().as_uri()):
                say(f"No browser could be started; open {writer.index} in one.", err=True)
        return
    shown = 0
    wanted = 1 if limit is None else limit
    for campaign in campaigns:
        built_ones = campaign.messages(unique_registrants(campaign.source), expected=wanted)
        for built in itertools.islice(built_ones, wanted):
            if shown:
                say("\n" + "-" * 72 + "\n")
            say(readable(built))
            shown += 1
    if not shown and wanted:
        say("No registrants to preview.", err=True)
        sys.exit(int(ExitCode.INPUT))
