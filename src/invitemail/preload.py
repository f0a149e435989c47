"""What a worker process needs, imported once, by the fork server (pool.start_server):
each worker forks from it with the package and the libraries it loads where first used
(icalendar, babel's dates, email-validator) in memory, instead of importing them itself while
the check waits for it. The process that speaks SMTP never imports this module.
"""

from invitemail import campaign
from invitemail.inputs import addresses
from invitemail.mime import dates, ics

__all__ = ["campaign"]

for _module in (ics, dates, addresses):
    _module.preload()
