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


async def test_a_request_counts_from_its_answer_not_its_departure():
    """Neon counts arrivals: a request answered late (queued, slow network, loaded loop) still sits in
    Neon's window for a full span after it arrived, so the limiter counts it from its answer."""
    clock = FakeClock()
    lim = RateLimiter(RateLimits(per_minute=10_000, per_route_per_second=2, margin_seconds=0.0), clock=clock,
                      sleep=clock.sleep)
    t0 = clock.now
    a = await lim.reserve("GET /x")
    b = await lim.reserve("GET /x")
    b.done()             # answered at once (t0)
    clock.now += 0.5
    a.done()             # answered half a second later (t0 + 0.5)
    await lim.acquire("GET /x")
    assert clock.now == t0 + 1.0     # b's place freed first
    await lim.acquire("GET /x")
    assert clock.now == t0 + 1.5     # then a's, counted from its answer, not from t0


async def test_requests_in_flight_hold_the_window_until_answered():
    clock = FakeClock()
    lim = RateLimiter(RateLimits(per_minute=2, per_route_per_second=100, margin_seconds=0.0), clock=clock,
                      sleep=clock.sleep)
    t0 = clock.now
    first = await lim.reserve("GET /a")
    await lim.reserve("GET /b")      # never answered in this test
    granted = []

    async def third():
        await lim.acquire("GET /c")
        granted.append(clock.now)

    task = asyncio.ensure_future(third())
    while clock.now < t0 + 3.0:      # an in-flight request for 3 s: nobody may take its place
        await asyncio.sleep(0)
    assert not granted
    first.done()
    answered = clock.now
    await task
    assert granted[0] >= answered + 60.0
    assert lim.last_account_wait is not None and lim.pressured(within=120.0)


async def test_cancelled_slot_frees_its_place_at_once():
    clock = FakeClock()
    lim = RateLimiter(RateLimits(per_minute=10, per_route_per_second=1, margin_seconds=0.0), clock=clock,
                      sleep=clock.sleep)
    t0 = clock.now
    slot = await lim.reserve("POST /reset")
    slot.cancel()                    # refused before it left: never reached Neon
    await lim.acquire("POST /reset")
    assert clock.now == t0
    assert lim.last_account_wait is None and not lim.pressured()


async def test_client_counts_from_the_answer_and_releases_refused_sends():
    """Through NeonClient: a slow answer keeps its place; a guard that refuses frees it."""
    import httpx

    from neon_tui.neon import NeonClient

    clock = FakeClock()
    lim = RateLimiter(RateLimits(per_minute=1, per_route_per_second=10, margin_seconds=0.0), clock=clock,
                      sleep=clock.sleep)

    def handler(request):
        clock.now += 2.0  # the answer takes two seconds
        return httpx.Response(200, json={"account_id": "a", "auth_method": "api_key_user"})

    async with NeonClient("napi_test", host="http://127.0.0.1:9/api/v2", transport=httpx.MockTransport(handler),
                          limiter=lim) as client:
        def refuse():
            raise RuntimeError("refused")

        try:
            await client.request("POST", "/x", "/x", guard=refuse)
        except RuntimeError:
            pass
        assert client.requests_sent == 0
        t0 = clock.now
        await client.get_auth()          # not held up by the refused one
        assert clock.now == t0 + 2.0
        await client.get_auth()          # waits a minute from the first one's answer, not its departure
        assert clock.now >= t0 + 2.0 + 60.0
