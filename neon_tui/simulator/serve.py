"""Serve a Simulator over real HTTP on a loopback address with uvicorn."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import signal
import socket
import sys
import threading
import time
from typing import Iterator

import uvicorn

from .config import SimConfig
from . import serve_args
from .core import API_PREFIX, SimulatedDrop, Simulator


class _DropFilter(logging.Filter):
    """Injected connection drops are intentional; keep their tracebacks out of the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, SimulatedDrop)


class _Server(uvicorn.Server):
    """uvicorn re-raises the caught signal after shutdown; we want main() to return instead."""

    @contextlib.contextmanager
    def capture_signals(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        signals = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in signals}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, sig, frame) -> None:
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True


def loopback_host(host: str) -> str | None:
    """Return the address to bind if host is loopback, else None."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        return host if ipaddress.ip_address(host).is_loopback else None
    except ValueError:
        return None


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit TCP_NODELAY from the listening socket. Without it, Nagle's algorithm holds
    # the body of a keep-alive response (written after its headers) until the client's delayed ACK, ~40 ms:
    # every request then measures the simulator's socket, not the API's latency.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
        # Listening before uvicorn starts lets clients connect as soon as the URL is printed.
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}{API_PREFIX}"


def _server(sim: Simulator, log_level: str) -> _Server:
    config = uvicorn.Config(sim.app, log_level=log_level, http="h11", ws="none", lifespan="off",
                            access_log=False, timeout_graceful_shutdown=2)
    server = _Server(config)
    logging.getLogger("uvicorn.error").addFilter(_DropFilter())
    return server


@contextlib.contextmanager
def serve_in_thread(sim: Simulator, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run uvicorn for sim in a background thread; yields the base URL (…/api/v2)."""
    bind_host = loopback_host(host)
    if bind_host is None:
        raise ValueError(f"refusing to serve on non-loopback address {host!r}")
    sock = _bind(bind_host, port)
    server = _server(sim, "warning")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="neon-sim-uvicorn", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("simulator server failed to start")
            time.sleep(0.01)
        yield _url(bind_host, sock.getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


add_arguments = serve_args.add_arguments  # the options live apart so the CLI can build its parser cheaply


def _config(ns: argparse.Namespace) -> SimConfig:
    return SimConfig(seed=ns.seed, projects=ns.projects, branches=ns.branches, roles=ns.roles,
                     latency_ms=ns.latency_ms, op_seconds=ns.op_seconds, rate_limit=ns.rate_limit,
                     fault_rate=ns.fault_rate, api_key=ns.api_key)


def _summary(sim: Simulator, cfg: SimConfig, postgres=None) -> list[str]:
    acct = sim.account
    roles = sum(len(b.roles) for p in acct.projects.values() for b in p.branches.values())
    branches = sum(len(p.branches) for p in acct.projects.values())
    lines = [f"neon simulator: {len(acct.orgs)} organizations, {len(acct.projects)} projects, "
             f"{branches} branches, {roles} roles (seed {cfg.seed})"]
    for org in acct.orgs:
        count = sum(1 for p in acct.projects.values() if p.org_id == org.id)
        lines.append(f"  {org.id}  {org.name} ({org.managed_by}, {count} projects)")
    lines.append(f"  operations take {cfg.op_seconds:g}s, rate limit {cfg.rate_limit}, "
                 f"fault rate {cfg.fault_rate:g}, latency {cfg.latency_ms:g}ms")
    if postgres is not None:
        host, port = postgres.route
        lines.append(f"  --postgres: branches are real PostgreSQL clusters behind a router on {host}:{port} "
                     f"(at most {postgres.max_running} running); connect with PGHOSTADDR={host} PGPORT={port}")
    lines.append("  press Ctrl-C to stop")
    return lines


def main(ns: argparse.Namespace) -> int:
    bind_host = loopback_host(ns.host)
    if bind_host is None:
        print(f"error: --host {ns.host!r} is not a loopback address; the simulator only serves on "
              "127.0.0.1 (or another loopback address)", file=sys.stderr)
        return 2
    try:
        cfg = _config(ns)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    postgres = None
    if getattr(ns, "postgres", False):
        from .postgres import PostgresUnavailable, postgres_available

        if ns.postgres_max_running < 1:
            print("error: --postgres-max-running must be at least 1", file=sys.stderr)
            return 2
        if not postgres_available():
            print(f"error: {PostgresUnavailable()}", file=sys.stderr)
            return 2
    sim = Simulator(cfg)
    try:
        sock = _bind(bind_host, ns.port)
    except OSError as exc:
        print(f"error: cannot bind {bind_host}:{ns.port}: {exc}", file=sys.stderr)
        return 1
    try:
        line = f"NEON_API_HOST={_url(bind_host, sock.getsockname()[1])} NEON_API_KEY={sim.api_key}"
        if getattr(ns, "postgres", False):
            from .postgres import PostgresBackend, PostgresUnavailable

            try:
                postgres = PostgresBackend(sim, max_running=ns.postgres_max_running).start()
            except PostgresUnavailable as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            host, port = postgres.route
            line += f" PGHOSTADDR={host} PGPORT={port}"
        print(line, flush=True)
        print("\n".join(_summary(sim, cfg, postgres)), flush=True)
        _server(sim, "warning").run(sockets=[sock])
    finally:
        sock.close()
        if postgres is not None:
            postgres.close()
    return 0
