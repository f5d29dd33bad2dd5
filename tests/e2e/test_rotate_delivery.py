"""`neon-tui rotate` as a script uses it: sinks, the breaker, JSON Lines under SIGKILL, input that cannot widen
a run, and journals that are damaged, foreign or cannot be written. Real processes, a simulator on loopback."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from neon_tui.rotation.journal import read_journal

FAKES = str(Path(__file__).parent / "fakes")


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def mutations(sim):
    return [r for r in sim.inspect.requests if r.method != "GET"]


def resets(sim):
    return [r for r in sim.inspect.requests if r.route and r.route.endswith("reset_password") and r.method == "POST"]


# ------------------------------------------------------------------ input that can never widen a run


@pytest.mark.parametrize("selector", ["//", "acme-prod//app", "acme-prod/", "/staging/app", "acme-prod/ /app"])
def test_empty_selector_parts_are_an_error_before_anything_is_asked(served, selector):
    out = served.run("rotate", selector, "--apply", "--yes", "--deliver", "stdout")
    assert out.returncode == 2, out.stderr
    assert "'*'" in out.stderr and "Traceback" not in out.stderr
    assert not served.sim.inspect.requests  # refused before the API was even asked


def test_a_selector_of_another_organization_names_the_org_to_use(served):
    sim = served.sim
    out = served.run("rotate", "side-project/*", "--org", "Acme Robotics", "--apply", "--yes", "--deliver", "stdout")
    assert out.returncode == 2
    personal = sim.inspect.personal_org_id
    assert f"--org {personal}" in out.stderr and "side-project/*" in out.stderr
    assert not mutations(sim)


def test_a_key_with_a_trailing_newline_works(served):
    env = dict(served.env, NEON_API_KEY=served.sim.api_key + "\n")
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "neon_tui.cli", "rotate", "acme-prod/staging/app"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "rotate  acme-prod/staging/app" in out.stdout


# ------------------------------------------------------------------ sinks


@pytest.mark.slow
def test_file_sink_and_stdout_together(served, tmp_path):
    sim = served.sim
    path = tmp_path / "new-creds.tsv"
    out = served.run("rotate", "acme-prod/staging/app", "acme-prod/preview/pr-157/app", "--apply", "--yes",
                     "--deliver", f"file:{path}", "--deliver", "stdout")
    assert out.returncode == 0, out.stderr
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    rows = [line.split("\t") for line in path.read_text().splitlines() if not line.startswith("#")]
    stdout_rows = [line.split("\t") for line in out.stdout.splitlines()]
    assert rows == stdout_rows  # the same credentials, one line each, in both sinks
    pid = sim.inspect.project_by_name("acme-prod").id
    staging = sim.inspect.branch_by_name(pid, "staging").id
    pr157 = sim.inspect.branch_by_name(pid, "preview/pr-157").id
    kinds = {(r[0], r[2]) for r in rows}
    assert ("acme-prod/staging/app", "direct") in kinds and ("acme-prod/staging/app", "pooled") in kinds
    # preview/pr-157 has no compute: its password itself, labelled
    bare = [r for r in rows if r[0] == "acme-prod/preview/pr-157/app"]
    assert bare and all(r[2] == "password" and r[4] == "live,no-endpoint-yet" for r in bare)
    assert bare[0][3] == sim.inspect.password(pid, pr157, "app")
    assert any(sim.inspect.password(pid, staging, "app") in r[3] for r in rows)
    state = read_journal(served.journals()[0])
    assert state.ended and {t.state for t in state.targets.values()} == {"delivered"}
    for t in state.targets.values():
        assert set(t.delivered) == {"stdout", f"file:{path}"}


def test_file_sink_refuses_an_existing_file_before_any_reset(served, tmp_path):
    path = tmp_path / "exists.tsv"
    path.write_text("mine\n")
    out = served.run("rotate", "acme-prod/staging/app", "--apply", "--yes", "--deliver", f"file:{path}")
    assert out.returncode == 2 and "exists" in out.stderr
    assert path.read_text() == "mine\n" and not mutations(served.sim)


def _flaky_env(served, tmp_path, ok_writes: int) -> tuple[dict, Path]:
    store = tmp_path / "keyring.json"
    config = tmp_path / "config" / "neon-tui"
    config.mkdir(parents=True, exist_ok=True)
    (config / "config.toml").write_text('[keyring]\nallow_backends = ["flaky_keyring.FlakyKeyring"]\n')
    env = dict(served.env, PYTHON_KEYRING_BACKEND="flaky_keyring.FlakyKeyring", FLAKY_KEYRING_STORE=str(store),
               FLAKY_KEYRING_OK=str(ok_writes), XDG_CONFIG_HOME=str(tmp_path / "config"),
               PYTHONPATH=os.pathsep.join(p for p in (FAKES, served.env.get("PYTHONPATH", "")) if p))
    return env, store


@pytest.mark.slow
@pytest.mark.sim(projects=6, branches=2, roles=1, op_seconds=0.3, latency_ms=20)
def test_a_keyring_failing_mid_run_stops_new_resets_and_nothing_is_lost(served, tmp_path):
    import subprocess
    import sys

    sim = served.sim
    env, store = _flaky_env(served, tmp_path, ok_writes=1 + 4)  # the probe, then four entries
    out = subprocess.run([sys.executable, "-m", "neon_tui.cli", "rotate", "*", "--apply", "--yes",
                          "--deliver", "keyring"], env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 1, out.stderr
    assert "keyring" in out.stderr and "resumable" in out.stderr and "Traceback" not in out.stderr
    failed_at = float(Path(str(store) + ".failed").read_text())
    late = [r for r in resets(sim) if r.t > failed_at + 0.05]
    assert not late, f"{len(late)} reset(s) started after the keyring failed"
    (journal,) = served.journals()
    state = read_journal(journal)
    assert not state.ended
    rotated = [k for k in state.targets if sim.inspect.reset_count(*k)]
    assert all(sim.inspect.reset_count(*k) == 1 for k in rotated)
    projects = {k[0] for k in state.targets}
    held = [k for k in rotated if state.targets[k].state != "delivered"]
    assert len(held) <= len(projects)  # only resets already on their way when the keyring failed
    # resume once the keyring works: the held passwords are read back and delivered, the rest rotates
    env["FLAKY_KEYRING_OK"] = "1000000"
    out = subprocess.run([sys.executable, "-m", "neon_tui.cli", "rotate", "--resume", "--yes",
                          "--deliver", "keyring"], env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    after = read_journal(journal)
    assert after.ended and {t.state for t in after.targets.values()} == {"delivered"}
    assert all(sim.inspect.reset_count(*k) == 1 for k in after.targets)
    stored = json.loads(store.read_text())["entries"]
    for k in after.targets:
        assert any(sim.inspect.password(*k) in v for v in stored.values()), k


# ------------------------------------------------------------------ JSON Lines and SIGKILL


@pytest.mark.slow
@pytest.mark.sim(op_seconds=0.3, latency_ms=30)
def test_json_lines_under_sigkill_lose_at_most_one_password_per_kill(served):
    """A project that does not store passwords: what was printed is all anyone will ever have."""
    sim = served.sim
    pid = sim.inspect.project_by_name("acme-legacy-billing").id
    assert not sim.inspect.projects[pid].store_passwords
    targets = [k for k in sim.inspect.login_roles() if k[0] == pid]
    printed: dict[tuple, str] = {}
    kills = 0
    for round_ in range(4):
        args = (["rotate", "acme-legacy-billing/*", "--org", sim.inspect.org_of(pid), "--apply", "--yes", "--json",
                 "--deliver", "stdout"] if round_ == 0 else
                ["rotate", "--resume", "--retry-failed", "--yes", "--json", "--deliver", "stdout"])
        before = {k: sim.inspect.reset_count(*k) for k in targets}
        proc = served.start(*args)
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            obj = json.loads(line)
            lines.append(obj)
            if obj["type"] == "target" and obj.get("password") and round_ < 3:
                os.kill(proc.pid, signal.SIGKILL)  # right after one password was printed
                kills += 1
                break
        proc.wait(timeout=30)
        for obj in lines:
            if obj["type"] == "target" and obj.get("password"):
                printed[(obj["project_id"], obj["branch_id"], obj["role"])] = obj["password"]
        # Lost in this round: a reset that landed whose password never reached stdout.
        lost = [k for k in targets if sim.inspect.reset_count(*k) > before[k] and printed.get(k) != sim.inspect.password(*k)]
        assert len(lost) <= 1, lost
        if round_ == 3:
            assert proc.returncode in (0, 1)
    assert kills == 3
    for k in targets:
        assert sim.inspect.reset_count(*k) >= 1
    # every password that is live now was printed, but for at most the one lost by the last kill
    assert sum(printed.get(k) == sim.inspect.password(*k) for k in targets) >= len(targets) - 1


# ------------------------------------------------------------------ journals


def _journal(served, name: str, header: dict, *extra: dict) -> Path:
    d = served.state / "neon-tui" / "runs"
    d.mkdir(parents=True, exist_ok=True)
    path = d / name
    lines = [dict({"t": "2026-11-30T00:00:00Z", "event": "run"}, **header), *extra]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def test_a_journal_of_another_account_is_refused(served):
    sim = served.sim
    pid = sim.inspect.project_by_name("acme-prod").id
    bid = sim.inspect.branch_by_name(pid, "staging").id
    path = _journal(served, "run-20261130T000000Z-other.jsonl",
                    {"host": served.url, "account": "org-somebody-else", "targets": [
                        {"target": [pid, bid, "app"], "label": "acme-prod/staging/app", "role_updated_at": None}]})
    out = served.run("rotate", "--resume", path.stem, "--yes", "--deliver", "stdout")
    assert out.returncode == 2 and "org-somebody-else" in out.stderr and "account" in out.stderr
    assert not mutations(sim)
    out = served.run("rotate", "--resume", "--yes", "--deliver", "stdout")  # the latest: not offered either
    assert out.returncode == 2 and "no interrupted run" in out.stderr and "another" in out.stderr


@pytest.mark.slow
def test_a_damaged_journal_is_named_and_does_not_hide_another_run(served):
    sim = served.sim
    out = served.run("rotate", "acme-prod/staging/app", "--apply", "--yes", "--deliver", "none")
    assert out.returncode == 0, out.stderr
    # an interrupted run of this account (killed before anything was sent) ...
    pid = sim.inspect.project_by_name("acme-prod").id
    bid = sim.inspect.branch_by_name(pid, "staging").id
    auth_account = read_journal(served.journals()[0]).account
    good = _journal(served, "run-20261130T000001Z-good.jsonl",
                    {"host": served.url, "account": auth_account, "sinks": ["stdout"], "targets": [
                        {"target": [pid, bid, "readonly"], "label": "acme-prod/staging/readonly",
                         "role_updated_at": None}]})
    # ... and a newer journal with a damaged line in the middle, and a foreign file
    bad = _journal(served, "run-20261130T000002Z-bad.jsonl", {"host": "https://elsewhere.invalid/api/v2"},
                   {"event": "state", "target": ["x", "y", "z"], "state": "planned"})
    text = bad.read_text().splitlines()
    bad.write_text(text[0] + "\n{garbage\n" + text[1] + "\n")
    foreign = served.state / "neon-tui" / "runs" / "run-20261130T000003Z-notes.jsonl"
    foreign.write_text('{"hello": "world"}\n')
    os.utime(good, (time.time() - 60, time.time() - 60))
    out = served.run("rotate", "--resume", "--yes", "--deliver", "stdout")
    assert out.returncode == 0, out.stderr
    assert f"{bad}:2" in out.stderr and str(foreign) in out.stderr
    assert read_journal(good).ended
    assert sim.inspect.password(pid, bid, "readonly") in out.stdout


def test_an_unwritable_state_dir_is_one_line_before_any_reset(served, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    env = dict(served.env, XDG_STATE_HOME=str(blocker / "state"))
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "neon_tui.cli", "rotate", "acme-prod/staging/app", "--apply", "--yes",
                          "--deliver", "stdout"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "cannot write the run journal" in out.stderr and "Traceback" not in out.stderr
    assert len([line for line in out.stderr.splitlines() if "neon-tui rotate:" in line]) == 1
    assert not mutations(served.sim)
