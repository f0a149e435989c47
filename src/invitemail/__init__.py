"""invitemail: merge a registrant list with a meeting's details into invitations, show
exactly what each person will receive, and send them over SMTP with a journal."""

__version__ = "0.1.0"
