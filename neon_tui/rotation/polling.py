"""When to look at a reset's operations: a timer that learns how long they take, downward as well as up.

Times are seconds after the reset's answer arrived, measured at the moment a poll left. Each wait teaches
a bracket: the last poll that saw the operations still running (`lo`) and the one that saw them finished
(`hi`). The next first poll goes at `hi` once the bracket is tight, else halfway (a binary search), so an
estimate that was too long shrinks instead of staying put (a poll that succeeds first time only says
"done by then"). After a first poll that succeeds, `lo` slides down a little, so the timer keeps checking
whether operations got faster.

When the account's per-minute budget is the bottleneck (`pressured`), a request costs time and lateness
does not: no probing below `hi`, and misses back off in bigger steps.
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
        self.misses = 0                # polls that found operations still running

    @property
    def known(self) -> bool:
        return self.hi is not None

    def tol(self) -> float:
        """How wide a bracket may stay: a failed probe must leave a round trip before `hi`."""
        hi = self.hi or self.first_poll
        return max(self.tolerance, self.relative * hi, 2 * (self.rtt or 0.0))

    def first(self, *, pressured: bool = False) -> float:
        """When to send the first poll."""
        if self.hi is None:
            return self.first_poll
        if not pressured and self.hi - self.lo > self.tol():
            self.probes += 1
            return (self.lo + self.hi) / 2
        return self.hi

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

    def observe(self, done_at: float, missed: list[float], *, pressured: bool = False, rtt: float | None = None) -> None:
        """One wait's outcome: finished at the poll sent at `done_at`, running at each poll sent in `missed`."""
        if rtt is not None and rtt >= 0:
            self.rtt = rtt if self.rtt is None else 0.8 * self.rtt + 0.2 * rtt
        self.hi = done_at
        if missed:
            self.lo = max(missed)
        elif not pressured:
            self.lo = max(0.0, self.lo - self.tol() / 2)  # look again below, in case they got faster
        if self.lo >= self.hi:
            self.lo = max(0.0, self.hi - self.tol())


__all__ = ["PollTimer"]
