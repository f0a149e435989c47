"""What the tests share: an event folder on disk, the CLI run in-process, the scripted relays,
and the fakes a test hands to the library (clock, progress, transport hooks).

Test modules import from here (``from support.event import ...``), never from one another:
``tests/`` has no ``__init__.py``, so pytest's default ("prepend") import mode puts that folder
on ``sys.path`` and this package is importable as ``support``. Fixtures stay in conftest.py.
"""
