"""The TLS context every connection of a run uses: verifying, from the system's CAs or from
``smtp.ca_file`` alone."""

from __future__ import annotations

import ssl

from invitemail.inputs.config import Smtp
from invitemail.send.errors import ConnectError

__all__ = ["make_tls_context"]


def make_tls_context(smtp: Smtp) -> ssl.SSLContext:
    """A verifying client context: the system's CAs, or only ``smtp.ca_file`` when set."""
    if smtp.ca_file is None:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=str(smtp.ca_file))
    except (OSError, ValueError) as err:
        raise ConnectError(
            f"{smtp.where}: smtp.ca_file {smtp.ca_file} cannot be used: {err}",
            hint="point smtp.ca_file to a PEM file holding the CA certificate",
        ) from None
