"""PostgresBackend: real PostgreSQL clusters behind a Neon-like router for a Simulator.

The model stays the single source of truth. One cluster per branch, created lazily (on the first
connection, or when a branch is created from a parent whose cluster exists, as a snapshot of it) and
synced from the model whenever it differs: roles with their SCRAM verifiers, LOGIN/NOLOGIN, databases and
owners. A reconciler thread follows the simulator's clock: a reset password reaches the server when its
apply_config ends (a failed one changes nothing), and suspend_compute's end terminates every session.

    sim = Simulator(SimConfig(op_seconds=0.3))
    with PostgresBackend(sim, max_running=8) as pg:      # or pg.start() ... pg.close()
        host, port = pg.route                              # PGHOSTADDR / PGPORT for delivered URIs
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import os
import threading
import time
from typing import TYPE_CHECKING

from .clusters import Cluster, ClusterManager, PostgresUnavailable, find_bindir, scram_verifier
from .router import COMPUTE_FAILED, UNKNOWN_ENDPOINT, RouteError, Router, ip_not_allowed

if TYPE_CHECKING:
    from .core import Simulator
    from .model import Branch, Project

__all__ = ["PostgresBackend", "PostgresUnavailable", "postgres_available"]


NEON_SUPERUSER_SQL = """
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'neon_superuser') THEN
    CREATE ROLE neon_superuser CREATEDB CREATEROLE NOLOGIN REPLICATION BYPASSRLS IN ROLE pg_read_all_data, pg_write_all_data;
  END IF;
END $$;
"""
API_ROLE_OPTIONS = "INHERIT CREATEROLE CREATEDB BYPASSRLS REPLICATION IN ROLE neon_superuser"


def postgres_available() -> bool:
    try:
        find_bindir()
    except PostgresUnavailable:
        return False
    return True


def start_or_explain(sim: "Simulator", max_running: int = 6) -> "tuple[PostgresBackend | None, str | None]":
    """Real PostgreSQL behind a demo simulator when this machine has it: (backend, None), or (None, why not).

    The caller closes the backend; if the process dies first, the clusters' watchdog stops them."""
    try:
        return PostgresBackend(sim, max_running=max_running).start(), None
    except PostgresUnavailable as exc:
        return None, str(exc)
    except (OSError, RuntimeError) as exc:
        return None, f"PostgreSQL did not start: {exc}"


def ip_allowed(project: "Project", branch: "Branch", ip: str) -> bool:
    """Neon's IP Allow: single addresses, CIDR ranges and ``a-b`` ranges; empty means everyone."""
    if not project.allowed_ips or (project.protected_branches_only and not branch.protected):
        return True
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    for entry in project.allowed_ips:
        entry = entry.strip()
        try:
            if "/" in entry:
                if addr in ipaddress.ip_network(entry, strict=False):
                    return True
            elif "-" in entry:
                lo, hi = (ipaddress.ip_address(p.strip()) for p in entry.split("-", 1))
                if lo <= addr <= hi:
                    return True
            elif addr == ipaddress.ip_address(entry):
                return True
        except (ValueError, TypeError):
            continue
    return False


class PostgresBackend:
    """Real clusters for a Simulator's branches; see the module docstring."""

    def __init__(self, sim: "Simulator", max_running: int = 8, *, poll_seconds: float = 0.05,
                 bindir: str | None = None) -> None:
        if max_running < 1:
            raise ValueError("max_running must be at least 1")
        self.sim = sim
        self.max_running = max_running
        self.poll_seconds = poll_seconds
        self._bindir = bindir
        self.manager: ClusterManager | None = None
        self.router: Router | None = None
        self._key = os.urandom(32)  # per-backend SCRAM salt key
        self._verifiers: dict[tuple[str, str], str] = {}
        self._lock = threading.RLock()  # cluster lifecycle and syncing
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._reconciler: threading.Thread | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._ep_index: dict[str, str] = {}  # endpoint id -> project id
        self._branch_counts: dict[str, int] = {}
        self._op_marks: dict[str, int] = {}
        self._suspends: list = []
        self._known_branches: set[str] = set()
        self.held: set[str] = set()  # branch ids whose running compute ignores configuration changes
        self.errors: list[str] = []  # reconciler failures (texts never contain passwords)
        self.suspended: list[str] = []  # endpoint ids whose sessions suspend_compute dropped

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> "PostgresBackend":
        try:
            from pathlib import Path

            self.manager = ClusterManager(Path(self._bindir) if self._bindir else None)
            self.manager.make_template()
            with self.sim.lock:
                now = self.sim.clock()
                for project in self.sim.account.projects.values():
                    self._known_branches.update(project.branches)
                    self._branch_counts[project.id] = len(project.branches)
                    self._op_marks[project.id] = len(project.operations)
                    # Suspends still ahead of us (a reset made just before start) still count.
                    self._suspends += [op for op in project.operations
                                       if op.action == "suspend_compute" and op.end_t > now]
            self._executor = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="neon-sim-pg")
            self._loop = asyncio.new_event_loop()
            self.router = Router(self._resolve, self._cancel_ports, str(self.manager.cert), str(self.manager.key),
                                 release=self._release)
            ready = threading.Event()
            failure: list[BaseException] = []

            def run() -> None:
                asyncio.set_event_loop(self._loop)
                try:
                    self._loop.run_until_complete(self.router.start())
                except BaseException as exc:  # noqa: BLE001 - reported to start()
                    failure.append(exc)
                    ready.set()
                    return
                ready.set()
                self._loop.run_forever()

            self._loop_thread = threading.Thread(target=run, name="neon-sim-pg-router", daemon=True)
            self._loop_thread.start()
            ready.wait(30)
            if failure or not self.router.port:
                raise RuntimeError(f"router failed to start: {failure[0] if failure else 'timeout'}")
            self._reconciler = threading.Thread(target=self._reconcile_loop, name="neon-sim-pg-reconcile",
                                                daemon=True)
            self._reconciler.start()
            self.sim.postgres = self
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop the reconciler, the router and every cluster (by pid), and remove the temp dir."""
        self._stop.set()
        if self._reconciler is not None:
            self._reconciler.join(timeout=30)
        if self._loop is not None and self._loop_thread is not None and self._loop_thread.is_alive():
            async def shutdown() -> None:
                if self.router is not None:
                    await self.router.stop()

            try:
                asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=10)
            except Exception:  # noqa: BLE001 - keep closing
                pass
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop_thread.join(timeout=10)
        if self._loop is not None and not self._loop.is_running():
            self._loop.close()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
        if self.manager is not None:
            with self._lock:
                self.manager.close()
        if getattr(self.sim, "postgres", None) is self:
            self.sim.postgres = None

    def __enter__(self) -> "PostgresBackend":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # --- public helpers ------------------------------------------------------------------------------
    @property
    def route(self) -> tuple[str, int]:
        """(PGHOSTADDR, PGPORT) of the router."""
        if self.router is None or not self.router.port:
            raise RuntimeError("PostgresBackend is not started")
        return ("127.0.0.1", self.router.port)

    @property
    def env(self) -> dict[str, str]:
        host, port = self.route
        return {"PGHOSTADDR": host, "PGPORT": str(port)}

    def running_endpoints(self) -> list[str]:
        """Branch ids of the clusters running now (least recently used first)."""
        with self._lock:
            return [c.name for c in sorted(self.manager.running(), key=lambda c: c.last_used)]

    def cluster(self, branch_id: str) -> Cluster | None:
        return self.manager.cluster(branch_id) if self.manager else None

    def pids(self) -> list[int]:
        return self.manager.pids() if self.manager else []

    def rss_bytes(self) -> int:
        """Total resident memory of all running clusters (postmasters and their children)."""
        return self.manager.rss_bytes() if self.manager else 0

    def pss_bytes(self) -> int:
        """Total proportional memory of all running clusters (shared buffers counted once)."""
        return self.manager.pss_bytes() if self.manager else 0

    def log_files(self) -> list:
        return self.manager.log_files() if self.manager else []

    def stats(self) -> dict:
        with self._lock:
            starts = [s for c in self.manager.clusters.values() for s in c.start_seconds]
            return {"initdb_seconds": self.manager.initdb_seconds, "clusters": len(self.manager.clusters),
                    "running": len(self.manager.running()), "starts": len(starts),
                    "start_seconds": starts, "rss_bytes": self.manager.rss_bytes(),
                    "pss_bytes": self.manager.pss_bytes()}

    def hold_config(self, branch_id: str, held: bool = True) -> None:
        """Fault for tests and drills: the branch's running compute keeps the roles and passwords it has,
        although the API reports its operations finished (the case verification exists to catch)."""
        with self._lock:
            (self.held.add if held else self.held.discard)(branch_id)

    def wake(self, endpoint_id: str) -> int:
        """Start (if needed) and sync the cluster behind an endpoint, as a first connection would."""
        with self.sim.lock:
            project, branch = self._lookup(endpoint_id)
        return self._ensure_running(project.id, branch.id)

    # --- routing --------------------------------------------------------------------------------------
    def _lookup(self, endpoint_id: str):
        """(project, branch) of an endpoint; caller holds sim.lock. Raises RouteError."""
        projects = self.sim.account.projects
        pid = self._ep_index.get(endpoint_id)
        if pid is None or pid not in projects or endpoint_id not in projects[pid].endpoints:
            self._ep_index = {eid: p.id for p in projects.values() for eid in p.endpoints}
            pid = self._ep_index.get(endpoint_id)
        if pid is None:
            raise RouteError("XX000", UNKNOWN_ENDPOINT)
        project = projects[pid]
        endpoint = project.endpoints[endpoint_id]
        branch = project.branches.get(endpoint.branch_id)
        if branch is None:
            raise RouteError("XX000", UNKNOWN_ENDPOINT)
        return project, branch

    async def _resolve(self, endpoint_id: str, client_ip: str) -> int:
        with self.sim.lock:
            project, branch = self._lookup(endpoint_id)
            if not ip_allowed(project, branch, client_ip):
                raise RouteError("28000", ip_not_allowed(client_ip))
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._ensure_running, project.id, branch.id)
        except RouteError:
            raise
        except Exception as exc:  # noqa: BLE001 - the client sees Neon's compute error
            self.errors.append(f"start {branch.id}: {type(exc).__name__}: {str(exc)[:300]}")
            raise RouteError("XX000", COMPUTE_FAILED) from None

    def _release(self, endpoint_id: str) -> None:
        """The router's connection to this endpoint's compute ended."""
        with self._lock:
            with self.sim.lock:
                try:
                    _, branch = self._lookup(endpoint_id)
                except RouteError:
                    return
            cl = self.manager.cluster(branch.id) if self.manager else None
            if cl is not None and cl.clients > 0:
                cl.clients -= 1
                cl.last_used = time.monotonic()

    def _cancel_ports(self) -> list[int]:
        with self._lock:
            return [c.port for c in self.manager.running()] if self.manager else []

    # --- clusters ------------------------------------------------------------------------------------
    def _ancestor_cluster(self, project: "Project", branch: "Branch") -> Cluster | None:
        parent_id = branch.parent_id
        while parent_id:
            cl = self.manager.cluster(parent_id)
            if cl is not None:
                return cl
            parent = project.branches.get(parent_id)
            parent_id = parent.parent_id if parent else None
        return None

    def _ensure_running(self, project_id: str, branch_id: str) -> int:
        with self._lock:
            if self._stop.is_set():
                raise RuntimeError("backend is closing")
            cl = self.manager.cluster(branch_id)
            if cl is None:
                with self.sim.lock:
                    project = self.sim.account.projects[project_id]
                    source = self._ancestor_cluster(project, project.branches[branch_id])
                cl = self.manager.create(branch_id, source)
            if not cl.running:
                self._make_room()
                # While the cluster really starts, Neon reports the compute as starting and cannot suspend it:
                # a reset then meets 423 "endpoint is in some transitive state, could not suspend".
                self._starting(project_id, branch_id, True)
                try:
                    self.manager.start(cl)
                finally:
                    self._starting(project_id, branch_id, False)
                self._set_state(project_id, branch_id, "active")
            self._sync(cl, project_id, branch_id)
            cl.last_used = time.monotonic()
            cl.clients += 1  # until the router's connection ends (_release)
            return cl.port

    # A cluster with a connection open through the router is never stopped to make room (a login must not
    # be cut, nor a reused port send it to another branch); nor one whose last connection ended this
    # recently. When every running cluster is busy, the cap gives way.
    EVICT_GRACE = 1.0

    def _make_room(self) -> None:
        running = self.manager.running()
        while len(running) >= self.max_running:
            now = time.monotonic()
            idle = [c for c in running if c.clients == 0 and now - c.last_used > self.EVICT_GRACE]
            if not idle:
                break  # every running compute is in use: run one over the cap rather than cut a login
            victim = min(idle, key=lambda c: c.last_used)
            self.manager.stop(victim)
            self._set_state(None, victim.name, "idle")
            running = self.manager.running()

    def _starting(self, project_id: str, branch_id: str, starting: bool) -> None:
        with self.sim.lock:
            project = self.sim.account.projects.get(project_id)
            for ep in project.branch_endpoints(branch_id) if project else ():
                if not starting:
                    ep.transition_until = float("-inf")
                elif ep.current_state != "active":  # the API already calls it active (seeded): not a wake-up
                    ep.transition_until = float("inf")

    def _set_state(self, project_id: str | None, branch_id: str, state: str) -> None:
        with self.sim.lock:
            projects = self.sim.account.projects
            candidates = [projects[project_id]] if project_id else projects.values()
            for project in candidates:
                if branch_id in project.branches:
                    for ep in project.branch_endpoints(branch_id):
                        ep.current_state = state
                    return

    def _verifier(self, role: str, password: str) -> str:
        key = (role, password)
        ver = self._verifiers.get(key)
        if ver is None:
            ver = self._verifiers[key] = scram_verifier(role, password, self._key)
        return ver

    def _desired(self, project_id: str, branch_id: str, now: float):
        """What the branch's compute should hold now; caller holds sim.lock. None: branch is gone."""
        project = self.sim.account.projects.get(project_id)
        branch = project.branches.get(branch_id) if project else None
        if branch is None:
            return None
        roles = []
        for role in branch.roles.values():
            password = role.password
            pending = role.pending
            if pending is not None and not pending.fails:
                applies = pending.config_t if pending.config_t is not None else pending.apply_t
                if now >= applies:
                    password = pending.password
            roles.append((role.name, role.no_login, None if role.no_login else password))
        dbs = tuple(sorted((d.name, d.owner_name) for d in branch.databases.values()))
        return tuple(sorted(roles)), dbs

    def _sync(self, cl: Cluster, project_id: str, branch_id: str, desired=None) -> None:
        """Bring a running cluster to the model's state; caller holds self._lock."""
        if desired is None:
            with self.sim.lock:
                desired = self._desired(project_id, branch_id, self.sim.clock())
        if desired is None or desired == cl.applied or not cl.running:
            return
        if branch_id in self.held and cl.applied is not None:
            return  # a compute that never applies its new configuration (see hold_config)
        from psycopg import sql

        roles, dbs = desired
        with self.manager.connect(cl) as conn:
            # Neon's compute_ctl makes neon_superuser and puts every role made through the API in it, with
            # CREATEROLE, CREATEDB, BYPASSRLS and REPLICATION of its own; roles made in SQL get none of that.
            conn.execute(NEON_SUPERUSER_SQL)
            existing = {name: (login, pw) for name, login, pw in conn.execute(
                "SELECT rolname, rolcanlogin, rolpassword FROM pg_authid WHERE oid >= 16384 "
                "AND rolname <> 'neon_superuser'")}
            wanted = set()
            for name, no_login, password in roles:
                wanted.add(name)
                verifier = self._verifier(name, password) if password else None
                if existing.get(name) == (not no_login, verifier):
                    continue
                login = "NOLOGIN" if no_login else "LOGIN"
                if name in existing:
                    stmt = sql.SQL("ALTER ROLE {} WITH " + login + " PASSWORD {}")
                else:
                    stmt = sql.SQL("CREATE ROLE {} WITH " + login + " PASSWORD {} " + API_ROLE_OPTIONS)
                conn.execute(stmt.format(sql.Identifier(name), sql.Literal(verifier)))
            # Drop roles the model no longer has; a role someone made in SQL (not in the model) stays, as on Neon.
            gone = set(existing) - wanted
            if cl.applied is not None:
                gone &= {r[0] for r in cl.applied[0]}
            for name in gone:
                ident = sql.Identifier(name)
                conn.execute(sql.SQL("REASSIGN OWNED BY {} TO postgres").format(ident))
                conn.execute(sql.SQL("DROP OWNED BY {}").format(ident))
                conn.execute(sql.SQL("DROP ROLE {}").format(ident))
            have = dict(conn.execute("SELECT datname, pg_get_userbyid(datdba) FROM pg_database").fetchall())
            for name, owner in dbs:
                if name not in have:
                    conn.execute(sql.SQL("CREATE DATABASE {} OWNER {} STRATEGY FILE_COPY").format(sql.Identifier(name),
                                                                               sql.Identifier(owner)))
                elif have[name] != owner:
                    conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(name),
                                                                                sql.Identifier(owner)))
        cl.applied = desired

    def _terminate_sessions(self, cl: Cluster) -> None:
        with self.manager.connect(cl) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")

    # --- reconciler ----------------------------------------------------------------------------------
    def _reconcile_loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.reconcile()
            except Exception as exc:  # noqa: BLE001 - keep following the clock
                self.errors.append(f"reconcile: {type(exc).__name__}: {str(exc)[:300]}")

    def reconcile(self) -> None:
        """One pass: snapshot new branches, sync running clusters, drop sessions of finished suspends."""
        with self._lock:  # lock order everywhere: self._lock, then sim.lock
            self._reconcile()

    def _reconcile(self) -> None:
        sim = self.sim
        with sim.lock:
            now = sim.clock()
            sim.account.settle(now)
            snapshots: list[tuple[str, Cluster]] = []
            for project in sim.account.projects.values():
                if len(project.branches) != self._branch_counts.get(project.id):
                    self._branch_counts[project.id] = len(project.branches)
                    for branch in project.branches.values():
                        if branch.id not in self._known_branches:
                            self._known_branches.add(branch.id)
                            source = self._ancestor_cluster(project, branch)
                            if source is not None:
                                snapshots.append((branch.id, source))
                mark = self._op_marks.get(project.id, 0)
                if len(project.operations) > mark:
                    self._suspends += [op for op in project.operations[mark:] if op.action == "suspend_compute"]
                    self._op_marks[project.id] = len(project.operations)
            due = [op for op in self._suspends if op.end_t <= now]
            self._suspends = [op for op in self._suspends if op.end_t > now]
            running = {c.name: c for c in self.manager.running()}
            wanted = {}
            for name, cl in running.items():
                pid = next((p.id for p in sim.account.projects.values() if name in p.branches), None)
                wanted[name] = (pid, self._desired(pid, name, now) if pid else None)
        with self._lock:
            for branch_id, source in snapshots:
                # A branch starts from its parent's data as it is now (Neon's branch point).
                if self.manager.cluster(branch_id) is None:
                    self.manager.create(branch_id, source)
            for name, (pid, desired) in wanted.items():
                cl = self.manager.cluster(name)
                if cl is not None and cl.running and desired is not None:
                    self._sync(cl, pid, name, desired)
            for op in due:
                if op.outcome != "finished" or op.branch_id is None:
                    continue
                cl = self.manager.cluster(op.branch_id)
                if cl is not None and cl.running:
                    self._terminate_sessions(cl)
                    self.suspended.append(op.endpoint_id)
                self._set_state(op.project_id, op.branch_id, "idle")
