"""A client-side limiter that keeps one account under Neon's documented rate limits."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Neon's documented limits: 700 requests per minute per account, bursts of 40 per second per route.

    `margin_seconds` widens both windows a little: Neon counts arrivals, we count departures, and
    latency jitter between the two could otherwise let a 701st request land inside Neon's window.
    """

    per_minute: int = 700
    per_route_per_second: int = 40
    margin_seconds: float = 0.25

    def __post_init__(self) -> None:
        if self.per_minute < 1 or self.per_route_per_second < 1:
            raise ValueError("rate limits must be at least 1")


class _Window:
    """Exact sliding-window log: at most `limit` events in any `span` seconds."""

    __slots__ = ("limit", "span", "times")

    def __init__(self, limit: int, span: float) -> None:
        self.limit = limit
        self.span = span
        self.times: deque[float] = deque()

    def wait(self, now: float) -> float:
        while self.times and self.times[0] <= now - self.span:
            self.times.popleft()
        if len(self.times) < self.limit:
            return 0.0
        return self.times[0] + self.span - now


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

    def _route(self, route: str) -> _Window:
        w = self._routes.get(route)
        if w is None:
            w = self._routes[route] = _Window(self.limits.per_route_per_second, 1.0 + self.limits.margin_seconds)
        return w

    async def acquire(self, route: str) -> float:
        """Wait until one more request on `route` stays within the limits; return the seconds waited."""
        waited = 0.0
        route_window = self._route(route)
        while True:
            now = self._clock()
            delay = max(self._account.wait(now), route_window.wait(now))
            if delay <= 0:
                # No await between the check and the record, so concurrent callers cannot both pass.
                self._account.times.append(now)
                route_window.times.append(now)
                self.granted += 1
                self.waited_seconds += waited
                return waited
            await self._sleep(delay)
            waited += delay
