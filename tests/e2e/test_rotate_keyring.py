"""`neon-tui rotate --deliver keyring` end to end with a real Secret Service (gnome-keyring on a private bus)."""

from __future__ import annotations

import pytest
from test_real_services import in_session

ROTATE_TO_KEYRING = """
    import json, os
    from neon_tui import secrets
    from neon_tui.cli import main
    from neon_tui.simulator import SimConfig, Simulator
    from neon_tui.simulator.serve import serve_in_thread

    sim = Simulator(SimConfig(op_seconds=0.1))
    pid = sim.inspect.project_by_name("acme-prod").id
    bid = sim.inspect.branch_by_name(pid, "staging").id
    with serve_in_thread(sim) as url:
        os.environ.update(NEON_API_HOST=url, NEON_API_KEY=sim.api_key)
        code = main(["rotate", "acme-prod/staging/data*", "--apply", "--yes", "--deliver", "keyring"])
    new = sim.inspect.password(pid, bid, "data team")
    out = {"code": code, "resets": sim.inspect.reset_count(pid, bid, "data team"), "entries": {}}
    for db in ("neondb", "analytics"):
        for pooled in (False, True):
            entry = secrets.connection_entry(pid, bid, "data team", db, pooled)
            got = secrets.load(*entry)
            out["entries"]["|".join(entry)] = None if got is None else {
                "has_new_password": new in got.reveal(), "pooler": "-pooler." in got.reveal()}
    print(json.dumps(out))
"""


@pytest.mark.slow
@pytest.mark.keyring
def test_rotate_delivers_every_connection_string_to_the_secret_service(tmp_path):
    out = in_session(tmp_path / "home", ROTATE_TO_KEYRING, timeout=60)
    assert out["code"] == 0 and out["resets"] == 1
    entries = out["entries"]
    stored = {k: v for k, v in entries.items() if v is not None}
    assert stored, entries
    for name, v in stored.items():
        assert v["has_new_password"], name
        assert v["pooler"] == name.endswith("#pooled"), name
    assert any(k.endswith("#pooled") for k in stored) and any(not k.endswith("#pooled") for k in stored)
