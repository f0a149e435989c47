"""A batch's steps with each message's claim and final state as one statement.

In a run, most messages leave two steps in the same batch: ``sending`` (the claim, with the
message's id and calendar) and ``done`` (its final state). Applied one after the other they
are two UPDATEs of the same row; :data:`CLAIMED_DONE` is the one UPDATE that leaves the row,
and the calendar the ``sent`` state writes (the journal's trigger), as the two leave them.
Half the statements for the journal's thread to run.

That holds because a claim is only ever written for a row that is not ``sent`` (the run
checks the row's state before it writes the claim), so the trigger, which fires when the
state becomes ``sent`` from something else, fires for the one statement exactly when it
fires for the second of the two. Steps of different rows touch different rows (and the
calendar rows of different keys), so the pair's statement may take the place of its second
step; anything else that comes between a claim and its final state for the same row (a
retry, a step back to ``pending``, another claim) keeps both as they are.
tests/test_journal_runlog.py holds the batches to one commit per step, for any steps.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from invitemail.journal.runlog import Param

CLAIMED = "claimed_done"  # the kind of a claim and its final state as one step
CLAIMED_DONE = ("UPDATE deliveries SET state = ?, message_id = ?, attempts = ?, updated_at = ?, "
                "calendar_sequence = ?, calendar_start = ?, calendar_duration = ?, "
                "calendar_join_url = ?, calendar_password_digest = ?, variant = ?, "
                "last_reply = ?, sent_at = CASE WHEN ? = 'sent' THEN ? ELSE sent_at END "
                "WHERE template = ? AND key = ?")


def coalesced(steps: Iterable[tuple[str, Sequence[Param]]]
              ) -> list[tuple[str, Sequence[Param]]]:
    """``steps`` (each statement's parameters end with the row's template and key) with
    every ``sending`` step whose row's next step is ``done`` merged into that one."""
    out: list[tuple[str, Sequence[Param]] | None] = []
    open_claims: dict[tuple[Param, Param], int] = {}  # row -> its claim's place in ``out``
    for kind, params in steps:
        row = (params[-2], params[-1])
        claimed = open_claims.pop(row, None)
        if kind == "done" and claimed is not None:
            claim = out[claimed]
            assert claim is not None
            out[claimed] = None
            out.append((CLAIMED, _merged(claim[1], params)))
            continue
        if kind == "sending":
            open_claims[row] = len(out)
        out.append((kind, params))
    return [step for step in out if step is not None]


def _merged(claim: Sequence[Param], done: Sequence[Param]) -> tuple[Param, ...]:
    message_id, _, _, *calendar_and_variant, template, key = claim
    state, reply, attempts, now, _, sent_at, _, _ = done
    return (state, message_id, attempts, now, *calendar_and_variant, reply, state, sent_at,
            template, key)
