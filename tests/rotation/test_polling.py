"""The poll timer learns how long a reset's operations take, downward as well as upward."""

from __future__ import annotations

from neon_tui.rotation.polling import PollTimer


def wait(timer: PollTimer, true: float, *, pressured: bool = False) -> tuple[int, float]:
    """One reset's wait against operations that finish `true` seconds in: (polls sent, lateness)."""
    at, probe = timer.plan(pressured=pressured)
    missed: list[float] = []
    step = timer.poll_min
    while at < true:
        missed.append(at)
        at, step = timer.after_miss(at, step, pressured=pressured)
    timer.observe(at, missed, pressured=pressured, probe=probe)
    return len(missed) + 1, at - true


def test_an_estimate_too_long_shrinks():
    """The old estimate only grew: a first poll that succeeds never said how much earlier they finished."""
    timer = PollTimer(first_poll=2.0, poll_min=0.25, poll_max=5.0)
    results = [wait(timer, 0.8) for _ in range(20)]
    assert timer.hi is not None and timer.hi <= 0.8 + timer.tol()
    late = [lateness for _, lateness in results[10:]]
    assert max(late) <= timer.tol() + 1e-9
    polls = sum(n for n, _ in results[10:]) / 10
    assert polls <= 2.0  # probing below the bound costs at most one extra request per wait


def test_an_estimate_too_short_grows_and_stays_tight():
    timer = PollTimer(first_poll=1.0, poll_min=0.25, poll_max=5.0)
    for _ in range(10):
        wait(timer, 1.0)
    results = [wait(timer, 1.6) for _ in range(15)]   # operations got slower
    assert 1.6 <= timer.hi <= 1.6 + timer.tol()
    assert max(lateness for _, lateness in results[8:]) <= timer.tol() + 1e-9


def test_under_rate_pressure_it_never_polls_below_the_known_bound():
    timer = PollTimer(first_poll=1.0, poll_min=0.25, poll_max=5.0)
    for _ in range(10):
        wait(timer, 0.9)                        # a tight bracket around 0.9 s
    assert timer.hi - timer.lo <= 0.25 * timer.hi
    probes = timer.probes
    results = [wait(timer, 0.5, pressured=True) for _ in range(10)]
    assert timer.probes == probes              # no probing: every extra request costs time there
    assert all(n == 1 for n, _ in results)     # one poll per reset
    # and misses back off in big steps rather than many small requests
    at, step = timer.after_miss(1.0, 0.01, pressured=True)
    assert at - 1.0 >= timer.poll_min


def test_the_bracket_leaves_a_round_trip_for_a_failed_probe():
    timer = PollTimer(first_poll=1.0, poll_min=0.25, poll_max=5.0)
    timer.observe(1.0, [], rtt=0.05)
    assert timer.tol() >= 0.1
    timer.lo = 0.95
    assert timer.first() == 1.0  # a bracket narrower than two round trips: poll at the bound


def test_a_poll_held_back_by_the_limiter_does_not_teach_a_long_wait():
    timer = PollTimer(first_poll=1.0, poll_min=0.25, poll_max=5.0)
    for _ in range(5):
        wait(timer, 0.97)
    good = timer.hi
    timer.observe(55.0, [])          # found done, but the limiter let it out 55 s late
    assert timer.hi == good
    # and even a huge bound from a slow wait comes back down, under pressure too, without extra requests
    timer.observe(26.0, [0.5])
    results = [wait(timer, 0.97, pressured=True) for _ in range(12)]
    assert timer.hi <= 0.97 + 0.25 * timer.hi + timer.tol()
    assert sum(n for n, _ in results) <= 12 + 3


def test_one_probe_at_a_time():
    """Fifty projects waiting at once: one probes below the bound, the others poll at it."""
    timer = PollTimer(first_poll=1.0, poll_min=0.25, poll_max=5.0)
    timer.observe(1.0, [])
    plans = [timer.plan() for _ in range(50)]
    assert sum(1 for _, probe in plans if probe) == 1
    assert all(at == 1.0 for at, probe in plans if not probe)
    timer.abandon()                    # the probe's wait was cancelled: another may probe
    assert timer.plan()[1] is True
