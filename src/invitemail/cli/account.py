"""`init`, `login` and `logout`: the event folder made, the OAuth2 login kept and forgotten."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from invitemail.cli.shared import handle_errors, say
from invitemail.errors import InvitemailError

if TYPE_CHECKING:
    from invitemail.auth.settings import OAuthSettings


@click.command()
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--templates", is_flag=True,
              help="Also copy the built-in templates into FOLDER/templates to edit.")
@handle_errors
def init(folder: Path, templates: bool) -> None:
    """Create a ready event folder to edit (never overwrites a file)."""
    from invitemail.outputs.scaffold import create_event

    written = create_event(folder, templates=templates)
    for path in written[:2]:
        say(f"wrote {path}")
    if templates:
        say(f"copied {len(written) - 2} template files into {folder / 'templates'}")
    say(f"\nNext: edit {folder / 'event.toml'} and {folder / 'registrants.csv'}, then run\n"
        f"  invitemail check {folder}")



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


@click.command()
@click.argument("event", default=".", type=click.Path(path_type=Path))
@click.option("--no-browser", is_flag=True, help="Do not open a browser; show the address "
              "to open (the google and generic browser sign-in).")
@handle_errors
def login(event: Path, no_browser: bool) -> None:
    """Sign in to the OAuth2 provider of EVENT's [smtp.oauth] and keep the login (the
    refresh token, never shown) in your config folder."""
    from invitemail.auth.oauth import login as sign_in

    settings, account = _oauth_account(event)
    say(f"Signing in {account} with {settings.provider}.")
    path = sign_in(settings, account, say=say, open_browser=not no_browser)
    say(f"Signed in; the login is kept in {path}. `invitemail logout {event}` forgets it.")


@click.command()
@click.argument("event", default=".", type=click.Path(path_type=Path))
@handle_errors
def logout(event: Path) -> None:
    """Forget the OAuth2 login kept for EVENT's account."""
    from invitemail.auth.oauth import forget

    settings, account = _oauth_account(event)
    path = forget(settings, account)
    if path is None:
        say(f"No login of {account} with {settings.provider} is kept; nothing to forget.")
    else:
        say(f"Forgot the login of {account} with {settings.provider} (removed {path}).")
