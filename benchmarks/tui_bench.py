"""TUI responsiveness: launch to first projects painted (real process in tmux, simulator on loopback), and
keystroke-to-repaint latency on a 5,000-role account (also the real process in tmux).

    python -m benchmarks.tui_bench [--out benchmarks/tui_results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from neon_tui.simulator import SimConfig, Simulator
from neon_tui.simulator.serve import serve_in_thread


def first_paint(runs: int = 5, projects: int = 300) -> dict:
    """Seconds from starting `neon-tui` in tmux until a project name is on screen."""
    if not shutil.which("tmux"):
        return {"skipped": "tmux not installed"}
    sim = Simulator(SimConfig(projects=projects, branches=3, roles=2, latency_ms=80, rate_limit="neon"))
    first_project = sorted(p.name for p in sim.inspect.projects.values()
                           if p.org_id == sim.inspect.primary_org_id)[0]
    times = []
    with serve_in_thread(sim) as url, tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NEON_", "TMUX"))}
        env.update(NEON_API_HOST=url, NEON_API_KEY=sim.api_key, XDG_STATE_HOME=tmp, XDG_CONFIG_HOME=tmp,
                   TERM="xterm-256color")
        app = str(Path(sys.executable).parent / "neon-tui")
        for i in range(runs):
            sock = f"neon-bench-{os.getpid()}-{i}"
            t0 = time.monotonic()
            subprocess.run(["tmux", "-L", sock, "-f", "/dev/null", "new-session", "-d", "-s", "b", "-x", "120",
                            "-y", "40", app], env=env, check=True)
            try:
                while time.monotonic() - t0 < 30:
                    screen = subprocess.run(["tmux", "-L", sock, "capture-pane", "-t", "b", "-p"],
                                            capture_output=True, text=True).stdout
                    if first_project in screen:
                        times.append(time.monotonic() - t0)
                        break
                    time.sleep(0.01)
            finally:
                subprocess.run(["tmux", "-L", sock, "kill-server"], capture_output=True)
    return {"projects": projects, "latency_ms": 80, "runs": runs, "median_s": round(statistics.median(times), 3),
            "max_s": round(max(times), 3)}


def keystrokes(rounds: int = 60) -> dict:
    """Keystroke to repaint in a real terminal: send a key to tmux, poll the pane until it changed.

    5,000 roles (50 projects x 10 branches x 10 roles), everything loaded first. Each sample includes
    one tmux capture round trip (reported as `capture_ms`), so the figures are upper bounds.
    """
    if not shutil.which("tmux"):
        return {"skipped": "tmux not installed"}
    sim = Simulator(SimConfig(projects=50, branches=10, roles=9, op_seconds=0.1, rate_limit="off"))
    roles = sum(len(sim.inspect.role_names(p, b)) for p in sim.inspect.project_ids() for b in sim.inspect.branch_ids(p))
    samples: dict[str, list[float]] = {"move (j/k)": [], "expand (enter)": [], "mark (space)": [],
                                       "filter (typing)": []}
    sock = f"neon-keys-{os.getpid()}"

    def tmux(*args: str) -> str:
        return subprocess.run(["tmux", "-L", sock, *args], capture_output=True, text=True).stdout

    def screen() -> str:
        return tmux("capture-pane", "-t", "k", "-p")

    def timed(kind: str, *keys: str) -> None:
        before = screen()
        t0 = time.perf_counter()
        tmux("send-keys", "-t", "k", *keys)
        while time.perf_counter() - t0 < 5:
            if screen() != before:
                samples[kind].append(time.perf_counter() - t0)
                return
        raise RuntimeError(f"{keys} changed nothing on screen")

    with serve_in_thread(sim) as url, tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NEON_", "TMUX"))}
        env.update(NEON_API_HOST=url, NEON_API_KEY=sim.api_key, XDG_STATE_HOME=tmp, XDG_CONFIG_HOME=tmp,
                   TERM="xterm-256color")
        app = str(Path(sys.executable).parent / "neon-tui")
        subprocess.run(["tmux", "-L", sock, "-f", "/dev/null", "new-session", "-d", "-s", "k", "-x", "120", "-y",
                        "40", app], env=env, check=True)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and ("projects" not in screen() or "loading" in screen()):
                time.sleep(0.2)
            t0 = time.perf_counter()
            for _ in range(20):
                screen()
            capture_ms = (time.perf_counter() - t0) / 20 * 1000
            timed("move (j/k)", "j")
            for _ in range(10):  # open and close the first project
                timed("expand (enter)", "Enter")
                timed("expand (enter)", "Enter")
            timed("expand (enter)", "Enter")  # then open it and its first branch: a long, deep tree
            timed("move (j/k)", "j")
            timed("expand (enter)", "Enter")
            for i in range(rounds):
                timed("move (j/k)", "j" if i % 3 else "k")
            for _ in range(20):
                timed("mark (space)", "Space")
            timed("filter (typing)", "/")
            for ch in "branch-9":
                timed("filter (typing)", ch)
            for _ in range(8):
                timed("filter (typing)", "BSpace")
            # the filtered tree itself: typed in one go, until the status line says it is applied
            applied = []
            for word in ("branch-9", "app", "service-4"):
                tmux("send-keys", "-t", "k", "C-u")
                time.sleep(0.3)
                t0 = time.perf_counter()
                tmux("send-keys", "-t", "k", "-l", word)
                while time.perf_counter() - t0 < 10 and f"filter: {word}" not in screen():
                    pass
                applied.append(time.perf_counter() - t0)
        finally:
            tmux("kill-server")
    out: dict = {"roles": roles, "capture_ms": round(capture_ms, 1),
                 "filter applied (incl. 120 ms debounce)": {"n": len(applied),
                                                            "max_ms": round(1000 * max(applied), 1)}}
    for kind, xs in samples.items():
        xs = sorted(xs)
        out[kind] = {"n": len(xs), "p50_ms": round(1000 * xs[len(xs) // 2], 1),
                     "p95_ms": round(1000 * xs[max(0, int(len(xs) * 0.95) - 1)], 1), "max_ms": round(1000 * xs[-1], 1)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/tui_results.json")
    args = ap.parse_args()
    result = {"first_paint": first_paint(), "keystrokes": keystrokes()}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
