"""The real `neon-tui` in a real terminal (tmux) against the simulator on loopback: rotate one role on one
branch, copy its connection string through OSC 52 into tmux's buffer, check the password is the new one; then
the auto-clear deletes the paste buffer and says so."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from neon_tui.simulator import SimConfig, Simulator
from neon_tui.simulator.serve import serve_in_thread

pytestmark = [pytest.mark.slow, pytest.mark.tmux]
CLEAR_AFTER = 4  # seconds, through the settings file

if not shutil.which("tmux"):
    if os.environ.get("CI") == "true":
        raise RuntimeError("tmux is required in CI (.ci/run installs it)")
    pytest.skip("tmux is not installed", allow_module_level=True)


class Tmux:
    def __init__(self, socket: str) -> None:
        self.socket = socket

    def __call__(self, *args: str, check: bool = True) -> str:
        out = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=20)
        if check and out.returncode != 0:
            raise RuntimeError(f"tmux {' '.join(args)}: {out.stderr.strip()}")
        return out.stdout

    def screen(self) -> str:
        return self("capture-pane", "-t", "s1", "-p")

    def wait_for(self, pattern: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if re.search(pattern, screen):
                return screen
            time.sleep(0.05)
        raise AssertionError(f"{pattern!r} never appeared; screen:\n{screen}")

    def keys(self, *keys: str) -> None:
        self("send-keys", "-t", "s1", *keys)


def test_rotate_one_role_and_copy_it_over_osc52(tmp_path):
    sim = Simulator(SimConfig(op_seconds=0.5, rate_limit="neon"))
    pid = sim.inspect.project_by_name("acme-prod").id
    bid = sim.inspect.branch_by_name(pid, "staging").id
    old = sim.inspect.password(pid, bid, "app")
    tmux = Tmux(f"neon-tui-test-{os.getpid()}")
    with serve_in_thread(sim) as url:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NEON_", "TMUX"))}
        config = tmp_path / "config.toml"
        config.write_text(f"[clipboard]\nclear_after = {CLEAR_AFTER}\n")
        env.update(NEON_API_HOST=url, NEON_API_KEY=sim.api_key, XDG_STATE_HOME=str(tmp_path / "state"),
                   XDG_CONFIG_HOME=str(tmp_path / "config"), TERM="xterm-256color", HOME=str(tmp_path),
                   NEON_TUI_CONFIG=str(config))
        app = f"{Path(sys.executable).parent / 'neon-tui'}"
        subprocess.run(["tmux", "-L", tmux.socket, "-f", "/dev/null", "new-session", "-d", "-s", "s1", "-x", "120",
                        "-y", "40", app], env=env, check=True, timeout=20)
        socket_path = tmux("display-message", "-p", "-t", "s1", "#{socket_path}", check=False).strip()
        try:
            tmux("set", "-g", "set-clipboard", "on")
            tmux.wait_for(r"acme-prod")
            deadline = time.monotonic() + 30
            while "loading" in tmux.screen() and time.monotonic() < deadline:
                time.sleep(0.1)
            tmux.keys("/")
            tmux.keys("-l", "staging")
            tmux.keys("Enter")
            tmux.wait_for(r"filter: staging")
            # move down as a user would, watching the details pane, until it shows staging's app role
            seen = []
            for _ in range(12):
                screen = tmux.screen()
                seen.append("\n".join(screen.splitlines()[1:8]))
                if re.search(r"Role app\b", screen) and re.search(r"branch\s+staging\b", screen):
                    break
                tmux.keys("j")
                time.sleep(0.15)
            else:
                raise AssertionError("never reached staging/app:\n" + "\n=====\n".join(seen))
            tmux.keys("Space")
            tmux.wait_for(r"1 marked")
            tmux.keys("r")
            tmux.wait_for(r"1 to reset")
            tmux.keys("y")
            tmux.wait_for(r"finished · 1/1", timeout=60)
            screen = tmux.screen()
            new = sim.inspect.password(pid, bid, "app")
            assert new != old and new not in screen  # masked on screen
            tmux.keys("c")
            tmux.wait_for(r"Copied .* via osc52")
            copied_at = time.monotonic()
            buffer = tmux("show-buffer")
            assert buffer.startswith("postgresql://app:")
            password = buffer.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
            assert password == new
            assert sim.inspect.accepts(pid, bid, "app", password) and not sim.inspect.accepts(pid, bid, "app", old)
            assert sim.inspect.reset_count(pid, bid, "app") == 1
            # The auto-clear: tmux ignores an empty OSC 52, so the paste buffer must be deleted, and said so.
            screen = tmux.wait_for(r"Clipboard cleared; 1 tmux paste buffer deleted\.", timeout=CLEAR_AFTER + 10)
            assert time.monotonic() - copied_at >= CLEAR_AFTER - 1.5
            assert "may still hold" not in screen and "Clipboard cleared." not in screen
            names = tmux("list-buffers", "-F", "#{buffer_name}").split()
            assert all(password not in tmux("show-buffer", "-b", name) for name in names), names
            assert password not in tmux("show-buffer", check=False)
            tmux.keys("q")
        finally:
            tmux("kill-server", check=False)
            if socket_path:
                Path(socket_path).unlink(missing_ok=True)  # tmux 3.3 leaves its socket file behind
