"""`.env` files: find the stored copies of Neon connection strings, and patch their passwords in place.

Finding: `.env`, `.env.*` and `*.env` files under the given paths (directories are walked, skipping
.git, node_modules and .venv; symlinked directories are not followed). Each binding is located with
python-dotenv's own parser (`dotenv.parser.parse_stream`), and the exact character span of its value in
the original text is computed from `Binding.original`, so a patch replaces only the password's bytes:
comments, order, `export`, blank lines, each value's quoting style and CRLF line ends stay as they were.

A Neon connection string is a postgres:// or postgresql:// URI whose host's first label is an endpoint
id (`ep-…`, with `-pooler` for the pooled form). The password is written percent-encoded (as Neon's
console and `plan.connection_uri` do), so the new URI never holds a quote, a backslash, a `#`, a `$` or
whitespace: it needs no extra escaping inside any of the three quoting styles.

A value holding escape sequences (a backslash inside quotes), whose decoded text differs from the raw
text, is reported but never patched (its offsets would not map one to one).

No Textual here; nothing in this module prints or logs a value.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

from neon_tui.neon.secret import Secret
from neon_tui.rotation.sinks import Receipt, SinkError

SKIP_DIRS = frozenset({".git", "node_modules", ".venv"})
ENV_PATTERNS = (".env", ".env.*", "*.env")

_URI = re.compile(
    r"\A(?P<scheme>postgres(?:ql)?)://(?P<user>[^:@/?#]*)(?::(?P<pw>.*))?"
    r"@(?P<host>(?P<label>ep-[A-Za-z0-9-]+)(?:\.[A-Za-z0-9.-]+)?)(?::(?P<port>\d+))?"
    r"(?:/(?P<db>[^?#]*))?(?:\?(?P<query>[^#]*))?\Z",
    re.DOTALL,
)
_NEWLINE = re.compile(r"\r\n|\n|\r")
_SINGLE_KEY = re.compile(r"'([^']+)'")
_UNQUOTED_KEY = re.compile(r"([^=\#\s]+)")
_EQUAL = re.compile(r"(=[^\S\r\n]*)")
_SINGLE = re.compile(r"'((?:\\.|[^'\\])*)'", re.DOTALL)
_DOUBLE = re.compile(r'"((?:\\.|[^"\\])*)"', re.DOTALL)
_UNQUOTED = re.compile(r"([^\r\n]*)")


def is_env_name(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in ENV_PATTERNS)


def find_env_files(paths: Iterable[str | os.PathLike]) -> tuple[list[Path], list[str]]:
    """(.env files under the paths, problems). A file named directly is taken whatever its name."""
    found: list[Path] = []
    problems: list[str] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        if p not in seen:
            seen.add(p)
            found.append(p)

    for raw in paths:
        p = Path(os.path.abspath(os.path.expanduser(str(raw))))
        if os.path.isdir(p) and not os.path.islink(p):
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
                for f in sorted(files):
                    if is_env_name(f):
                        add(Path(root) / f)
        elif os.path.lexists(p) and not os.path.isdir(p):
            add(p)
        elif os.path.isdir(p):
            problems.append(f"{p}: a symlink to a directory; not followed")
        else:
            problems.append(f"{p}: no such file or directory")
    return found, problems


@dataclass(frozen=True, slots=True)
class NeonUri:
    """A Neon connection string's parts (the password only as a Secret, and where it sits in the value)."""

    endpoint_id: str
    pooled: bool
    user: str
    database: str
    query: str
    password: Secret | None
    pw_span: tuple[int, int] | None  # in the value

    @property
    def kind(self) -> str:
        return "pooled" if self.pooled else "direct"


def parse_neon_uri(value: str) -> NeonUri | None:
    """A Neon connection string's parts, or None for anything else."""
    m = _URI.match(value.strip())
    if m is None:
        return None
    lead = len(value) - len(value.lstrip())
    label = m.group("label").lower()
    pooled = label.endswith("-pooler")
    pw = m.group("pw")
    return NeonUri(
        endpoint_id=label.removesuffix("-pooler"), pooled=pooled, user=unquote(m.group("user")),
        database=unquote(m.group("db") or ""), query=m.group("query") or "",
        password=Secret(unquote(pw)) if pw is not None else None,
        pw_span=(lead + m.start("pw"), lead + m.end("pw")) if pw is not None else None,
    )


@dataclass(frozen=True, slots=True)
class EnvValue:
    """One binding of a .env file whose value is a Neon connection string."""

    path: Path
    line: int
    name: str
    uri: NeonUri
    span: tuple[int, int]  # the value's raw text in the file's text
    patchable: bool        # raw text == decoded value (no escape sequences)

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line} {self.name}"

    def password_span(self) -> tuple[int, int] | None:
        if self.uri.pw_span is None or not self.patchable:
            return None
        return self.span[0] + self.uri.pw_span[0], self.span[0] + self.uri.pw_span[1]


class EnvParseError(ValueError):
    """A file cannot be read as text (the message names the file, never a value)."""


def decode(data: bytes, path: Path) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise EnvParseError(f"{path}: not UTF-8 text") from None


def bindings(text: str) -> Iterator[tuple[str, int, tuple[int, int], str]]:
    """(key, line, (start, end) of the value's raw text, decoded value) for every binding with a value."""
    from dotenv.parser import parse_stream

    offset = 1 if text.startswith("\ufeff") else 0  # the parser drops a BOM
    for b in parse_stream(io.StringIO(text)):
        s = b.original.string
        start = offset
        offset += len(s)
        if b.key is None or b.value is None or b.error:
            continue
        located = _value_span(s)
        if located is None:
            continue
        (vs, ve), skipped = located
        yield b.key, b.original.line + len(_NEWLINE.findall(s, 0, skipped)), (start + vs, start + ve), b.value


def _value_span(s: str) -> tuple[tuple[int, int], int] | None:
    """The raw value's span inside one binding's original text, and where the key starts (the same
    grammar as python-dotenv's parser: whitespace, export, key, whitespace, '=', value)."""
    pos = re.compile(r"\s*", re.MULTILINE).match(s, 0).end()
    key_start = pos
    pos = re.compile(r"(?:export[^\S\r\n]+)?").match(s, pos).end()
    m = (_SINGLE_KEY if s[pos:pos + 1] == "'" else _UNQUOTED_KEY).match(s, pos)
    if m is None:
        return None
    pos = re.compile(r"[^\S\r\n]*").match(s, m.end()).end()
    m = _EQUAL.match(s, pos)
    if m is None:
        return None
    pos = m.end()
    ch = s[pos:pos + 1]
    if ch in ("'", '"'):
        m = (_SINGLE if ch == "'" else _DOUBLE).match(s, pos)
        if m is None:
            return None
        return (m.start(1), m.end(1)), key_start
    m = _UNQUOTED.match(s, pos)
    part = m.group(1)
    value = re.sub(r"\s+#.*", "", part).rstrip()
    return (pos, pos + len(value)), key_start


def neon_values(path: Path, text: str) -> list[EnvValue]:
    out = []
    for key, line, (a, b), value in bindings(text):
        uri = parse_neon_uri(value)
        if uri is None:
            continue
        raw = text[a:b]
        out.append(EnvValue(path, line, key, uri, (a, b), patchable=(raw == value)))
    return out


def scan_file(path: Path) -> list[EnvValue]:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise EnvParseError(f"{path}: cannot read ({e.strerror or type(e).__name__})") from None
    return neon_values(path, decode(data, path))


def fingerprint(data: bytes, st: os.stat_result) -> tuple[int, int, str]:
    return st.st_mtime_ns, st.st_size, hashlib.sha256(data).hexdigest()


def encode_password(password: Secret) -> str:
    """The password as it goes into a URI: percent-encoded like plan.connection_uri (no quote, backslash,
    '#', '$' or space can remain, so no quoting style needs escaping)."""
    return quote(password.reveal(), safe="")


def patch_text(text: str, values: Iterable[EnvValue], password: Secret) -> tuple[str, list[EnvValue]]:
    """The text with each value's password replaced (spans from the end, so earlier ones stay valid),
    and the values that changed. A value that already holds this password is left alone."""
    new = encode_password(password)
    changed = []
    for v in sorted(values, key=lambda v: v.span[0], reverse=True):
        span = v.password_span()
        if span is None or v.uri.password == password:
            continue
        text = text[:span[0]] + new + text[span[1]:]
        changed.append(v)
    return text, sorted(changed, key=lambda v: v.span[0])


def write_atomically(path: Path, data: bytes, st: os.stat_result) -> None:
    """Temp file in the same directory, fsync, os.replace, fsync the directory; the mode and owner kept.
    On any failure the original is intact and the temp file removed."""
    import tempfile

    directory = path.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".neon-tui.tmp", dir=directory)
    try:
        try:
            os.fchmod(fd, st.st_mode & 0o7777)
            if os.geteuid() == 0:
                os.fchown(fd, st.st_uid, st.st_gid)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


# --------------------------------------------------------------------------- the sink


@dataclass(slots=True)
class _Watched:
    path: Path       # as given / found
    real: Path       # the file written (the symlink's target when following)
    fingerprint: tuple[int, int, str]


class EnvFileSink:
    """--deliver env:PATH (a file or a directory of .env files): after each target rotates, the password
    of every copy of its connection strings in those files is replaced in place, nothing else.

    preflight(): the files exist, are regular files (symlinks only with follow_symlinks), are writable with
    their directory, are UTF-8 text, and together hold at least one copy of a planned target (else it
    refuses: a sink that would change nothing is a mistake). Files without a copy are left alone. It
    records each file's (mtime_ns, size, sha256); deliver() refuses a file changed since (by anyone but
    this sink). The old passwords found are kept in memory for verification (`old_passwords()`).

    deliver() is safe to repeat: a copy that already holds the new password is not written again.
    """

    automatic = True

    def __init__(self, path: str | os.PathLike, *, follow_symlinks: bool = False,
                 targets: Iterable = ()) -> None:
        self.path = Path(os.path.abspath(os.path.expanduser(str(path))))
        self.follow_symlinks = follow_symlinks
        self.name = f"env:{self.path}"
        self._endpoints: dict[str, tuple[str, str]] = {}
        self._targets: dict[tuple, object] = {}
        self._watched: dict[Path, _Watched] = {}
        self._old: dict[tuple, list[Secret]] = {}
        self._copies: dict[tuple, int] = {}
        self._delivered: set[tuple] = set()
        import threading

        self._lock = threading.Lock()
        self.bind(targets)

    # ------------------------------------------------------------------ context

    def bind(self, targets: Iterable) -> None:
        """The plan's targets (plan.Target): which endpoint ids belong to which (project, branch)."""
        for t in targets:
            self._targets[t.key] = t
            for e in t.endpoints:
                self._endpoints[e.id] = (t.project_id, t.branch_id)

    def key_of(self, v: EnvValue) -> tuple | None:
        pb = self._endpoints.get(v.uri.endpoint_id)
        if pb is None:
            return None
        key = (*pb, v.uri.user)
        return key if key in self._targets else None

    def old_passwords(self) -> dict[tuple, list[Secret]]:
        """The passwords the files held for each planned target at the first preflight (memory only)."""
        return {k: list(v) for k, v in self._old.items()}

    def uncovered(self) -> list:
        """Planned targets of which no file holds a copy."""
        return [t for k, t in self._targets.items() if not self._copies.get(k)]

    # ------------------------------------------------------------------ preflight

    async def preflight(self) -> str:
        import asyncio

        return await asyncio.to_thread(self._preflight)

    def _real(self, p: Path) -> Path:
        if os.path.islink(p):
            if not self.follow_symlinks:
                raise SinkError(f"{p} is a symlink; refusing to replace it (env-follow:PATH writes its target)")
            return Path(os.path.realpath(p))
        return p

    def _preflight(self) -> str:
        if not self._targets:
            raise SinkError(f"{self.name}: no planned target to look for")
        if not os.path.lexists(self.path):
            raise SinkError(f"{self.path}: no such file or directory")
        if os.path.islink(self.path) and not self.follow_symlinks:
            raise SinkError(f"{self.path} is a symlink; refusing to replace it (env-follow:PATH writes its target)")
        files, problems = find_env_files([os.path.realpath(self.path) if self.follow_symlinks else self.path])
        if problems:
            raise SinkError("; ".join(problems))
        if not files:
            raise SinkError(f"{self.path}: no .env files (.env, .env.*, *.env) there")
        watched: dict[Path, _Watched] = {}
        copies: dict[tuple, int] = {}
        old: dict[tuple, list[Secret]] = {}
        for f in files:
            real = self._real(f)
            if not real.is_file():
                raise SinkError(f"{f} is not a regular file")
            try:
                data = real.read_bytes()
                st = os.stat(real)
            except OSError as e:
                raise SinkError(f"cannot read {f}: {e.strerror or type(e).__name__}") from None
            try:
                values = neon_values(f, decode(data, f))
            except EnvParseError as e:
                raise SinkError(str(e)) from None
            mine = [(v, k) for v in values if (k := self.key_of(v)) is not None and v.uri.password is not None]
            if not mine:
                continue
            if not os.access(real, os.W_OK) or not os.access(real.parent, os.W_OK | os.X_OK):
                raise SinkError(f"{f}: not writable (the file and its directory must be)")
            for v, k in mine:
                if not v.patchable:
                    raise SinkError(f"{v.where}: the value holds escape sequences; edit it by hand or unquote it")
                copies[k] = copies.get(k, 0) + 1
                if k not in self._delivered and v.uri.password not in old.setdefault(k, []):
                    old[k].append(v.uri.password)
            watched[f] = _Watched(f, real, fingerprint(data, st))
        if not watched:
            raise SinkError(f"{self.path}: no copy of a planned target's connection string "
                            f"({len(files)} .env file(s) read)")
        with self._lock:
            self._watched = watched
            self._copies = copies
            for k, pws in old.items():
                got = self._old.setdefault(k, [])
                got.extend(p for p in pws if p not in got)
        n = sum(copies.values())
        return f"{self.path}: {n} cop{'y' if n == 1 else 'ies'} of {len(copies)} target(s) in {len(watched)} file(s)"

    # ------------------------------------------------------------------ deliver

    async def deliver(self, result) -> Receipt:
        import asyncio

        return await asyncio.to_thread(self._deliver, result)

    def _deliver(self, result) -> Receipt:
        key = result.target.key
        with self._lock:
            if not self._watched:
                raise SinkError(f"{self.name}: deliver before preflight")
            changed: list[str] = []
            present: list[str] = []
            for w in self._watched.values():
                changed_here, present_here = self._patch(w, key, result.password)
                changed += changed_here
                present += present_here
            self._delivered.add(key)
        if not present:
            return Receipt(self.name, f"no copy in {self.path}")
        if not changed:
            return Receipt(self.name, "already there: " + ", ".join(present))
        return Receipt(self.name, ", ".join(changed))

    def _patch(self, w: _Watched, key: tuple, password: Secret) -> tuple[list[str], list[str]]:
        try:
            real = self._real(w.path)
            if real != w.real:
                raise SinkError(f"{w.path} now points elsewhere; run again to read it afresh")
            data = real.read_bytes()
            st = os.stat(real)
        except FileNotFoundError:
            raise SinkError(f"{w.path} disappeared since it was read") from None
        except OSError as e:
            raise SinkError(f"cannot read {w.path}: {e.strerror or type(e).__name__}") from None
        if fingerprint(data, st) != w.fingerprint:
            raise SinkError(f"{w.path} changed since it was read (not by neon-tui); refusing to write it: "
                            "check it, then retry the sink")
        text = decode(data, w.path)
        mine = [v for v in neon_values(w.path, text) if self.key_of(v) == key and v.password_span() is not None]
        new_text, changed = patch_text(text, mine, password)
        if changed:
            payload = new_text.encode("utf-8")
            try:
                write_atomically(real, payload, st)
                st2 = os.stat(real)
            except OSError as e:
                raise SinkError(f"cannot write {w.path}: {e.strerror or type(e).__name__}") from None
            w.fingerprint = fingerprint(payload, st2)
        return [v.where for v in changed], [v.where for v in mine]
