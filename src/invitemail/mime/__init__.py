"""Rendered text -> message bytes: headers, MIME parts, the calendar invitation, inlined
CSS and dates in the registrant's language."""
