"""Times in the detail pane read as English: an age, or "just now", never "(now ago)"."""

from datetime import datetime, timedelta, timezone

from neon_tui.widgets.org_tree import stamp

NOW = datetime(2026, 11, 30, 3, 0, tzinfo=timezone.utc)


def test_stamp_says_just_now_under_a_minute_and_an_age_after():
    assert stamp(NOW - timedelta(seconds=20), NOW) == "2026-11-30 02:59 UTC (just now)"
    assert stamp(NOW - timedelta(hours=5, minutes=3), NOW) == "2026-11-29 21:57 UTC (5h ago)"
    assert stamp(None, NOW) == "?"
