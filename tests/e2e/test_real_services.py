"""Real services: a Secret Service (gnome-keyring under dbus-run-session) and an X clipboard (xclip under Xvfb)."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
APT = "apt-get install -y gnome-keyring dbus dbus-x11 xvfb xclip xauth (.ci/run does this)"


def require(*tools: str) -> None:
    """Skip on a laptop without the tools; on CI a missing tool is a broken set-up, so fail."""
    missing = [t for t in tools if shutil.which(t) is None]
    if not missing:
        return
    reason = f"needs {', '.join(missing)} on PATH: {APT}"
    if CI:
        pytest.fail(f"CI=true but this real-service test cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


def kill_group(proc: subprocess.Popen) -> None:
    """End a child started with start_new_session=True and whatever it left behind in its process group.

    gnome-keyring-daemon and pyperclip's xclip daemonise by forking but keep the group, so the group id
    (our child's own PID) reaches them without guessing their PIDs.
    """
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    for f in (proc.stdin, proc.stdout, proc.stderr):
        if f:
            f.close()


def base_env(home: Path) -> dict[str, str]:
    # A fresh environment, so nothing can reach the developer's real session bus, keyring or display.
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "share"),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_STATE_HOME": str(home / "state"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
    }


# --- keyring ------------------------------------------------------------------------------------------------

KEYRING_TOOLS = ("dbus-run-session", "gnome-keyring-daemon")


def in_session(home: Path, child: str, *, unlock: bool = True, timeout: float = 20) -> dict:
    """Run `child` (Python printing one JSON line) on a private session bus with a fresh gnome-keyring."""
    require(*KEYRING_TOOLS)
    home.mkdir(parents=True, exist_ok=True)
    run = home / "run"
    run.mkdir(mode=0o700, exist_ok=True)
    env = base_env(home) | {"XDG_RUNTIME_DIR": str(run), "NEON_PY": sys.executable,
                            "NEON_CHILD": textwrap.dedent(child)}
    # --unlock reads the login password from stdin and creates/unlocks the login keyring; without it the
    # daemon is D-Bus-activated on first use with a locked (or missing) keyring and no display to prompt on.
    start = "echo -n pw | gnome-keyring-daemon --unlock --components=secrets >/dev/null; " if unlock else ""
    proc = subprocess.Popen(["dbus-run-session", "--", "sh", "-c", start + 'exec "$NEON_PY" -c "$NEON_CHILD"'],
                            env=env, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        kill_group(proc)
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{err[-3000:]}"
    lines = out.strip().splitlines()
    assert lines, f"child printed nothing:\n{err[-3000:]}"
    return json.loads(lines[-1])


ROUND_TRIP = """
    import json, keyring, secretstorage
    from neon_tui import secrets
    from neon_tui.neon.secret import Secret

    kr = keyring.get_keyring()
    out = {"backend": f"{type(kr).__module__}.{type(kr).__name__}", "names": [type(kr).__name__, kr.name]}
    out["check_usable"] = secrets.check_usable()
    entry = secrets.connection_entry("proj-odd-1", "br-main-2", "ops team@eu/ü 1", "app db/ü", False)
    value = Secret("postgresql://ops%20team%40eu%2F%C3%BC%201:pw-Ünï€-1@ep-x-1.eu.neon.tech/app%20db?sslmode=prefer")
    secrets.store(*entry, value)
    out["entry"] = list(entry)
    out["loaded_equal"] = secrets.load(*entry) == value
    # What other Secret Service clients (secret-tool, Seahorse) find: one item under these attributes.
    conn = secretstorage.dbus_init()
    found = secretstorage.get_default_collection(conn).search_items({"service": entry[0], "username": entry[1]})
    items = list(found)
    out["items"] = len(items)
    out["item_equal"] = bool(items) and items[0].get_secret().decode() == value.reveal()
    secrets.delete(*entry)
    out["after_delete"] = secrets.load(*entry) is None
    secrets.delete(*entry)  # deleting what is gone is not an error
    out["probe_left"] = keyring.get_password("neon-tui", "probe-neon-tui") is not None
    print(json.dumps(out))
"""

SINK = """
    import asyncio, json
    from neon_tui import secrets
    from neon_tui.neon.secret import Secret
    from neon_tui.rotation.sinks import KeyringSink, password_entry
    from neon_tui.rotation.events import Connection, RotationResult
    from neon_tui.rotation.plan import Target

    t = Target(project_id="proj-odd-1", project_name="odd", branch_id="br-dev-3", branch_name="dev/ü",
               role_name="ops team@eu", role_updated_at=None, store_passwords=True, protected_branch=False)
    host = "ep-x-1.eu.neon.tech"
    conns = (
        Connection("app db", Secret(f"postgresql://u:pw-1@{host}/app%20db"),
                   Secret(f"postgresql://u:pw-1@ep-x-1-pooler.eu.neon.tech/app%20db"), host),
        Connection("analytics", Secret(f"postgresql://u:pw-1@{host}/analytics"), None, host),
    )
    result = RotationResult(target=t, password=Secret("pw-1"), connections=conns)
    sink = KeyringSink()
    asyncio.run(sink.preflight())
    asyncio.run(sink.deliver(result))
    # a branch without compute: the password itself, under <role>#password
    bare = RotationResult(target=t, password=Secret("pw-2"), connections=())
    asyncio.run(sink.deliver(bare))
    entry = password_entry(t.project_id, t.branch_id, t.role_name)
    got = secrets.load(*entry)
    out = {"backend": sink.backend, "entries": {}, "bare": got is not None and got.reveal() == "pw-2"}
    secrets.delete(*entry)
    for c in conns:
        for pooled, value in ((False, c.direct), (True, c.pooled)):
            entry = secrets.connection_entry(t.project_id, t.branch_id, t.role_name, c.database, pooled)
            got = secrets.load(*entry)
            out["entries"]["|".join(entry)] = None if got is None else got == value
            secrets.delete(*entry)
    print(json.dumps(out))
"""

REFUSED = """
    import json, keyring
    from neon_tui import secrets

    out = {"backend": type(keyring.get_keyring()).__module__}
    try:
        keyring.set_password("neon-tui-test", "raw", "x")
        out["raw"] = None
    except Exception as e:
        out["raw"] = f"{type(e).__name__}: {e}"
    try:
        out["check_usable"] = secrets.check_usable()
    except secrets.KeyringUnavailable as e:
        out["error"] = str(e)
        out["title"] = e.title
    print(json.dumps(out))
"""


@pytest.mark.slow
@pytest.mark.keyring
def test_secret_service_round_trip_with_odd_names(tmp_path):
    out = in_session(tmp_path / "home", ROUND_TRIP)
    assert out["backend"] == "keyring.backends.SecretService.Keyring"
    # check_usable names the backend it proved (SecretService's class is called plain "Keyring").
    assert out["check_usable"] in out["names"]
    assert out["entry"] == ["neon-tui/proj-odd-1/br-main-2", "ops%20team%40eu%2F%C3%BC%201@app%20db%2F%C3%BC"]
    assert out["loaded_equal"] is True
    assert out["items"] == 1 and out["item_equal"] is True
    assert out["after_delete"] is True
    assert out["probe_left"] is False


@pytest.mark.slow
@pytest.mark.keyring
def test_keyring_sink_stores_direct_and_pooled_entries(tmp_path):
    out = in_session(tmp_path / "home", SINK)
    assert out["backend"]
    assert out["entries"] == {
        "neon-tui/proj-odd-1/br-dev-3|ops%20team%40eu@app%20db": True,
        "neon-tui/proj-odd-1/br-dev-3|ops%20team%40eu@app%20db#pooled": True,
        "neon-tui/proj-odd-1/br-dev-3|ops%20team%40eu@analytics": True,
        # No pooler for this database: nothing is stored under the pooled name.
        "neon-tui/proj-odd-1/br-dev-3|ops%20team%40eu@analytics#pooled": None,
    }
    assert out["bare"] is True  # no endpoint yet: the password itself reached the Secret Service


@pytest.mark.slow
@pytest.mark.keyring
def test_no_login_keyring_and_no_prompt_is_reported_as_maybe_locked(tmp_path):
    out = in_session(tmp_path / "home", REFUSED, unlock=False)
    assert out["backend"] == "keyring.backends.SecretService"
    assert out["raw"].startswith("InitError:") and "Prompt dismissed" in out["raw"]
    assert "check_usable" not in out
    assert "locked" in out["error"]
    assert out["title"] == "Keyring unavailable"


@pytest.mark.slow
@pytest.mark.keyring
def test_an_existing_keyring_left_locked_is_reported_as_locked(tmp_path):
    home = tmp_path / "home"
    # First login unlocks (and so creates) the login keyring; the second session never unlocks it.
    assert in_session(home, "import json; from neon_tui import secrets; print(json.dumps(secrets.check_usable()))")
    out = in_session(home, REFUSED, unlock=False)
    assert out["raw"].startswith("KeyringLocked:")
    assert "check_usable" not in out
    assert "locked" in out["error"] and "unlock" in out["error"]


@pytest.mark.slow
@pytest.mark.keyring
def test_no_keyring_backend_at_all_is_refused(tmp_path):
    env = base_env(tmp_path / "home") | {"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(REFUSED)], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=20)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["backend"] == "keyring.backends.fail"
    assert out["raw"].startswith("NoKeyringError:")
    assert "no keyring backend is available" in out["error"]
    assert "plain text" in out["error"]


# --- clipboard ----------------------------------------------------------------------------------------------

CLIP_VALUE = "postgresql://u:pässword@h/db"

# Reads commands from stdin so one Clipboard (and the value it remembers) lives across the test's steps;
# a subprocess also keeps pyperclip's once-per-process tool choice away from the test process.
CLIP_CHILD = """
    import json, os, sys
    from neon_tui.clipboard import Clipboard, ClipboardUnavailable
    from neon_tui.neon.secret import Secret

    sent = []
    cb = Clipboard(os.environ["NEON_CLIP_MODE"], osc52=sent.append, clear_after=45)
    for line in sys.stdin:
        cmd = line.strip()
        try:
            if cmd == "copy":
                out = cb.copy(Secret(os.environ["NEON_CLIP_VALUE"]))
            elif cmd == "clear":
                out = cb.clear_if_ours()
            elif cmd == "remaining":
                out = cb.remaining()
            elif cmd == "osc52":
                out = len(sent)
            else:
                out = "unknown " + cmd
        except ClipboardUnavailable as e:
            out = {"error": str(e)}
        print(json.dumps(out), flush=True)
"""


class ClipChild:
    def __init__(self, env: dict[str, str], mode: str = "native") -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(CLIP_CHILD)],
                                     env=env | {"NEON_CLIP_MODE": mode, "NEON_CLIP_VALUE": CLIP_VALUE}, cwd=REPO,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, encoding="utf-8", start_new_session=True)

    def ask(self, cmd: str, timeout: float = 10):
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        assert ready, f"clipboard child did not answer {cmd!r}"
        line = self.proc.stdout.readline()
        assert line, f"clipboard child died: {self.proc.stderr.read()[-3000:]}"
        return json.loads(line)

    def stop(self) -> None:
        kill_group(self.proc)


def x_clipboard(env: dict[str, str]) -> str:
    # xclip -o exits 1 with "target ... not available" when no one owns the selection; that reads as empty.
    p = subprocess.run(["xclip", "-selection", "clipboard", "-o"], env=env, capture_output=True, timeout=5)
    return p.stdout.decode("utf-8")


def wait_for_clipboard(env: dict[str, str], expected: str, timeout: float = 5) -> str:
    deadline = time.monotonic() + timeout
    while (got := x_clipboard(env)) != expected and time.monotonic() < deadline:
        time.sleep(0.02)
    return got


@pytest.fixture
def xenv(tmp_path):
    """A private Xvfb on a display number it picks itself (-displayfd), local socket only."""
    require("Xvfb", "xclip")
    read_fd, write_fd = os.pipe()
    log = open(tmp_path / "xvfb.log", "wb")
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-nolisten", "tcp", "-screen", "0", "320x200x24"],
                            pass_fds=(write_fd,), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                            start_new_session=True)
    os.close(write_fd)
    try:
        # Xvfb writes the number it bound once it accepts connections; picking one ourselves races other runs.
        buf = b""
        deadline = time.monotonic() + 10
        while not buf.endswith(b"\n"):
            ready, _, _ = select.select([read_fd], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(read_fd, 16) if ready else b""
            if not chunk:
                pytest.fail(f"Xvfb did not start: {(tmp_path / 'xvfb.log').read_text(errors='replace')[-2000:]}")
            buf += chunk
        number = int(buf)
        sock = Path(f"/tmp/.X11-unix/X{number}")
        while not sock.exists():
            assert time.monotonic() < deadline, f"no X socket at {sock}"
            time.sleep(0.01)
        yield base_env(tmp_path / "home") | {"DISPLAY": f":{number}"}
    finally:
        os.close(read_fd)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        log.close()


@pytest.mark.slow
@pytest.mark.clipboard
def test_native_copy_lands_in_the_x_clipboard_and_is_cleared(xenv):
    child = ClipChild(xenv)
    try:
        assert child.ask("copy") == "native"
        assert x_clipboard(xenv) == CLIP_VALUE
        assert child.ask("remaining") == pytest.approx(45, abs=5)
        assert child.ask("clear") is True
        assert wait_for_clipboard(xenv, "") == ""
        assert child.ask("remaining") is None
        assert child.ask("clear") is False  # nothing pending any more
    finally:
        child.stop()


@pytest.mark.slow
@pytest.mark.clipboard
def test_clear_leaves_what_the_user_copied_since(xenv):
    child = ClipChild(xenv)
    user = None
    try:
        assert child.ask("copy") == "native"
        assert x_clipboard(xenv) == CLIP_VALUE
        # The user copies something else; -quiet keeps xclip in the foreground so we own its PID.
        user = subprocess.Popen(["xclip", "-selection", "clipboard", "-quiet"], env=xenv, stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        user.stdin.write("the user's own text ✓".encode())
        user.stdin.close()
        assert wait_for_clipboard(xenv, "the user's own text ✓") == "the user's own text ✓"
        assert child.ask("clear") is False
        assert x_clipboard(xenv) == "the user's own text ✓"
    finally:
        child.stop()
        if user is not None:
            if user.poll() is None:
                os.kill(user.pid, signal.SIGKILL)
            user.wait(timeout=5)


@pytest.mark.slow
@pytest.mark.clipboard
def test_a_display_that_is_gone_is_noticed_not_silently_ignored(tmp_path):
    # xclip exits quietly when it cannot connect, so only the read-back tells the copy did not land.
    require("xclip")
    number = next(n for n in range(4000, 5000) if not Path(f"/tmp/.X11-unix/X{n}").exists())
    env = base_env(tmp_path / "home") | {"DISPLAY": f":{number}"}
    for mode, expected in (("native", None), ("auto", "native→osc52")):
        child = ClipChild(env, mode)
        try:
            got = child.ask("copy")
            if expected is None:
                assert "could not reach the display" in got["error"] or "did not land" in got["error"]
                assert "pässword" not in got["error"]
                assert child.ask("osc52") == 0
            else:
                assert got == expected
                assert child.ask("osc52") == 1
        finally:
            child.stop()
