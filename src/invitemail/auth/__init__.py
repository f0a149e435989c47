"""Signing in to the relay: the settings, the access token and where it comes from (OAuth2
logins, ``token_command``), and the SMTP side of XOAUTH2."""
