"""Real local PostgreSQL clusters for the simulator: find binaries, make a template, copy, start, stop.

Everything runs on loopback. When the process is root, initdb/pg_ctl run as the ``postgres`` user through
``runuser`` (initdb refuses root); otherwise they run as the current user. psycopg is imported lazily.
"""

from __future__ import annotations

import base64
import glob
import hashlib
import hmac
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

INSTALL_HINT = ("--postgres needs PostgreSQL server binaries (initdb, pg_ctl); "
                "install them with: apt-get install postgresql")
SCRAM_ITERATIONS = 4096
SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "shared_buffers": "'8MB'",
    "max_connections": "20",
    "autovacuum": "off",
    "fsync": "off",
    "full_page_writes": "off",
    "synchronous_commit": "off",
    "ssl": "on",
    "log_line_prefix": "'%m [%p] '",
    "log_statement": "'none'",
}


class PostgresUnavailable(RuntimeError):
    """PostgreSQL server binaries are not installed (or cannot be run here)."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(INSTALL_HINT + (f" ({detail})" if detail else ""))


def find_bindir() -> Path:
    """The directory holding initdb and pg_ctl: pg_config --bindir, /usr/lib/postgresql/*/bin, PATH."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
            if out.returncode == 0 and out.stdout.strip():
                candidates.append(Path(out.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass

    def version(path: str) -> float:
        try:
            return float(Path(path).parent.name)
        except ValueError:
            return 0.0

    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)]
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).parent)
    for cand in candidates:
        if all(os.access(cand / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "postgres")):
            return cand
    raise PostgresUnavailable("initdb/pg_ctl not found")


def scram_verifier(role: str, password: str, key: bytes) -> str:
    """A SCRAM-SHA-256 verifier with a salt derived from (key, role, password): the same password for the
    same role gives the same verifier on every cluster, and the plaintext never reaches a server.
    (Passwords are used as given; the simulator's passwords are ASCII, where SASLprep is the identity.)"""
    salt = hmac.new(key, role.encode() + b"\0" + password.encode(), hashlib.sha256).digest()[:16]
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, SCRAM_ITERATIONS)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"SCRAM-SHA-256${SCRAM_ITERATIONS}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie counts as gone
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _runs_under(pid: int, root: Path) -> bool:
    """Is pid a process whose command line names a path under root (our postmaster, not a reused pid)?"""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return str(root).encode() in fh.read()
    except OSError:
        return False


def _proc_kb(pid: int, path: str, field: str) -> int | None:
    """A `Field:  N kB` line of /proc/<pid>/<path>, or None."""
    try:
        with open(f"/proc/{pid}/{path}") as fh:
            for line in fh:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _rss_kb(pid: int) -> int:
    return _proc_kb(pid, "status", "VmRSS:") or 0


def _pss_kb(pid: int) -> int:
    """Proportional set size: shared memory (shared_buffers) split among the processes mapping it."""
    pss = _proc_kb(pid, "smaps_rollup", "Pss:")
    return _rss_kb(pid) if pss is None else pss


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(p) for p in fh.read().split()]
    except OSError:
        return []


def make_certificate(cert_path: Path, key_path: Path, name: str = "neon-sim.invalid") -> None:
    """A self-signed certificate for the clusters and the router (clients use sslmode=require)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name), x509.DNSName("*.neon.tech")]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    os.chmod(key_path, 0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


@dataclass
class Cluster:
    """One data directory (one simulated branch compute) and, while running, its postmaster."""

    name: str
    data: Path
    log: Path
    port: int = 0
    pid: int | None = None
    last_used: float = 0.0
    clients: int = 0  # connections the router has open to it: never stopped to make room while > 0
    applied: object = None  # fingerprint of the model state last synced into it
    starts: int = 0
    start_seconds: list[float] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.pid is not None


# Runs in its own session, blocked on a pipe from us. When the pipe closes (close() ran, or the process that
# owns the clusters died, even by SIGKILL) it stops every postmaster under ROOT by the pid in its
# postmaster.pid and removes ROOT, so a crashed demo or test leaves no server behind.
_WATCHDOG = r"""
import os, shutil, signal, sys, time
from pathlib import Path
root = Path(sys.argv[1])
sys.stdin.buffer.read()
def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
def ours(pid):
    # postmaster.pid lives in a directory the postgres user can write: kill only a postmaster whose
    # command line names a data directory under ROOT.
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return str(root).encode() in fh.read()
    except OSError:
        return False
pids = []
for pidfile in root.glob("*/postmaster.pid"):
    try:
        pid = int(pidfile.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        continue
    if ours(pid):
        pids.append(pid)
for pid in pids:
    if alive(pid):
        os.kill(pid, signal.SIGQUIT)
deadline = time.monotonic() + 5
while any(alive(p) for p in pids) and time.monotonic() < deadline:
    time.sleep(0.05)
for pid in pids:
    if alive(pid):
        os.kill(pid, signal.SIGKILL)
shutil.rmtree(root, ignore_errors=True)
"""


def _start_watchdog(root: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(root)], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            close_fds=True)


class ClusterManager:
    """Owns one temp directory: a template data dir and per-branch copies, all under one OS user."""

    def __init__(self, bindir: Path | None = None) -> None:
        self.bindir = bindir or find_bindir()
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            try:
                self._pw = pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable("running as root but there is no 'postgres' user") from None
            if not shutil.which("runuser"):
                raise PostgresUnavailable("running as root but runuser is missing")
        self.root = Path(tempfile.mkdtemp(prefix="neon-sim-pg-", dir="/tmp"))
        self.sockdir = self.root  # unix sockets (superuser access, trust) live here
        self.template = self.root / "template"
        self.cert = self.root / "server.crt"
        self.key = self.root / "server.key"
        self.clusters: dict[str, Cluster] = {}
        self.initdb_seconds = 0.0
        self._watchdog = _start_watchdog(self.root)

    # --- processes ---------------------------------------------------------------------------------
    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = list(args)
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if out.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} failed ({out.returncode}): {(out.stderr or out.stdout)[-800:]}")
        return out

    def _chown(self, path: Path) -> None:
        if self.as_postgres:
            os.chown(path, self._pw.pw_uid, self._pw.pw_gid)

    # --- template ------------------------------------------------------------------------------------
    def make_template(self) -> None:
        started = time.monotonic()
        os.chmod(self.root, 0o700)
        make_certificate(self.cert, self.key)
        for path in (self.root, self.cert, self.key):
            self._chown(path)
        self._run(str(self.bindir / "initdb"), "-D", str(self.template), "-U", "postgres", "--auth-local=trust",
                  "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync", "--no-instructions",
                  "--wal-segsize=1")  # 1 MB WAL segments: a copy is ~25 MB, not ~40 MB
        settings = dict(SERVER_SETTINGS, unix_socket_directories=f"'{self.sockdir}'",
                        ssl_cert_file=f"'{self.cert}'", ssl_key_file=f"'{self.key}'")
        conf = "\n# neon-tui simulator\n" + "".join(f"{k} = {v}\n" for k, v in settings.items())
        with open(self.template / "postgresql.conf", "a") as fh:
            fh.write(conf)
        # Only scram over TCP (initdb wrote host lines for 127.0.0.1/::1 with scram-sha-256).
        self.initdb_seconds = time.monotonic() - started

    # --- clusters ------------------------------------------------------------------------------------
    def cluster(self, name: str) -> Cluster | None:
        return self.clusters.get(name)

    def _new(self, name: str) -> Cluster:
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
        cl = Cluster(name, self.root / f"data-{safe}", self.root / f"{safe}.log")
        self.clusters[name] = cl
        return cl

    def create(self, name: str, source: Cluster | None = None) -> Cluster:
        """A new stopped cluster copied from source (a stopped data dir, or a running one through
        pg_basebackup) or from the template."""
        cl = self._new(name)
        if source is not None and source.running:
            self._run(str(self.bindir / "pg_basebackup"), "-D", str(cl.data), "-h", str(self.sockdir),
                      "-p", str(source.port), "-U", "postgres", "-X", "stream", "--checkpoint=fast", "--no-sync")
        else:
            src = source.data if source is not None else self.template
            self._run("cp", "-a", str(src), str(cl.data))
            (cl.data / "postmaster.pid").unlink(missing_ok=True)
        return cl

    def start(self, cl: Cluster) -> None:
        if cl.running:
            return
        started = time.monotonic()
        cl.port = _free_port()
        self._run(str(self.bindir / "pg_ctl"), "-D", str(cl.data), "-l", str(cl.log), "-w", "-t", "30",
                  "-o", f"-p {cl.port}", "start")
        with open(cl.data / "postmaster.pid") as fh:
            cl.pid = int(fh.readline().strip())
        cl.starts += 1
        cl.start_seconds.append(time.monotonic() - started)

    def stop(self, cl: Cluster, mode: str = "fast") -> None:
        if not cl.running:
            return
        pid = cl.pid
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(cl.data), "-m", mode, "-w", "-t", "30", "stop")
        except (RuntimeError, subprocess.SubprocessError):
            pass
        if pid is not None and _pid_alive(pid):
            try:
                os.kill(pid, signal.SIGQUIT)  # immediate shutdown of our own postmaster
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + 5
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            if _pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        cl.pid = None
        cl.applied = None
        cl.clients = 0

    def connect(self, cl: Cluster, dbname: str = "postgres"):
        """Superuser connection over the unix socket (trust): never carries a password."""
        import psycopg

        return psycopg.connect(host=str(self.sockdir), port=cl.port, user="postgres", dbname=dbname,
                               autocommit=True, connect_timeout=10)

    def running(self) -> list[Cluster]:
        return [c for c in self.clusters.values() if c.running]

    def pids(self) -> list[int]:
        """Postmaster pids of running clusters and their children."""
        out: list[int] = []
        for cl in self.running():
            out.append(cl.pid)
            out.extend(_children(cl.pid))
        return out

    def rss_bytes(self) -> int:
        """Total resident memory of every running postmaster and its children."""
        return sum(_rss_kb(pid) for pid in self.pids()) * 1024

    def pss_bytes(self) -> int:
        """Total proportional memory (shared pages counted once) of every running cluster."""
        return sum(_pss_kb(pid) for pid in self.pids()) * 1024

    def log_files(self) -> list[Path]:
        return sorted(self.root.glob("*.log"))

    def close(self) -> None:
        """Stop every cluster this manager started (by its own pid) and remove the temp dir."""
        for cl in list(self.clusters.values()):
            try:
                self.stop(cl, mode="immediate")
            except Exception:  # keep stopping the others
                if cl.pid is not None and _pid_alive(cl.pid):
                    os.kill(cl.pid, signal.SIGKILL)
                cl.pid = None
        # Postmasters whose pid we never recorded (a failed start): read postmaster.pid.
        for pidfile in self.root.glob("data-*/postmaster.pid"):
            try:
                pid = int(pidfile.read_text().splitlines()[0])
            except (OSError, ValueError, IndexError):
                continue
            if _pid_alive(pid) and _runs_under(pid, self.root):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            watchdog.stdin.close()  # nothing left for it to do: it exits
            try:
                watchdog.wait(timeout=10)
            except subprocess.TimeoutExpired:
                watchdog.kill()
                watchdog.wait()
