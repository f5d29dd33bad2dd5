"""The client-side limiter: never more than 700 requests in a sliding minute, nor 40 per second per route."""

from __future__ import annotations

import asyncio

from neon_tui.neon import RateLimiter, RateLimits


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    async def sleep(self, s):
        self.now += s
        await asyncio.sleep(0)


def max_in_window(times, span):
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - span:
            j += 1
        best = max(best, i - j + 1)
    return best


async def test_per_route_burst_limit():
    clock = FakeClock()
    lim = RateLimiter(RateLimits(per_minute=10_000, per_route_per_second=40, margin_seconds=0.0), clock=clock,
                      sleep=clock.sleep)
    times = []
    for _ in range(200):
        await lim.acquire("GET /x")
        times.append(clock.now)
    assert max_in_window(times, 1.0) == 40
    # another route has its own budget
    t0 = clock.now
    for _ in range(40):
        await lim.acquire("GET /y")
    assert clock.now == t0


async def test_account_limit_per_minute_across_routes():
    clock = FakeClock()
    lim = RateLimiter(RateLimits(margin_seconds=0.0), clock=clock, sleep=clock.sleep)
    times = []
    for i in range(2000):
        await lim.acquire(f"GET /r{i % 50}")
        times.append(clock.now)
    assert max_in_window(times, 60.0) == 700
    # and it is not needlessly slow: 2000 requests fit in just over two windows
    assert times[-1] - times[0] < 2 * 60 + 5


async def test_concurrent_acquirers_respect_limits():
    clock = FakeClock()
    lim = RateLimiter(RateLimits(per_minute=100, per_route_per_second=5, margin_seconds=0.0), clock=clock,
                      sleep=clock.sleep)
    times = []

    async def one():
        await lim.acquire("POST /reset")
        times.append(clock.now)

    await asyncio.gather(*(one() for _ in range(60)))
    assert max_in_window(times, 1.0) <= 5
    assert lim.granted == 60


async def test_margin_widens_windows():
    clock = FakeClock()
    lim = RateLimiter(RateLimits(per_minute=1000, per_route_per_second=2, margin_seconds=0.5), clock=clock,
                      sleep=clock.sleep)
    times = []
    for _ in range(6):
        await lim.acquire("GET /x")
        times.append(clock.now)
    assert max_in_window(times, 1.5) <= 2
