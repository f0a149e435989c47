"""OAuth2 tokens stay secret, like the SMTP password (test_secrets.py): every access token and
refresh token the local OAuth2 server issued, and every token a token helper printed, is
searched for (as it is, and as AUTH XOAUTH2 puts it on the wire, base64) in everything every
command prints and every file it writes: the event folder (journal and its -wal/-shm, the
.eml files and the gallery of ``preview --out``, the report), the data folder (the record of
what was sent), the config folder, and the process environment. The one place a refresh
token may be is its login file in ``tokens/``.

Every command runs, failing ones included (a withdrawn login, a token helper that fails and
says the token on its stderr), with and without ``--debug``.
"""

from __future__ import annotations

import base64
import os
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cli import Run, run_cli
from support.oauth_servers import USER, OAuthServer, XOAuth2Server, oauth_event


def forms(token: str) -> list[bytes]:
    """The token, and the AUTH XOAUTH2 payload that holds it, as they could be written."""
    payload = f"user={USER}\x01auth=Bearer {token}\x01\x01".encode()
    return [token.encode(), base64.b64encode(payload), base64.b64encode(token.encode())]


def snapshot(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


World = tuple[list[tuple[str, Run]], dict[Path, bytes], list[str], Path]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("oauth-secrets")
    data = root / "data"
    helper_token = "tok-helper-Yq4Lm9Tz"
    with pytest.MonkeyPatch.context() as patch, OAuthServer(rotate=True) as provider, \
            XOAuth2Server(provider, USER) as relay:
        patch.setenv("INVITEMAIL_DATA_DIR", str(data))
        patch.setenv("INVITEMAIL_CONFIG_DIR", str(data / "config"))
        good = oauth_event(root / "good", relay, provider.settings_toml())
        # The same account: its login (made again below) is withdrawn at the provider.
        withdrawn = oauth_event(root / "withdrawn", relay, provider.settings_toml())
        code = (f"import sys; print({helper_token!r}); "
                f"sys.stderr.write('expired: {helper_token}'); sys.exit(1)")
        failing = oauth_event(root / "failing", relay, "", smtp_extra=(
            f'token_command = ["{sys.executable}", "-c", "{code}"]\n'))
        ours = set(snapshot(root))
        steps: list[tuple[str, Run]] = []

        def run(*args: str | Path, expect: int) -> None:
            result = run_cli(*args)
            label = " ".join(map(str, args))
            assert result.exit_code == expect, (label, result.output)
            steps.append((label, result))

        for debug in ([], ["--debug"]):
            tag = "debug-" if debug else ""
            run(*debug, "login", good, expect=0)
            run(*debug, "check", good, expect=0)
            run(*debug, "preview", good, "--out", root / f"{tag}gallery", expect=0)
            run(*debug, "send", good, "--dry-run", expect=0)
            run(*debug, "send", good, "--yes", "--test-to", "me@example.org", expect=0)
            run(*debug, "send", good, "--yes", expect=0)
            run(*debug, "status", good, "--report", root / f"{tag}report.csv", expect=0)
            run(*debug, "check", failing, expect=1)
            run(*debug, "send", failing, "--yes", expect=1)
        keeper = sqlite3.connect(good / ".invitemail" / "journal.sqlite")  # keeps -wal, -shm
        keeper.execute("SELECT count(*) FROM deliveries").fetchall()
        run("login", withdrawn, expect=0)
        provider.revoke_all()
        run("check", withdrawn, expect=1)
        run("send", withdrawn, "--yes", expect=1)
        run("--debug", "send", withdrawn, "--yes", expect=1)
        written = {p: d for p, d in snapshot(root).items() if p not in ours}
        assert relay.transactions, "nothing was sent: the searches would prove nothing"
        assert any(t.user == USER for t in relay.transactions)
        yield steps, written, [*provider.issued(), helper_token], data
        keeper.close()
        run("logout", good, expect=0)


def test_tokens_never_appear_in_any_output(world: World) -> None:
    steps, _, tokens, _ = world
    assert len(tokens) >= 6  # access and refresh tokens of several logins and refreshes
    for label, result in steps:
        for token in tokens:
            for form in forms(token):
                assert form.decode() not in result.output, label
    failing = [r for label, r in steps if label.startswith("check") and "failing" in label]
    assert failing and all("[token]" in r.stderr for r in failing)  # said, without it


def test_tokens_are_in_no_file_but_the_login_file(world: World) -> None:
    _, written, tokens, data = world
    kinds = {path.suffix for path in written} | {path.name[-4:] for path in written}
    assert {".eml", ".html", ".csv", ".sqlite", "-wal", "-shm", ".json"} <= kinds, kinds
    logins = [path for path in written if path.parent == data / "config" / "tokens"]
    assert logins
    for path, content in written.items():
        for token in tokens:
            if path in logins and token.startswith("rt-"):
                continue  # the refresh token's one place
            for form in forms(token):
                assert form not in content, (path, token)
    assert any(t.startswith("rt-") and t.encode() in written[p] for p in logins for t in tokens)


def test_tokens_are_never_put_in_the_environment(world: World) -> None:
    _, _, tokens, _ = world
    environment = "\0".join(f"{k}={v}" for k, v in os.environ.items())
    for token in tokens:
        assert token not in environment
