"""`neon-tui keys` end to end: the real command against a simulator served on loopback, SIGKILL between the
steps of a key hand-off and `--resume` afterwards."""

from __future__ import annotations

import json
import signal

import httpx
import pytest

STEPS = ["after_intent", "after_create_sent", "after_created", "after_store", "after_stored", "after_switch",
         "after_proven", "after_revoked"]


def _answers(served, secret: str) -> int:
    r = httpx.get(served.url + "/auth", headers={"Authorization": f"Bearer {secret}"}, timeout=10)
    return r.status_code


def _old_id(served) -> int:
    return served.sim.account.key_by_secret(served.sim.api_key).id


def _journals(served):
    d = served.state / "neon-tui" / "actions"
    return sorted(d.glob("keys-*.jsonl")) if d.is_dir() else []


def _no_secret(served, texts, secrets):
    for path in _journals(served):
        texts = [*texts, path.read_text()]
    for t in texts:
        for s in secrets:
            assert s not in t


@pytest.mark.slow
def test_list_json_marks_the_key_in_use_and_shows_last_use(served):
    old = served.sim.api_key
    p = served.run("keys", "list", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["in_use"] == _old_id(served) and out["in_use_how"] == "probe" and out["key_kind"] == "personal"
    (mine,) = [k for k in out["keys"] if k["in_use"]]
    assert mine["id"] == _old_id(served) and mine["last_used_from_addr"] == "127.0.0.1" and mine["last_used_at"]
    assert {"created_at", "created_by", "scope", "org_id", "project_id"} <= set(mine)
    _no_secret(served, [p.stdout, p.stderr], [old])


@pytest.mark.slow
def test_rotate_without_a_confirmed_key_id_changes_nothing(served, tmp_path):
    before = set(served.sim.account.keys)
    p = served.run("keys", "rotate", "--yes", "--sink", f"file:{tmp_path / 'k'}")
    assert p.returncode == 2
    assert f"--old-key-id {_old_id(served)}" in p.stderr and "nothing was changed" in p.stderr
    assert set(served.sim.account.keys) == before and not (tmp_path / "k").exists()


@pytest.mark.slow
def test_rotate_hands_off_to_a_file_and_the_old_key_answers_401(served, tmp_path):
    old = served.sim.api_key
    sink = tmp_path / "neon.key"
    p = served.run("keys", "rotate", "--yes", "--old-key-id", str(_old_id(served)), "--sink", f"file:{sink}",
                   "--json")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    new = sink.read_text().strip()
    assert res["outcome"] == "rotated" and res["old_status"] == "revoked"
    assert (sink.stat().st_mode & 0o777) == 0o600
    assert _answers(served, new) == 200 and _answers(served, old) == 401
    assert served.sim.account.key_by_secret(new).id == res["new_key_id"]
    assert "NEON_API_KEY in your environment holds the OLD key" in p.stderr
    _no_secret(served, [p.stdout, p.stderr], [old, new])


@pytest.mark.slow
@pytest.mark.parametrize("step", STEPS)
def test_sigkill_between_steps_then_resume_leaves_one_working_key_held(served, tmp_path, step):
    old = served.sim.api_key
    oid = _old_id(served)
    sink = tmp_path / "neon.key"
    env = dict(served.env, NEON_TUI_TEST_HOOKS="keys", NEON_TUI_TEST_KILL_AT=step)
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "neon_tui.cli", "keys", "rotate", "--yes", "--old-key-id", str(oid),
                        "--sink", f"file:{sink}"], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == -signal.SIGKILL, p.stderr
    # a plain rotate refuses while a hand-off is unfinished
    again = served.run("keys", "rotate", "--yes", "--old-key-id", str(oid), "--sink", f"file:{sink}")
    assert again.returncode == 2 and "--resume" in again.stderr
    r = served.run("keys", "rotate", "--resume", "--json")
    assert r.returncode == 0 or json.loads(r.stdout)["outcome"] == "undone", r.stderr
    res = json.loads(r.stdout)
    live = {k.id: k.key for k in served.sim.account.keys.values() if not k.revoked}
    made = [k for k in served.sim.account.keys.values() if k.name.startswith("neon-tui-")]
    if res["outcome"] == "rotated":
        held = sink.read_text().strip()
        assert _answers(served, held) == 200 and _answers(served, old) == 401
        assert [k.key for k in made if not k.revoked] == [held]
        assert not (tmp_path / "neon.key.previous").exists()
    else:
        assert res["outcome"] == "undone" and r.returncode == 1
        held = old  # the key neon-tui was given (NEON_API_KEY), untouched
        assert _answers(served, old) == 200 and all(k.revoked for k in made)
        assert not sink.exists()
    assert list(live.values()).count(held) == 1
    expect = "undone" if step in STEPS[:4] else "rotated"
    assert res["outcome"] == expect
    done = served.run("keys", "rotate", "--resume")
    assert done.returncode == 2 and "no interrupted key hand-off" in done.stderr
    _no_secret(served, [p.stdout, p.stderr, r.stdout, r.stderr], [old, held])


@pytest.mark.slow
def test_failed_old_revoke_exits_1_and_says_still_live(served, tmp_path):
    old = served.sim.api_key
    served.sim.fail_next("DELETE /api_keys/{key_id}", "500", times=50)
    sink = tmp_path / "k"
    p = served.run("keys", "rotate", "--yes", "--old-key-id", str(_old_id(served)), "--sink", f"file:{sink}")
    assert p.returncode == 1
    assert "STILL LIVE" in p.stderr
    new = sink.read_text().strip()
    assert _answers(served, old) == 200 and _answers(served, new) == 200
    # a new rotation waits for this one; --resume tries the revoke again once the API lets it
    again = served.run("keys", "rotate", "--yes", "--old-key-id", str(_old_id(served)), "--sink", f"file:{sink}")
    assert again.returncode == 2 and "--resume" in again.stderr
    served.sim.clear_scripted_faults()
    r = served.run("keys", "rotate", "--resume", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["outcome"] == "rotated"
    assert _answers(served, old) == 401 and _answers(served, new) == 200 and sink.read_text().strip() == new


@pytest.mark.slow
def test_project_scoped_key_needs_a_personal_key(served, tmp_path):
    sim = served.sim
    org = sim.inspect.primary_org_id
    pid = sim.inspect.project_ids(org)[0]
    with sim.lock:
        scoped = sim.account.new_key("ci-scoped", sim.clock(), org_id=org, project_id=pid)
    env = dict(served.env, NEON_API_KEY=scoped.key)
    import subprocess
    import sys

    def run(*args, **extra):
        return subprocess.run([sys.executable, "-m", "neon_tui.cli", "keys", *args], env=dict(env, **extra),
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    before = set(sim.account.keys)
    p = run("rotate", "--yes", "--old-key-id", str(scoped.id), "--sink", f"file:{tmp_path / 'k'}")
    assert p.returncode == 2 and "NEON_PERSONAL_API_KEY" in p.stderr
    assert set(sim.account.keys) == before
    p = run("rotate", "--yes", "--old-key-id", str(scoped.id), "--sink", f"file:{tmp_path / 'k'}",
            NEON_PERSONAL_API_KEY=sim.api_key)
    assert p.returncode == 0, p.stderr
    new = sim.account.key_by_secret((tmp_path / "k").read_text().strip())
    assert new.project_id == pid and new.org_id == org and scoped.revoked and not new.revoked


@pytest.mark.slow
def test_revoke_others_with_review_and_refuses_the_key_in_use(served):
    sim = served.sim
    with sim.lock:
        other = sim.account.new_key("old-laptop", sim.clock())
    p = served.run("keys", "revoke", str(_old_id(served)), "--yes", "--old-key-id", str(_old_id(served)))
    assert p.returncode == 2 and "keys rotate" in p.stderr
    p = served.run("keys", "revoke", str(other.id), input="")
    assert p.returncode == 2 and not other.revoked  # no terminal, no --yes
    p = served.run("keys", "revoke", str(other.id), "--yes", "--json", "--old-key-id", str(_old_id(served)))
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["revoked"] == [other.id] and other.revoked
    assert _answers(served, other.key) == 401 and _answers(served, sim.api_key) == 200


@pytest.mark.slow
def test_create_stores_only_in_the_chosen_sink(served, tmp_path):
    sink = tmp_path / "ci.key"
    p = served.run("keys", "create", "ci-2", "--sink", f"file:{sink}", "--print")
    assert p.returncode == 2 and "terminal" in p.stderr and not sink.exists()
    p = served.run("keys", "create", "ci-2", "--sink", f"file:{sink}", "--json")
    assert p.returncode == 0, p.stderr
    secret = sink.read_text().strip()
    assert json.loads(p.stdout)["key_id"] == served.sim.account.key_by_secret(secret).id
    assert (sink.stat().st_mode & 0o777) == 0o600 and _answers(served, secret) == 200
    p2 = served.run("keys", "create", "ci-3", "--sink", f"file:{sink}")
    assert p2.returncode == 2 and "already holds" in p2.stderr
    p3 = served.run("keys", "create", "x", "--sink", "keyring")
    assert p3.returncode == 2 and "keys rotate" in p3.stderr
    _no_secret(served, [p.stdout, p.stderr], [secret, served.sim.api_key])


@pytest.mark.slow
def test_on_a_terminal_a_guessed_key_and_the_rotation_are_both_typed_confirmations(served, tmp_path):
    import os
    import pty
    import subprocess
    import sys

    old = served.sim.api_key
    sink = tmp_path / "k"
    master, slave = pty.openpty()
    try:
        os.write(master, f"{_old_id(served)}\nrotate\n".encode())
        p = subprocess.run([sys.executable, "-m", "neon_tui.cli", "keys", "rotate", "--sink", f"file:{sink}"],
                           env=served.env, stdin=slave, capture_output=True, text=True, timeout=60)
    finally:
        os.close(slave)
        os.close(master)
    assert p.returncode == 0, p.stderr
    assert f"type the key id {_old_id(served)} to confirm" in p.stderr and 'type "rotate" to go on' in p.stderr
    assert _answers(served, old) == 401 and _answers(served, sink.read_text().strip()) == 200


@pytest.mark.slow
def test_on_a_terminal_a_wrong_answer_changes_nothing(served, tmp_path):
    import os
    import pty
    import subprocess
    import sys

    before = set(served.sim.account.keys)
    master, slave = pty.openpty()
    try:
        os.write(master, b"12345\n")
        p = subprocess.run([sys.executable, "-m", "neon_tui.cli", "keys", "rotate", "--sink",
                            f"file:{tmp_path / 'k'}"], env=served.env, stdin=slave, capture_output=True, text=True,
                           timeout=60)
    finally:
        os.close(slave)
        os.close(master)
    assert p.returncode == 2 and "not confirmed; nothing was changed" in p.stderr
    assert set(served.sim.account.keys) == before and _answers(served, served.sim.api_key) == 200


def test_default_keyring_sink_without_a_keyring_refuses_before_anything(served):
    before = set(served.sim.account.keys)
    p = served.run("keys", "rotate", "--yes", "--old-key-id", str(_old_id(served)))
    assert p.returncode == 2 and "keyring:NEON_API_KEY cannot be used" in p.stderr
    assert "nothing was changed" in p.stderr and set(served.sim.account.keys) == before
    assert not _journals(served)


@pytest.mark.slow
def test_demo_rotation_never_writes_to_the_keyring(tmp_path):
    """The demo's simulated key must never replace the user's real key in the keyring entry: with a keyring
    backend that fails on every call, the demo hand-off still completes (memory), and a keyring sink is refused."""
    import os
    import subprocess
    import sys

    from neon_tui.simulator import SimConfig, Simulator

    sim = Simulator(SimConfig(op_seconds=0.2))  # the demo's account is the same in every process
    old_id = str(sim.account.key_by_secret(sim.api_key).id)
    env = {**os.environ, "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
           "NEON_TUI_STATE_DIR": str(tmp_path), "NEON_API_KEY": ""}

    def run(*args):
        return subprocess.run([sys.executable, "-m", "neon_tui.cli", "keys", "rotate", "--demo", "--yes",
                               "--old-key-id", old_id, *args], env=env, capture_output=True, text=True, timeout=60)

    p = run()
    assert p.returncode == 0, p.stderr
    assert "in memory (demo: never your keyring)" in p.stderr and f"old key {old_id} is revoked" in p.stderr
    for sink in ("keyring", "keyring:other"):
        p = run("--sink", sink)
        assert p.returncode == 2 and "never writes to your keyring" in p.stderr


@pytest.mark.slow
def test_rotate_with_old_key_id_of_a_key_not_in_use_is_refused_and_changes_nothing(served, tmp_path):
    other = served.sim.account.new_key("ci-deploy", 0.0)
    before = set(served.sim.account.keys)
    p = served.run("keys", "rotate", "--yes", "--old-key-id", str(other.id), "--sink", f"file:{tmp_path / 'k'}")
    assert p.returncode == 2, p.stderr
    assert f"key {_old_id(served)} is the one that answered" in p.stderr and "nothing was changed" in p.stderr
    assert not other.revoked and set(served.sim.account.keys) == before and not (tmp_path / "k").exists()
    assert _journals(served) == []
    # revoking the key that the probe shows in use is refused too, even with another key named
    r = served.run("keys", "revoke", "--yes", "--old-key-id", str(other.id), str(_old_id(served)))
    assert r.returncode == 2 and "looks like the key in use" in r.stderr
    assert _answers(served, served.sim.api_key) == 200


@pytest.mark.slow
def test_an_interrupted_demo_hand_off_is_journaled_parseably_and_blocks_no_later_demo(tmp_path):
    """A demo hand-off killed half-way cannot be resumed (its simulated account died with it): the next demo says
    so once, closes it as abandoned, and rotates; it never answers 'an interrupted key hand-off exists' forever."""
    import os
    import subprocess
    import sys

    from neon_tui.incident.actions import read_action_journal
    from neon_tui.incident.keys import sink_from_spec
    from neon_tui.simulator import SimConfig, Simulator

    sim = Simulator(SimConfig(op_seconds=0.2))
    old_id = str(sim.account.key_by_secret(sim.api_key).id)
    env = {**os.environ, "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
           "NEON_TUI_STATE_DIR": str(tmp_path), "NEON_API_KEY": ""}

    def run(*args, **extra):
        return subprocess.run([sys.executable, "-m", "neon_tui.cli", "keys", "rotate", "--demo", *args],
                              env={**env, **extra}, capture_output=True, text=True, timeout=60)

    p = run("--yes", "--old-key-id", old_id, NEON_TUI_TEST_HOOKS="keys", NEON_TUI_TEST_KILL_AT="after_proven")
    assert p.returncode == -signal.SIGKILL, p.stderr
    (path,) = sorted((tmp_path / "actions").glob("keys-*.jsonl"))
    assert read_action_journal(path).header["sink"] == "memory"
    assert sink_from_spec("memory", demo=True).describe().startswith("memory")
    again = run("--yes", "--old-key-id", old_id)
    assert again.returncode == 0, again.stderr
    assert "cannot be resumed: closed as abandoned" in again.stderr
    assert "interrupted key hand-off exists" not in again.stderr
    assert read_action_journal(path).events("done")[-1]["outcome"] == "abandoned"
    third = run("--yes", "--old-key-id", old_id)
    assert third.returncode == 0 and "abandoned" not in third.stderr
    r = run("--resume")
    assert r.returncode == 2 and "no interrupted key hand-off" in r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("step", ["after_created", "after_proven"])
def test_sigkill_on_the_probe_path_then_resume(served, tmp_path, step):
    """No --old-key-id: the key in use is found by the probe and confirmed on a terminal; SIGKILL; --resume."""
    import os
    import pty
    import subprocess
    import sys

    old = served.sim.api_key
    oid = _old_id(served)
    sink = tmp_path / "k"
    env = dict(served.env, NEON_TUI_TEST_HOOKS="keys", NEON_TUI_TEST_KILL_AT=step)
    master, slave = pty.openpty()
    try:
        os.write(master, f"{oid}\nrotate\n".encode())
        p = subprocess.run([sys.executable, "-m", "neon_tui.cli", "keys", "rotate", "--sink", f"file:{sink}"],
                           env=env, stdin=slave, capture_output=True, text=True, timeout=60)
    finally:
        os.close(slave)
        os.close(master)
    assert p.returncode == -signal.SIGKILL, p.stderr
    assert f"type the key id {oid} to confirm" in p.stderr
    r = served.run("keys", "rotate", "--resume", "--json")
    res = json.loads(r.stdout)
    made = [k for k in served.sim.account.keys.values() if k.name.startswith("neon-tui-")]
    if step == "after_created":
        assert res["outcome"] == "undone" and r.returncode == 1, r.stderr
        assert _answers(served, old) == 200 and all(k.revoked for k in made) and not sink.exists()
    else:
        assert res["outcome"] == "rotated" and r.returncode == 0, r.stderr
        held = sink.read_text().strip()
        assert _answers(served, old) == 401 and _answers(served, held) == 200
        assert [k.key for k in made if not k.revoked] == [held] and res["old_key_id"] == oid
    _no_secret(served, [p.stdout, p.stderr, r.stdout, r.stderr], [old])
