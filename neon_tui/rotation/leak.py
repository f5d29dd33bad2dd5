"""What leaked, parsed into candidate passwords without ever showing one.

Input: a `.env` file, connection strings, libpq keyword strings, JDBC URLs or bare passwords, one per line,
in any mix. Each candidate becomes a `LeakedSecret`: the password (a `Secret`), and where it came from
(`Origin`: line number, kind, variable name; user, host and endpoint id when a connection string gave them).
Nothing here puts a value in a repr, an exception or a log: errors name line numbers and kinds only.

Precedence, line by line (a `.env` binding may span lines when quoted):

1. Every `postgres://` / `postgresql://` URI anywhere in the line (a value, quoted, inside other text) gives
   its password (userinfo, else a `password=` query parameter), kind `uri`.
2. Every `jdbc:postgresql://…` URL gives its `password=` parameter, kind `jdbc`.
3. A libpq keyword string (`host=… user=… password=…`, values plain or single-quoted) gives its password,
   kind `libpq`.
4. A `.env` binding `NAME=value` (optionally `export NAME=value`, quoted or not, parsed by python-dotenv):
   - a password-like name (`*PASSWORD*`, `*PASSWD*`, `*PASS`, `*_PASS_*`, `*PWD*`, `PGPASSWORD`) gives its
     value, kind `env`, whatever the value looks like;
   - any other name whose value held no connection string gives its value too, kind `env-value`: a careful
     responder compares a few extra values in memory rather than miss a password stored under an odd name.
     Such values are only ever compared in memory (revealed passwords); they are never used for a login
     probe, which tries only the kinds above and bare lines.
5. Other shapes leaks often have, line by line: docker-compose `- NAME=value`, YAML `name: value`, JSON
   `"name": "value"` pairs (names decide `env` or `env-value` as in 4), and `.pgpass` lines
   (`host:port:db:user:password`, kind `pgpass`).
6. A line with neither `=` nor `://` (after trimming; `#` comments and blank lines are skipped) is a bare
   password, kind `bare`; surrounding matching quotes are removed.
   Other lines give nothing.

Candidates are de-duplicated by value: one `LeakedSecret` per distinct password, with every origin.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO
from urllib.parse import unquote

from neon_tui.neon.secret import Secret

MAX_BYTES = 16 * 1024 * 1024

URI = "uri"
JDBC = "jdbc"
LIBPQ = "libpq"
ENV = "env"
ENV_VALUE = "env-value"
BARE = "bare"
PGPASS = "pgpass"
KIND_WORDS = {
    PGPASS: ".pgpass line",
    URI: "connection string",
    JDBC: "JDBC URL",
    LIBPQ: "libpq keyword string",
    ENV: "password variable",
    ENV_VALUE: "variable value",
    BARE: "bare password",
}

_URI_RE = re.compile(r"(?<![A-Za-z0-9:])(?:postgres|postgresql)://[^\s'\"<>`]+", re.IGNORECASE)
_JDBC_RE = re.compile(r"jdbc:postgresql://[^\s'\"<>`]+", re.IGNORECASE)
_LIBPQ_PW_RE = re.compile(r"(?:^|\s)password\s*=", re.IGNORECASE)
_LIBPQ_PAIR_RE = re.compile(r"([A-Za-z_]+)\s*=\s*('(?:[^'\\]|\\.)*'|[^\s']+)")
_LIBPQ_KEYWORDS = frozenset({"host", "hostaddr", "port", "dbname", "user", "password", "sslmode", "options",
                             "application_name", "connect_timeout", "channel_binding"})
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_PASSWORDISH_RE = re.compile(r"PASSWORD|PASSWD|PWD|(?:^|_)PASS(?:_|$)", re.IGNORECASE)


class LeakError(ValueError):
    """The leak cannot be used (unreadable, binary, nothing that could be a password). Never quotes content."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a candidate was found: never the value itself."""

    line: int
    kind: str  # uri | jdbc | libpq | env | env-value | bare
    name: str | None = None  # the .env variable, when there was one
    user: str | None = None
    host: str | None = None
    endpoint_id: str | None = None

    def describe(self) -> str:
        what = KIND_WORDS.get(self.kind, self.kind)
        bits = [f"line {self.line}", what + (f" {self.name}" if self.name else "")]
        if self.user:
            bits.append(f"user {self.user}")
        if self.endpoint_id:
            bits.append(f"endpoint {self.endpoint_id}")
        elif self.host:
            bits.append(f"host {self.host}")
        return ", ".join(bits)

    def to_json(self) -> dict:
        return {"line": self.line, "kind": self.kind, "name": self.name, "user": self.user, "host": self.host,
                "endpoint_id": self.endpoint_id}


@dataclass(frozen=True, slots=True)
class LeakedSecret:
    """One distinct leaked password and every place it appeared."""

    password: Secret
    origins: tuple[Origin, ...]

    @property
    def line(self) -> int:
        return self.origins[0].line

    @property
    def kind(self) -> str:
        return self.origins[0].kind

    @property
    def probe_worthy(self) -> bool:
        """May this value be tried in a login? Not when it only appeared as an arbitrary variable's value."""
        return any(o.kind != ENV_VALUE for o in self.origins)

    @property
    def users(self) -> set[str]:
        return {o.user for o in self.origins if o.user}

    @property
    def endpoint_ids(self) -> set[str]:
        return {o.endpoint_id for o in self.origins if o.endpoint_id}

    def describe(self) -> str:
        more = len({o.line for o in self.origins}) - 1
        return self.origins[0].describe() + (f" (+{more} more line{'s' if more != 1 else ''})" if more else "")

    def as_bytes(self) -> bytes:
        return self.password.reveal().encode("utf-8", "surrogatepass")


@dataclass(slots=True)
class Leak:
    source: str  # a path, "standard input" or "pasted value": never content
    secrets: list[LeakedSecret] = field(default_factory=list)
    lines: int = 0

    def __len__(self) -> int:
        return len(self.secrets)

    def summary(self) -> str:
        kinds: dict[str, int] = {}
        for s in self.secrets:
            kinds[s.kind] = kinds.get(s.kind, 0) + 1
        parts = ", ".join(f"{n} {KIND_WORDS.get(k, k)}{'s' if n != 1 else ''}" for k, n in sorted(kinds.items()))
        return f"{len(self.secrets)} candidate password(s) from {self.source} ({parts})"


# ------------------------------------------------------------------ reading


def read_leak(path: str | Path, *, stdin: TextIO | None = None) -> Leak:
    """Read and parse FILE, or standard input for '-'. LeakError with a clear reason, never the content."""
    if str(path) == "-":
        import sys

        stream = stdin if stdin is not None else sys.stdin
        buf = getattr(stream, "buffer", None)
        try:
            data = buf.read(MAX_BYTES + 1) if buf is not None else stream.read(MAX_BYTES + 1)
        except OSError as e:
            raise LeakError(f"cannot read standard input ({type(e).__name__})") from None
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogatepass")
        return parse_leak_bytes(data, "standard input")
    p = Path(path)
    try:
        if p.is_dir():
            raise LeakError(f"{p} is a directory, not a file")
        with p.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        # The argument is not repeated: someone in a hurry may have typed the secret itself.
        raise LeakError("the file given as the leak: no such file (the name is not repeated, in case it "
                        "was the secret itself)") from None
    except PermissionError:
        raise LeakError(f"{p}: permission denied") from None
    except OSError as e:
        raise LeakError(f"{p}: cannot read ({e.strerror or type(e).__name__})") from None
    return parse_leak_bytes(data, str(p))


def parse_leak_bytes(data: bytes, source: str) -> Leak:
    if len(data) > MAX_BYTES:
        raise LeakError(f"{source} is larger than {MAX_BYTES // (1024 * 1024)} MiB: is it really what leaked?")
    if b"\x00" in data:
        raise LeakError(f"{source} looks binary (it holds NUL bytes): give the leaked text file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise LeakError(f"{source} is not UTF-8 text (line {line}): give the leaked text file") from None
    return parse_leak(text, source)


def parse_leak(text: str, source: str = "the leak") -> Leak:
    """Parse leaked text; LeakError when it holds no candidate password."""
    from dotenv.parser import parse_stream

    text = text.replace("\r\n", "\n")
    leak = Leak(source=source, lines=text.count("\n") + (0 if text.endswith("\n") or not text else 1))
    found: dict[str, list[Origin]] = {}

    def add(value: str | None, origin: Origin) -> None:
        if not value:
            return
        origins = found.setdefault(value, [])
        if not any(o.line == origin.line and o.kind == origin.kind for o in origins):
            origins.append(origin)

    for binding in parse_stream(io.StringIO(text)):
        raw = binding.original.string
        first = binding.original.line
        line_no, content = _first_content_line(raw, first)
        if content is None:
            continue  # blank lines and comments
        key = binding.key
        is_env = (not binding.error and key is not None and binding.value is not None
                  and _ENV_NAME_RE.fullmatch(key) is not None)
        if is_env and key.lower() in _LIBPQ_KEYWORDS and _LIBPQ_PAIR_RE.search(binding.value or ""):
            is_env = False  # `host=… user=… password=…`: a libpq string, not a variable named host
        scanned = [binding.value] if is_env else []
        scanned.append(raw)
        in_value = False
        for i, chunk in enumerate(scanned):
            hits = _structured(chunk, line_no, key if is_env else None)
            if hits and i == 0 and is_env:
                in_value = True
            for value, origin in hits:
                add(value, origin)
        if is_env:
            if _PASSWORDISH_RE.search(key):
                add(binding.value, Origin(line_no, ENV, key))
            elif not in_value and binding.value:
                add(binding.value, Origin(line_no, ENV_VALUE, key))
            continue
        if any(_structured(chunk, line_no, None) for chunk in scanned):
            continue
        # Not a binding with a value: YAML / JSON / compose / .pgpass shapes, else a bare password.
        for offset, physical in enumerate(raw.split("\n")):
            s = physical.strip()
            if not s or s.startswith("#"):
                continue
            loose = _loose(s, first + offset)
            if loose:
                for value, origin in loose:
                    add(value, origin)
                continue
            if "=" in s or "://" in s or _STRUCTURE_ONLY.fullmatch(s):
                continue
            if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
                s = s[1:-1]
            add(s, Origin(first + offset, BARE))
    leak.secrets = [LeakedSecret(Secret(v), tuple(o)) for v, o in found.items()]
    if not leak.secrets:
        raise LeakError(f"{source} holds no candidate password: expected a .env file, connection strings "
                        "(postgresql://…), libpq or JDBC strings, or bare passwords one per line")
    return leak


_YAML_RE = re.compile(r"""^-?\s*["']?([A-Za-z_][A-Za-z0-9_.\-]*)["']?\s*:\s+(.+?)\s*,?$""")
_JSON_PAIR_RE = re.compile(r'"([A-Za-z_][A-Za-z0-9_.\-]*)"\s*:\s*"((?:[^"\\]|\\.)*)"')
# A YAML mapping key with nothing after it (`services:`), or JSON/YAML punctuation: never a password.
_STRUCTURE_ONLY = re.compile(r"""-?\s*["']?[A-Za-z_][A-Za-z0-9_.\-]*["']?\s*:|[\[\]{}(),\s]+|---|\.\.\.""")
_COMPOSE_RE = re.compile(r"""^-\s+["']?([A-Za-z_][A-Za-z0-9_.\-]*)=(.*?)["']?$""")


def _named(name: str, value: str, line: int) -> tuple[str, Origin] | None:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    if not value or value in ("null", "~", "{}", "[]", "|", ">"):
        return None
    return value, Origin(line, ENV if _PASSWORDISH_RE.search(name) else ENV_VALUE, name)


def _pgpass(s: str, line: int) -> tuple[str, Origin] | None:
    """`hostname:port:database:username:password` (`\\:` and `\\\\` escaped), PostgreSQL's password file."""
    fields, cur, i = [], "", 0
    while i < len(s):
        if s[i] == "\\" and i + 1 < len(s):
            cur += s[i + 1]
            i += 2
            continue
        if s[i] == ":":
            fields.append(cur)
            cur = ""
        else:
            cur += s[i]
        i += 1
    fields.append(cur)
    if len(fields) != 5 or not fields[4] or not (fields[1] == "*" or fields[1].isdigit()):
        return None
    host = None if fields[0] == "*" else fields[0]
    return fields[4], Origin(line, PGPASS, None, None if fields[3] == "*" else fields[3], host,
                             _endpoint_of(host, None))


def _loose(s: str, line: int) -> list[tuple[str, Origin]]:
    """Shapes a leak often has besides .env: docker-compose `- NAME=value`, YAML `name: value`, JSON
    `"name": "value"` pairs, .pgpass lines. Names decide the kind as for .env (password-like or not)."""
    m = _COMPOSE_RE.match(s)
    if m:
        hit = _named(m.group(1), m.group(2), line)
        return [hit] if hit else []
    pairs = _JSON_PAIR_RE.findall(s)
    if pairs:
        return [h for k, v in pairs if (h := _named(k, v.replace('\\"', '"'), line))]
    pg = _pgpass(s, line)
    if pg:
        return [pg]
    m = _YAML_RE.match(s)
    if m and "://" not in m.group(2):
        hit = _named(m.group(1), m.group(2), line)
        return [hit] if hit else []
    return []


def _first_content_line(raw: str, first: int) -> tuple[int, str | None]:
    for offset, physical in enumerate(raw.split("\n")):
        s = physical.strip()
        if s and not s.startswith("#"):
            return first + offset, s
    return first, None


# ------------------------------------------------------------------ structured strings


def _structured(text: str, line: int, name: str | None) -> list[tuple[str, Origin]]:
    """Passwords in connection strings, JDBC URLs and libpq keyword strings found anywhere in `text`."""
    out: list[tuple[str, Origin]] = []
    rest = text
    for m in _JDBC_RE.finditer(text):
        pw, user, host = _jdbc(m.group(0))
        if pw:
            out.append((pw, Origin(line, JDBC, name, user, host, _endpoint_of(host, None))))
        rest = rest.replace(m.group(0), " ")
    whole = rest.strip()
    if re.fullmatch(r"(?:postgres|postgresql)://\S+", whole, re.IGNORECASE):
        uris = [whole]  # a whole value: quotes inside it (an unencoded o'brien) belong to it
    else:
        uris = [m.group(0) for m in _URI_RE.finditer(rest)]
    for uri in uris:
        pw, user, host, ep = _uri(uri)
        if pw:
            out.append((pw, Origin(line, URI, name, user, host, ep)))
        rest = rest.replace(uri, " ")
    if _LIBPQ_PW_RE.search(rest):
        pairs = {k.lower(): _libpq_value(v) for k, v in _LIBPQ_PAIR_RE.findall(rest)}
        pw = pairs.get("password")
        # A lone `password=x` is a .env binding (handled there); libpq needs another keyword beside it.
        if pw and len(pairs) > 1:
            host = pairs.get("host")
            out.append((pw, Origin(line, LIBPQ, name, pairs.get("user"), host,
                                   _endpoint_of(host, pairs.get("options")))))
    return out


def _strip_trailing(uri: str) -> str:
    # A URI at the end of a sentence or inside brackets: not part of it.
    return uri.rstrip(".,;)]}>")


def _query(q: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in q.split("&"):  # libpq and pgJDBC separate parameters with '&' only; ';' may be in a password
        k, sep, v = part.partition("=")
        if sep:
            out.setdefault(unquote(k).lower(), unquote(v))
    return out


def _uri(uri: str) -> tuple[str | None, str | None, str | None, str | None]:
    uri = _strip_trailing(uri)
    rest = uri.split("://", 1)[1]
    userinfo, at, hostpart = rest.rpartition("@")
    if not at:
        userinfo, hostpart = "", rest
    user_enc, colon, pw_enc = userinfo.partition(":")
    authority, _, tail = hostpart.partition("/")
    authority = authority.split("?", 1)[0]
    query = tail.split("?", 1)[1] if "?" in tail else (hostpart.split("?", 1)[1] if "?" in hostpart else "")
    params = _query(query.split("#", 1)[0])
    password = unquote(pw_enc) if colon else None
    password = password or params.get("password")
    user = unquote(user_enc) if user_enc else params.get("user")
    host = _host_of(authority) or params.get("host")
    return password, user, host, _endpoint_of(host, params.get("options"))


def _jdbc(url: str) -> tuple[str | None, str | None, str | None]:
    url = _strip_trailing(url)
    rest = url.split("://", 1)[1]
    authority, _, tail = rest.partition("/")
    query = tail.split("?", 1)[1] if "?" in tail else ""
    params = _query(query)
    return params.get("password"), params.get("user"), _host_of(authority.split("?", 1)[0])


def _host_of(authority: str) -> str | None:
    host = authority.split(",", 1)[0]
    if host.startswith("["):
        host = host[1:].split("]", 1)[0]
    else:
        host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return unquote(host) or None


def _endpoint_of(host: str | None, options: str | None) -> str | None:
    if options:
        m = re.search(r"endpoint=(ep-[A-Za-z0-9-]+)", unquote(options))
        if m:
            return m.group(1)
    if host:
        label = host.split(".", 1)[0].lower()
        if label.startswith("ep-"):
            return label.removesuffix("-pooler")
    return None


def _libpq_value(v: str) -> str:
    if len(v) >= 2 and v[0] == "'" and v[-1] == "'":
        return re.sub(r"\\(.)", r"\1", v[1:-1])
    return v
