"""Shared test set-up: isolate user config, state and keyring from the developer's machine."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / "state"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.delenv("NEON_API_KEY", raising=False)
    monkeypatch.delenv("NEON_API_HOST", raising=False)
    yield


# Tests that need a real service (a PostgreSQL server, a Secret Service, an X clipboard, tmux) are slow by nature:
# `make quick` (-m "not slow") must leave them out, so each must also carry the slow marker. Checked at
# collection so a forgotten marker is an error naming the test, not a quick run that suddenly takes minutes.
SERVICE_MARKERS = ("postgres", "keyring", "clipboard", "tmux")
# Fixtures that start a real service: a test using one must say so with the matching marker.
SERVICE_FIXTURES = {"pg_sim": "postgres", "pg_served": "postgres"}


def service_marker_problems(items) -> list[str]:
    """One line per test that needs a real service without carrying the markers that say so."""
    problems = []
    for item in items:
        for fixture, marker in SERVICE_FIXTURES.items():
            if fixture in getattr(item, "fixturenames", ()) and item.get_closest_marker(marker) is None:
                problems.append(f"{item.nodeid}: uses {fixture}, so it needs @pytest.mark.{marker}")
        needs = [m for m in SERVICE_MARKERS if item.get_closest_marker(m) is not None]
        if needs and item.get_closest_marker("slow") is None:
            problems.append(f"{item.nodeid}: marked {', '.join(needs)}, so it needs @pytest.mark.slow too")
    return problems


def pytest_collection_modifyitems(config, items):
    problems = service_marker_problems(items)
    if problems:
        raise pytest.UsageError("tests that need a real service must name it and be marked slow:\n  "
                                + "\n  ".join(problems))
