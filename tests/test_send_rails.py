"""The send flow's rails: hints that fit the refusal, a dry run that counts what a real run
would send, the Date header taken at hand-over, prompts that say what will happen, and a
registrant removed from the list that never keeps a run from finishing."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import run_cli
from smtp_servers import SmtpServer
from test_lifecycle import set_key
from test_send import event_for, rows

SKIP_HINT = "--skip-invalid"


# -- 3: the hint fits the refusal -----------------------------------------------------------


@pytest.mark.parametrize("setup", ["unchanged-update", "update-before-invitation",
                                   "event-in-past", "no-registrants"])
def test_refusal_not_about_rows_does_not_suggest_skip_invalid(
        smtp_server: SmtpServer, tmp_path: Path, setup: str) -> None:
    folder = event_for(smtp_server, tmp_path / "e", rows(3))
    args: list[str | Path] = ["send", folder, "--yes"]
    if setup == "unchanged-update":
        assert run_cli("send", folder, "--yes").exit_code == 0
        args += ["--template", "update"]
    elif setup == "update-before-invitation":
        args += ["--template", "update"]
    elif setup == "event-in-past":
        set_key(folder, "start = 2030-12-10T14:00:00", "start = 2001-12-10T14:00:00")
    else:
        (folder / "registrants.csv").write_text("Navn,E-mail,Sprog\n", encoding="utf-8")
    received = len(smtp_server.transactions)
    for extra in ([], ["--skip-invalid"]):
        refused = run_cli(*args, *extra)
        assert refused.exit_code == 1, refused.output
        assert "Traceback" not in refused.output
        hint = refused.stderr.split("Hint:", 1)[1]
        assert "does not help here" in hint and "nothing was sent" in hint
        assert "give --skip-invalid" not in hint
    assert len(smtp_server.transactions) == received


def test_refusal_about_rows_still_suggests_skip_invalid(smtp_server: SmtpServer,
                                                        tmp_path: Path) -> None:
    folder = event_for(smtp_server, tmp_path / "e",
                       [*rows(2), ("Bad Row", "not-an-address", "da")])
    refused = run_cli("send", folder, "--yes")
    assert refused.exit_code == 1
    assert "give --skip-invalid" in refused.stderr.split("Hint:", 1)[1]
    sent = run_cli("send", folder, "--yes", "--skip-invalid")
    assert sent.exit_code == 0, sent.output
    assert len(smtp_server.transactions) == 2
