"""When to look at a reset's operations: a timer that learns how long they take, downward as well as up.

Times are seconds after the reset's answer arrived, measured at the moment a poll left. Each wait teaches
a bracket: the last poll that saw the operations still running (`lo`) and the one that saw them finished
(`hi`). The next first poll goes at `hi` once the bracket is tight, else halfway (a binary search), so an
estimate that was too long shrinks instead of staying put (a poll that succeeds first time only says
"done by then"). After a first poll that succeeds, `lo` slides down a little, so the timer keeps checking
whether operations got faster.

When the account's per-minute budget is the bottleneck (`pressured`), a request costs time and lateness
does not: no probing below `hi` unless the bracket is wide, and misses back off in bigger steps.
"""

from __future__ import annotations


class PollTimer:
    """Shared by every project of one run (a reset's operations take about as long everywhere)."""

    def __init__(self, *, first_poll: float = 1.0, poll_min: float = 0.25, poll_max: float = 5.0,
                 tolerance: float = 0.02, relative: float = 0.02) -> None:
        self.first_poll = first_poll
        self.poll_min = poll_min
        self.poll_max = poll_max
        self.tolerance = tolerance
        self.relative = relative
        self.hi: float | None = None   # a recent poll at this time saw the operations finished
        self.lo = 0.0                  # a recent poll at this time saw them still running
        self.rtt: float | None = None  # smoothed round trip of a poll
        self.probes = 0                # first polls sent below hi (for tests and benchmarks)
        self.probing = False           # one probe at a time: fifty projects probing at once learn no more
        self.misses = 0                # polls that found operations still running

    @property
    def known(self) -> bool:
        return self.hi is not None

    def tol(self) -> float:
        """How wide a bracket may stay: a failed probe must leave a round trip before `hi`."""
        hi = self.hi or self.first_poll
        return max(self.tolerance, self.relative * hi, 2 * (self.rtt or 0.0))

    def first(self, *, pressured: bool = False) -> float:
        """When to send the first poll. A probe (below `hi`) must be answered with `observe(probe=True)`
        or `abandon()`; until then nobody else probes."""
        return self.plan(pressured=pressured)[0]

    def plan(self, *, pressured: bool = False) -> tuple[float, bool]:
        """(when to send the first poll, whether it is a probe)."""
        if self.hi is None:
            return self.first_poll, False
        gap = self.hi - self.lo
        # Under rate pressure only a wide bracket is worth a request: one a poll delayed by the limiter left
        # (it could only say "done by the time it was let out").
        if not self.probing and gap > self.tol() and (not pressured or gap > 0.25 * self.hi):
            self.probes += 1
            self.probing = True
            return (self.lo + self.hi) / 2, True
        return self.hi, False

    def abandon(self) -> None:
        """The probe's wait ended without an answer (cancelled, failed): let another waiter probe."""
        self.probing = False

    def after_miss(self, elapsed: float, step: float, *, pressured: bool = False) -> tuple[float, float]:
        """A poll sent at `elapsed` saw them running: when to send the next one, and the next step."""
        self.misses += 1
        if pressured:
            step = max(step, self.poll_min, 0.25 * (self.hi or self.first_poll))
            return elapsed + step, min(step * 2, self.poll_max)
        if self.hi is not None and elapsed + self.tol() / 2 < self.hi:
            return self.hi, step  # a probe came early: the known bound is next
        step = max(step, self.tol())
        return elapsed + step, min(step * 2, self.poll_max)

    def observe(self, done_at: float, missed: list[float], *, pressured: bool = False, rtt: float | None = None,
                probe: bool = False) -> None:
        """One wait's outcome: finished at the poll sent at `done_at`, running at each poll sent in `missed`."""
        if probe:
            self.probing = False
        if rtt is not None and rtt >= 0:
            self.rtt = rtt if self.rtt is None else 0.8 * self.rtt + 0.2 * rtt
        if missed and (self.hi is None or max(missed) >= self.hi):
            # Still running at the bound: slower than thought, the bound moves up. (If the limiter held the
            # next poll back, this overshoots; probing brings it down again.)
            self.hi = done_at
            self.lo = max(missed)
        else:
            # Done by `done_at` (when the poll really left) only lowers the bound, never raises it: a poll the
            # limiter held back for a minute would otherwise teach a wait of a minute.
            self.hi = done_at if self.hi is None else min(self.hi, done_at)
            if missed:
                self.lo = max(missed)  # a probe below the bound came early
            elif not pressured:
                self.lo = max(0.0, self.lo - self.tol() / 2)  # look again below, in case they got faster
        if self.lo >= self.hi:
            self.lo = max(0.0, self.hi - self.tol())


__all__ = ["PollTimer"]
