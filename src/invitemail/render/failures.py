"""Which registrants' messages could not be built, and what that means: a problem with the
row, or a broken template. Nothing here renders; the check (check.py) reports each failure
as it comes and asks at the end.
"""

from __future__ import annotations

from invitemail.errors import Problem, TemplateError
from invitemail.inputs.registrants import Registrant, Scan


class RenderFailures:
    """The registrants whose message could not be built, sorted out once every row is in.

    A template that fails for one registrant and renders for another of the same language
    (the same template files) fails on that registrant's values (``{{ 100 // seats }}`` with
    seats 0): that row gets a problem, like any invalid row, and ``--skip-invalid`` leaves it
    out. A template that renders for no registrant of that language is broken: a template
    error, reported once per distinct message, and nothing is sent.
    """

    def __init__(self, label: str) -> None:
        self.label = label
        self.built_languages: set[str] = set()
        self.header_keys: set[str] = set()
        self._failed: list[tuple[int, str, str, str]] = []  # line, key, language, reason
        self._errors: dict[str, TemplateError] = {}  # the first error of each reason
        self._reasons: dict[str, str] = {}

    @property
    def keys(self) -> set[str]:
        return self.header_keys | {key for _, key, _, _ in self._failed}

    def add(self, registrant: Registrant, error: TemplateError) -> None:
        reason = error.message.split(" (rendering for ")[0]
        if reason in self._errors:
            reason = self._reasons[reason]  # one string per reason, however many rows
        else:
            self._errors[reason], self._reasons[reason] = error, reason
        self._failed.append((registrant.line, registrant.key, registrant.language, reason))

    def settle(self, scan: Scan) -> list[TemplateError]:
        """Record the rows' problems in ``scan``; return the template errors."""
        left_out = set(self.header_keys)
        broken: dict[str, TemplateError] = {}
        for line, key, language, reason in self._failed:
            if language in self.built_languages:
                scan.problems.append(Problem(self.label, line, "the template failed for this "
                                             f"row: {reason}"))
                left_out.add(key)
            else:
                broken.setdefault(reason, self._errors[reason])
        scan.leave_out(left_out)
        return list(broken.values())
