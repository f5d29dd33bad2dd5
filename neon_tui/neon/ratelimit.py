"""A client-side limiter that keeps one account under Neon's documented rate limits."""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

# How often a waiter looks again when the window is full of requests still in flight (their answers, not
# a timestamp, tell when they leave the window).
_INFLIGHT_RECHECK = 0.02


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Neon's documented limits: 700 requests per minute per account, bursts of 40 per second per route.

    Neon counts a request when it arrives. The limiter counts each one from the moment its answer came
    back (or its attempt failed), which is never earlier than its arrival whatever the latency, queueing in
    the connection pool or a loaded event loop did to it; until then it holds its place in every window.
    So only clock granularity is left for `margin_seconds`, which widens both windows.
    """

    per_minute: int = 700
    per_route_per_second: int = 40
    margin_seconds: float = 0.05

    def __post_init__(self) -> None:
        if self.per_minute < 1 or self.per_route_per_second < 1:
            raise ValueError("rate limits must be at least 1")
        if self.margin_seconds < 0:
            raise ValueError("margin_seconds must not be negative")


class _Window:
    """Sliding-window log: at most `limit` requests in any `span` seconds, in-flight ones included.

    `closed` holds the answer times of answered requests, sorted (answers arrive out of order); `open`
    counts requests in flight, which cannot have left the window yet. A check costs O(log n), so a few
    hundred waiters re-checking at once stay cheap.
    """

    __slots__ = ("closed", "limit", "open", "span")

    def __init__(self, limit: int, span: float) -> None:
        self.limit = limit
        self.span = span
        self.closed: list[float] = []
        self.open = 0

    def wait(self, now: float) -> float:
        k = bisect.bisect_right(self.closed, now - self.span)
        if k:
            del self.closed[:k]
        excess = len(self.closed) + self.open - self.limit + 1
        if excess <= 0:
            return 0.0
        if len(self.closed) < excess:
            return _INFLIGHT_RECHECK  # the window is held by requests still in flight
        return max(self.closed[excess - 1] + self.span - now, 1e-4)

    def __len__(self) -> int:
        return len(self.closed) + self.open


class Slot:
    """A granted request's place in the windows. `done()` when its answer arrived or its attempt failed
    (it leaves the windows a window's span later); `cancel()` when it was never sent (frees it now)."""

    __slots__ = ("_clock", "_windows")

    def __init__(self, clock: Callable[[], float], windows: tuple[_Window, ...]) -> None:
        self._clock = clock
        self._windows = windows

    def done(self) -> None:
        if not self._windows:
            return
        now = self._clock()
        for w in self._windows:
            w.open -= 1
            bisect.insort(w.closed, now)
        self._windows = ()

    def cancel(self) -> None:
        for w in self._windows:
            w.open -= 1
        self._windows = ()


class RateLimiter:
    """Delays requests so that no sliding minute has more than `per_minute` of them, and no sliding
    second more than `per_route_per_second` on one route (method + path template).

    One limiter is shared by every request made with one API key (it is per account, like Neon's).
    """

    def __init__(
        self,
        limits: RateLimits | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.limits = limits or RateLimits()
        self._clock = clock
        self._sleep = sleep
        m = self.limits.margin_seconds
        self._account = _Window(self.limits.per_minute, 60.0 + m)
        self._routes: dict[str, _Window] = {}
        self.waited_seconds = 0.0
        self.granted = 0
        self.last_account_wait: float | None = None  # when a request last waited for the per-minute window

    def _route(self, route: str) -> _Window:
        w = self._routes.get(route)
        if w is None:
            w = self._routes[route] = _Window(self.limits.per_route_per_second, 1.0 + self.limits.margin_seconds)
        return w

    async def reserve(self, route: str) -> Slot:
        """Wait until one more request on `route` stays within the limits; its place is held (in flight)
        until the returned slot is done (answered) or cancelled (never sent)."""
        waited = 0.0
        route_window = self._route(route)
        while True:
            now = self._clock()
            account_delay = self._account.wait(now)
            delay = max(account_delay, route_window.wait(now))
            if delay <= 0:
                # No await between the check and the record, so concurrent callers cannot both pass.
                self._account.open += 1
                route_window.open += 1
                self.granted += 1
                self.waited_seconds += waited
                return Slot(self._clock, (self._account, route_window))
            if account_delay > 0:
                self.last_account_wait = now
            await self._sleep(delay)
            waited += delay

    async def acquire(self, route: str) -> float:
        """Reserve and count the request as answered at once; return the seconds waited. (The client uses
        `reserve`, which counts from the answer.)"""
        before = self.waited_seconds
        slot = await self.reserve(route)
        slot.done()
        return self.waited_seconds - before

    def pressured(self, within: float = 5.0) -> bool:
        """Is the per-minute budget the bottleneck now: a request waited for it lately, or the window is
        nine-tenths full? (Then an extra request costs time; a late one does not.)"""
        now = self._clock()
        if self.last_account_wait is not None and now - self.last_account_wait < within:
            return True
        self._account.wait(now)  # prunes
        return len(self._account) >= 0.9 * self.limits.per_minute
