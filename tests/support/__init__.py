"""What the tests share: an event folder on disk, the CLI run in-process, the scripted relay,
and the fakes a test hands to the library (clock, progress, transport hooks).

- ``event``: EventBuilder, the one way to write event.toml and registrants.csv (it reports
  the line of each key it wrote), EVENT_TOML's defaults, ``rows``, ``event_for``, and
  ``edit_event`` and ``set_key`` (a folder's event.toml changed by key); ``event_toml``:
  EventToml, the line model under it;
- ``relay``: SmtpServer, the scripted aiosmtpd relay (faults, TLS, AUTH, PIPELINING answered
  per group, per-command answers and cuts), and FakeClock;
- ``ports``: ``free_port``, the one loopback port helper (the bench's too);
- ``cli``: ``run_cli``; ``fakes``: Quiet, a progress that remembers; ``checks``: what the
  journal and the relay hold; ``mail``: a built message's calendar; ``transport``: the
  transport driven directly; ``registrant_lists``, ``attendance_reports``, ``oauth_servers``:
  the inputs and servers of those features.

Test modules import from here (``from support.event import ...``), never from one another:
``tests/`` has no ``__init__.py``, so pytest's default ("prepend") import mode puts that folder
on ``sys.path`` and this package is importable as ``support``. Fixtures stay in conftest.py.
"""
