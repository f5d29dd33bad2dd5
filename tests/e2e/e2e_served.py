"""`Served`: the real `neon-tui` command run against a simulator served on loopback (used by conftest and
by tests that build their own simulator, e.g. with real PostgreSQL behind it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from neon_tui.simulator import Simulator


class Served:
    def __init__(self, sim: Simulator, url: str, env: dict[str, str], state: Path) -> None:
        self.sim, self.url, self.env, self.state = sim, url, env, state
        self.procs: list[subprocess.Popen] = []

    def run(self, *args: str, input: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "neon_tui.cli", *args], env=self.env, input=input,
                              capture_output=True, text=True, timeout=timeout)

    def start(self, *args: str) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-m", "neon_tui.cli", *args], env=self.env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        return p

    def journals(self) -> list[Path]:
        d = self.state / "neon-tui" / "runs"
        return sorted(d.glob("run-*.jsonl")) if d.is_dir() else []

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
            p.wait(timeout=10)
            for f in (p.stdout, p.stderr):
                if f:
                    f.close()
