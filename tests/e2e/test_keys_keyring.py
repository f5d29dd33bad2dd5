"""`neon-tui keys rotate` with its default sink, the real Secret Service (gnome-keyring on a private bus): the key
comes from the keyring, a SIGKILL lands between steps, `--resume` finishes or undoes, and the keyring ends with
exactly one working key."""

from __future__ import annotations

import pytest
from test_real_services import in_session

KILL_THEN_RESUME = """
    import json, os, subprocess, sys, httpx
    from neon_tui import secrets
    from neon_tui.neon.secret import Secret
    from neon_tui.simulator import SimConfig, Simulator
    from neon_tui.simulator.serve import serve_in_thread

    STEP = os.environ["KEYS_STEP"]
    sim = Simulator(SimConfig(op_seconds=0.1))
    old = sim.api_key
    old_id = sim.account.key_by_secret(old).id
    secrets.store_api_key(Secret(old))
    out = {}
    with serve_in_thread(sim) as url:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEON_")}
        env["NEON_API_HOST"] = url

        def run(*args, **extra):
            return subprocess.run([sys.executable, "-m", "neon_tui.cli", "keys", *args], env=dict(env, **extra),
                                  capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)

        def status(secret):
            return httpx.get(url + "/auth", headers={"Authorization": f"Bearer {secret}"}).status_code

        killed = run("rotate", "--yes", "--old-key-id", str(old_id), NEON_TUI_TEST_HOOKS="keys",
                     NEON_TUI_TEST_KILL_AT=STEP)
        out["killed"] = killed.returncode
        resumed = run("rotate", "--resume", "--json")
        out["resume_code"] = resumed.returncode
        out["outcome"] = json.loads(resumed.stdout)["outcome"] if resumed.stdout.strip() else resumed.stderr
        held = secrets.load(secrets.SERVICE, secrets.API_KEY_USER).reveal()
        out["held_is_old"] = held == old
        out["held_status"] = status(held)
        out["old_status"] = status(old)
        out["backup_left"] = secrets.load(secrets.SERVICE, secrets.API_KEY_USER + ".previous") is not None
        out["live_made"] = sorted(k.key == held for k in sim.account.keys.values()
                                  if k.name.startswith("neon-tui-") and not k.revoked)
        listed = run("list", "--json")
        out["in_use_how"] = json.loads(listed.stdout)["in_use_how"] if listed.returncode == 0 else listed.stderr
        out["secret_in_output"] = any(s in t for s in (old, held) for t in
                                      (killed.stdout, killed.stderr, resumed.stdout, resumed.stderr, listed.stdout))
    print(json.dumps(out))
"""


@pytest.mark.slow
@pytest.mark.keyring
@pytest.mark.parametrize("step,expect", [("after_store", "undone"), ("after_stored", "rotated"),
                                         ("after_proven", "rotated")])
def test_sigkill_then_resume_with_the_keyring_entry_neon_tui_reads(tmp_path, monkeypatch, step, expect):
    import test_real_services

    env = test_real_services.base_env
    monkeypatch.setattr(test_real_services, "base_env", lambda home: env(home) | {"KEYS_STEP": step})
    out = in_session(tmp_path / "home", KILL_THEN_RESUME, timeout=90)
    assert out["killed"] == -9
    assert out["outcome"] == expect, out
    assert out["held_status"] == 200 and out["backup_left"] is False and out["secret_in_output"] is False
    if expect == "rotated":
        assert out["resume_code"] == 0 and not out["held_is_old"] and out["old_status"] == 401
        assert out["live_made"] == [True] and out["in_use_how"] == "recorded"
    else:
        assert out["resume_code"] == 1 and out["held_is_old"] and out["live_made"] == []
