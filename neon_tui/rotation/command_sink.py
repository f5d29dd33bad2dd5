"""Command sinks: hand a new password to a tool people already have (`gh`, `vercel`, `fly`, `doppler`, ...).

An argument list is run without a shell. The secret goes to the child's standard input and nowhere else:
never argv (every process can read it), never the environment (readable by the same user, inherited by
grandchildren). The child's environment is ours minus NEON_* (the API key), PGPASSWORD, anything configured
in `env_remove`, and any variable whose value holds the secret. A timeout kills the child's process group.
Exit 0 means delivered. The child's output is redacted (the password, its URL-encoded form and every
connection string become ********) before it is shown or put into an error; a Receipt names the sink and
the variable, never the output.

`{name}` placeholders in argv take non-secret fields only: var, project, project_id, branch, branch_id,
role, database. Rules (config.toml [[rules]]) map selectors to sinks and variable names; `RulesSink` is the
one session sink that sends each target to every sink its rules name, and refuses a target no rule names.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import signal
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote

from neon_tui.rotation.events import RotationResult
from neon_tui.rotation.plan import Selector, Target
from neon_tui.rotation.sinks import Receipt, SinkError

VALUES = ("direct", "pooled", "password")
STDIN_FORMATS = ("value", "env-line")
PLACEHOLDERS = ("var", "project", "project_id", "branch", "branch_id", "role", "database")
MASK = "********"
DEFAULT_ENV_REMOVE = ("PGPASSWORD",)  # plus every NEON_* variable (NEON_API_KEY above all)
_VAR = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SINK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# Literals that look like a secret typed into argv (where every process on the machine can read it).
_SECRETISH = (
    re.compile(r"postgres(?:ql)?://[^/\s:@]*:[^@\s]+@", re.I),   # a connection string with a password
    re.compile(r"\bnpg_[A-Za-z0-9]{6,}"),                         # a Neon password
    re.compile(r"(?:password|passwd|token|secret|api[_-]?key)=\S", re.I),
    re.compile(r"\b(?:ghp|gho|ghs|github_pat)_[A-Za-z0-9_]{10,}"),  # a GitHub token
)
_SECRET_FLAGS = ("--body", "-b", "--value")  # `gh secret set --body VALUE` puts the value in argv


class SinkConfigError(ValueError):
    """config.toml [sinks.*] / [[rules]] are wrong; the message names the key."""


# --------------------------------------------------------------------------- presets
#
# Checked against each tool's documentation (2026): every one reads the value from standard input.
#   gh secret set NAME --repo O/R [--env E]: without --body the value is read from stdin; it creates or
#       replaces. (gh trims nothing we rely on: we send the value without a trailing newline.)
#   vercel env add NAME ENV [GITBRANCH]: the value is read from stdin when it is not a terminal. Replacing an
#       existing variable needs `--force` in recent CLIs (older ones refuse an existing name and have no
#       --force: they exit non-zero, which is reported as a failed delivery). force = false drops it.
#   fly secrets import -a APP [--stage]: NAME=VALUE lines on stdin; flyctl strips quotes, so the value is
#       wrapped in """ (kept verbatim). Without --stage the app's machines are redeployed.
#   doppler secrets set NAME --silent [--project P] [--config C]: reads the value from stdin when it is piped
#       (uncertain across old CLI versions: interactive mode ends input with a lone '.', which a
#       connection string never is); --silent keeps the value out of its output.


@dataclass(frozen=True)
class _Preset:
    executable: str
    required: tuple[str, ...]
    optional: tuple[str, ...]
    stdin: str
    check: tuple[str, ...]


PRESETS: dict[str, _Preset] = {
    "gh-secret": _Preset("gh", ("repo",), ("env", "app"), "value", ("auth", "status")),
    "vercel-env": _Preset("vercel", ("environment",), ("git_branch", "force", "scope"), "value", ("whoami",)),
    "fly-secrets": _Preset("fly", ("app",), ("stage",), "env-line", ("auth", "whoami")),
    "doppler": _Preset("doppler", (), ("project", "config"), "value", ("me",)),
}


def preset_argv(preset: str, fields: Mapping[str, object], executable: str | None = None) -> list[str]:
    """The documented argument list of a preset, with {var} left as a placeholder."""
    exe = executable or PRESETS[preset].executable
    if preset == "gh-secret":
        argv = [exe, "secret", "set", "{var}", "--repo", str(fields["repo"])]
        if fields.get("env"):
            argv += ["--env", str(fields["env"])]
        if fields.get("app"):
            argv += ["--app", str(fields["app"])]  # actions | codespaces | dependabot
        return argv
    if preset == "vercel-env":
        argv = [exe, "env", "add", "{var}", str(fields["environment"])]
        if fields.get("git_branch"):
            argv.append(str(fields["git_branch"]))
        if fields.get("force", True):
            argv.append("--force")
        if fields.get("scope"):
            argv += ["--scope", str(fields["scope"])]
        return argv
    if preset == "fly-secrets":
        argv = [exe, "secrets", "import", "-a", str(fields["app"])]
        if fields.get("stage"):
            argv.append("--stage")
        return argv
    if preset == "doppler":
        argv = [exe, "secrets", "set", "{var}", "--silent"]
        if fields.get("project"):
            argv += ["--project", str(fields["project"])]
        if fields.get("config"):
            argv += ["--config", str(fields["config"])]
        return argv
    raise SinkConfigError(f"unknown preset {preset!r}")


# --------------------------------------------------------------------------- redaction and environment


def secrets_of(result: RotationResult) -> list[str]:
    """Every form of the secret that output could quote, longest first (so a URL is masked whole)."""
    pw = result.password.reveal()
    out = {pw, quote(pw, safe=""), quote(pw)}
    for c in result.connections:
        out.add(c.direct.reveal())
        if c.pooled is not None:
            out.add(c.pooled.reveal())
    return sorted((s for s in out if s), key=len, reverse=True)


def redact(text: str, secrets: Iterable[str], limit: int = 400) -> str:
    for s in secrets:
        text = text.replace(s, MASK)
    text = "".join(ch if ch.isprintable() or ch in "\n\t" else "?" for ch in text).strip()
    text = " | ".join(line.strip() for line in text.splitlines() if line.strip())
    return text if len(text) <= limit else "..." + text[-limit:]


def child_env(secrets: Sequence[str], remove: Iterable[str] = (), base: Mapping[str, str] | None = None
              ) -> dict[str, str]:
    """Our environment minus NEON_*, the configured names, and anything holding the secret."""
    base = os.environ if base is None else base
    drop = set(DEFAULT_ENV_REMOVE) | set(remove)
    return {k: v for k, v in base.items()
            if not k.upper().startswith("NEON_") and k not in drop and not any(s in v for s in secrets)}


# --------------------------------------------------------------------------- the sink


def _fields(result_or_target: RotationResult | Target, var: str, database: str | None) -> dict[str, str]:
    t = result_or_target.target if isinstance(result_or_target, RotationResult) else result_or_target
    return {"var": var, "project": t.project_name, "project_id": t.project_id, "branch": t.branch_name,
            "branch_id": t.branch_id, "role": t.role_name, "database": database or ""}


def check_template(argv: Sequence[str], where: str) -> None:
    """argv placeholders are known non-secret fields; no literal looks like a secret. Raises SinkConfigError."""
    if not argv or not all(isinstance(a, str) for a in argv) or not argv[0].strip():
        raise SinkConfigError(f"{where}: argv must be a non-empty list of strings")
    for i, arg in enumerate(argv):
        try:
            names = [f for _, f, spec, conv in string.Formatter().parse(arg) if f is not None]
        except ValueError as e:
            # the argument itself is never repeated: it may hold what the secret check below would refuse
            raise SinkConfigError(f"{where}: argv[{i}]: {e} (write {{{{ and }}}} for literal braces)") from None
        for name in names:
            if name not in PLACEHOLDERS:
                raise SinkConfigError(f"{where}: argv[{i}] has placeholder {{{name}}}; use one of "
                                      + ", ".join("{" + p + "}" for p in PLACEHOLDERS)
                                      + " (the secret is never an argument: it goes to standard input)")
        if any(p.search(arg) for p in _SECRETISH):
            raise SinkConfigError(f"{where}: argv[{i}] looks like a secret; arguments are visible to every "
                                  "process on the machine: keep secrets out of config.toml")
        if arg in _SECRET_FLAGS:
            raise SinkConfigError(f"{where}: argv[{i}] {arg} passes a value as an argument; the value goes to "
                                  "standard input")


class CommandSink:
    """Runs `argv` once per target with the secret on standard input; exit 0 = delivered."""

    automatic = True

    def __init__(self, name: str, argv: Sequence[str], value: str = "direct", *, var: str | None = None,
                 database: str | None = None, stdin: str = "value", timeout: float = 60,
                 env_remove: Iterable[str] = (), check: Sequence[str] | None = None, cwd: str | None = None,
                 describe: str | None = None) -> None:
        if value not in VALUES:
            raise SinkConfigError(f"sinks.{name}.value: {value!r} is not one of {', '.join(VALUES)}")
        if stdin not in STDIN_FORMATS:
            raise SinkConfigError(f"sinks.{name}.stdin: {stdin!r} is not one of {', '.join(STDIN_FORMATS)}")
        check_template(argv, f"sinks.{name}")
        if check:
            check_template(check, f"sinks.{name}.check")
        self.name = name
        self.argv = list(argv)
        self.value = value
        self.var = var
        self.database = database
        self.stdin = stdin
        self.timeout = float(timeout)
        self.env_remove = tuple(env_remove)
        self.check = list(check) if check else None
        self.cwd = cwd
        self.describe = describe or " ".join(self.argv[:3])
        self._done: set[tuple] = set()

    # ---------------------------------------------------------------- before any reset

    async def preflight(self) -> str:
        exe = self.argv[0]
        if shutil.which(exe) is None:
            raise SinkError(f"{self.name}: {exe!r} is not on PATH")
        if self.cwd is not None and not os.path.isdir(os.path.expanduser(self.cwd)):
            raise SinkError(f"{self.name}: cwd {self.cwd!r} is not a directory")
        if self.check:
            code, out = await self._exec([a.replace("{{", "{").replace("}}", "}") for a in self.check], b"", ())
            if code != 0:
                why = "timed out" if code is None else f"exited {code}"
                raise SinkError(f"{self.name}: check `{' '.join(self.check)}` {why}" + (f": {out}" if out else ""))
        return f"{self.name} ({self.describe})"

    def problem(self, target: Target, var: str | None = None, database: str | None = None,
                value: str | None = None) -> str | None:
        """Why this sink cannot take this target's password (checked before any reset), or None."""
        var = var or self.var
        database = database or self.database
        value = value or self.value
        if not var:
            return f"sink {self.name} has no variable name (set var in [sinks.{self.name}] or the rule)"
        if value != "password" and target.connect_endpoint is None:
            return (f"{target.label} has no compute yet, so no connection string for sink {self.name} "
                    f"(value = \"{value}\"); use value = \"password\" for it")
        if database is not None and database not in [d.name for d in target.connection_databases()]:
            return f"{target.label} has no database {database!r} (sink {self.name})"
        return None

    # ---------------------------------------------------------------- delivery

    def pick(self, result: RotationResult, database: str | None, value: str) -> tuple[str, str]:
        """(the secret to send, what it is in words)."""
        if value == "password":
            return result.password.reveal(), "password"
        c = result.connection(database)
        if c is None:
            where = f"database {database!r}" if database else "a compute endpoint"
            raise SinkError(f"{self.name}: {result.target.label} has no {where}: no connection string to send")
        if value == "pooled" and c.pooled is not None:
            return c.pooled.reveal(), f"pooled string, database {c.database}"
        return c.direct.reveal(), f"direct string, database {c.database}"

    async def deliver(self, result: RotationResult) -> Receipt:
        return await self.deliver_as(result)

    async def deliver_as(self, result: RotationResult, var: str | None = None, database: str | None = None,
                         value: str | None = None) -> Receipt:
        var = var or self.var
        database = database or self.database
        value = value or self.value
        if not var or not _VAR.fullmatch(var):
            raise SinkError(f"{self.name}: no valid variable name for {result.target.label}")
        secret, what = self.pick(result, database, value)
        secrets = secrets_of(result)
        fields = _fields(result, var, database)
        argv = [a.format_map(fields) for a in self.argv]
        if any(s in a for s in secrets for a in argv):
            raise SinkError(f"{self.name}: an argument would contain the secret; not run")
        detail = f"{self.name}: {var} ({what}) via {self.describe}"
        fp = (result.target.key, var, database, value, hashlib.sha256(secret.encode()).hexdigest())
        if fp in self._done:
            return Receipt(self.name, detail + " (already there)")  # safe to repeat
        if self.stdin == "env-line":
            # flyctl's import strips quotes; a value wrapped in """ is kept verbatim.
            if '"""' in secret or "\n" in secret or "\r" in secret:
                raise SinkError(f"{self.name}: the value cannot be written as one NAME=\"\"\"VALUE\"\"\" line")
            data = f'{var}="""{secret}"""\n'.encode()
        else:
            data = secret.encode()
        code, out = await self._exec(argv, data, secrets)
        if code is None:
            raise SinkError(f"{self.name}: `{' '.join(argv)}` timed out after {self.timeout:g}s and was killed"
                            + (f"; output: {out}" if out else ""))
        if code != 0:
            raise SinkError(f"{self.name}: `{' '.join(argv)}` exited {code}" + (f": {out}" if out else ""))
        self._done.add(fp)
        return Receipt(self.name, detail)

    async def _exec(self, argv: list[str], data: bytes, secrets: Sequence[str]) -> tuple[int | None, str]:
        """(exit status or None on timeout, redacted output)."""
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, env=child_env(secrets, self.env_remove),
                cwd=os.path.expanduser(self.cwd) if self.cwd else None, start_new_session=True)
        except OSError as e:
            raise SinkError(f"{self.name}: cannot run {argv[0]!r}: {e.strerror or type(e).__name__}") from None
        try:
            out, _ = await asyncio.wait_for(proc.communicate(data), self.timeout)
        except asyncio.TimeoutError:
            _kill_group(proc.pid)
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except asyncio.TimeoutError:
                pass
            return None, ""
        except BaseException:
            _kill_group(proc.pid)
            raise
        return proc.returncode, redact(out.decode("utf-8", "replace"), secrets)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)  # the child and anything it started (start_new_session=True)
    except (ProcessLookupError, PermissionError):
        pass


# --------------------------------------------------------------------------- rules


def target_matches(sel: Selector, t: Target) -> bool:
    """Selector.matches for a planned Target (names or ids; globs; every BRANCH/ROLE split)."""
    if not sel._match(sel.project, t.project_name, t.project_id):
        return False
    rest = sel.rest
    if not rest:
        return True
    if len(rest) == 1:
        return sel._match(rest[0], t.branch_name, t.branch_id)
    return any(sel._match("/".join(rest[:i]), t.branch_name, t.branch_id) and sel._match("/".join(rest[i:]), t.role_name)
               for i in range(1, len(rest)))


@dataclass(frozen=True)
class Rule:
    selectors: tuple[Selector, ...]
    sinks: tuple[str, ...]
    var: str | None = None
    database: str | None = None
    value: str | None = None
    text: str = ""

    def matches(self, t: Target) -> bool:
        return any(target_matches(s, t) for s in self.selectors)


@dataclass
class SinkConfig:
    sinks: dict[str, CommandSink] = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=list)


class RulesSink:
    """`--deliver rules`: each target goes to every sink its matching rules name, with the rule's variable.

    A target no rule matches is refused before any reset (`problems`), and refused again at delivery (so a
    password is never reported delivered when no sink took it). When one of a target's sinks fails, the
    error says which took it and which did not; a retry runs only those that did not (each CommandSink
    remembers what it delivered).
    """

    automatic = True
    name = "rules"

    def __init__(self, config: SinkConfig) -> None:
        self.config = config

    def assignments(self, t: Target) -> list[tuple[CommandSink, str | None, str | None, str | None]]:
        out, seen = [], set()
        for rule in self.config.rules:
            if not rule.matches(t):
                continue
            for name in rule.sinks:
                sink = self.config.sinks[name]
                a = (sink, rule.var or sink.var, rule.database or sink.database, rule.value or sink.value)
                k = (name, a[1], a[2], a[3])
                if k not in seen:
                    seen.add(k)
                    out.append(a)
        return out

    def problems(self, targets: Iterable[Target]) -> list[str]:
        out = []
        for t in targets:
            assigned = self.assignments(t)
            if not assigned:
                out.append(f"{t.label}: no [[rules]] entry in config.toml matches it")
            for sink, var, db, value in assigned:
                p = sink.problem(t, var, db, value)
                if p:
                    out.append(p)
        return out

    def _used(self) -> list[CommandSink]:
        names = dict.fromkeys(n for r in self.config.rules for n in r.sinks)
        return [self.config.sinks[n] for n in names]

    async def preflight(self) -> str:
        if not self.config.rules:
            raise SinkError("--deliver rules: config.toml has no [[rules]]")
        done = [await s.preflight() for s in self._used()]
        return "rules: " + ", ".join(done)

    async def deliver(self, result: RotationResult) -> Receipt:
        assigned = self.assignments(result.target)
        if not assigned:
            raise SinkError(f"no [[rules]] entry in config.toml matches {result.target.label}")
        took, failed = [], []
        for sink, var, db, value in assigned:
            try:
                took.append((await sink.deliver_as(result, var, db, value)).detail)
            except SinkError as e:
                failed.append(str(e))
        if failed:
            ok = f" (delivered: {'; '.join(took)})" if took else ""
            raise SinkError("; ".join(failed) + ok)
        return Receipt(self.name, "; ".join(took))


# --------------------------------------------------------------------------- config.toml


_COMMON = ("var", "database", "value", "timeout", "env_remove", "check", "cwd", "command")


def _str(d: Mapping, key: str, where: str, required: bool = False) -> str | None:
    v = d.get(key)
    if v is None:
        if required:
            raise SinkConfigError(f"{where}.{key} is missing")
        return None
    if not isinstance(v, str) or not v.strip():
        raise SinkConfigError(f"{where}.{key} must be a non-empty string")
    return v


def _strlist(d: Mapping, key: str, where: str) -> list[str] | None:
    v = d.get(key)
    if v is None:
        return None
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(x, str) and x.strip() for x in v):
        raise SinkConfigError(f"{where}.{key} must be a list of non-empty strings")
    return v


def _var(d: Mapping, where: str) -> str | None:
    var = _str(d, "var", where)
    if var is not None and not _VAR.fullmatch(var):
        raise SinkConfigError(f"{where}.var {var!r} is not a variable name (letters, digits, _)")
    return var


def _build_sink(name: str, d: Mapping) -> CommandSink:
    where = f"sinks.{name}"
    if not _SINK_NAME.fullmatch(name):
        raise SinkConfigError(f"{where}: a sink name is letters, digits, '.', '_' and '-'")
    if not isinstance(d, Mapping):
        raise SinkConfigError(f"{where} must be a table")
    preset = _str(d, "preset", where)
    value = _str(d, "value", where) or "direct"
    timeout = d.get("timeout", 60)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
        raise SinkConfigError(f"{where}.timeout must be a positive number of seconds")
    env_remove = _strlist(d, "env_remove", where) or []
    check = d.get("check")
    if check is not None:
        check = _strlist(d, "check", where)
    cwd = _str(d, "cwd", where)
    if preset is not None:
        if preset not in PRESETS:
            raise SinkConfigError(f"{where}.preset {preset!r} is unknown; use one of {', '.join(PRESETS)}")
        if "argv" in d or "stdin" in d:
            raise SinkConfigError(f"{where}: a preset builds its own argv and stdin; drop argv/stdin or the preset")
        p = PRESETS[preset]
        allowed = {"preset", *_COMMON, *p.required, *p.optional}
        extra = sorted(set(d) - allowed)
        if extra:
            raise SinkConfigError(f"{where}.{extra[0]} is not a setting of preset {preset} "
                                  f"(it takes {', '.join(p.required + p.optional)})")
        for key in p.required:
            _str(d, key, where, required=True)
        for key in p.optional:
            if key in d and not isinstance(d[key], (str, bool)):
                raise SinkConfigError(f"{where}.{key} must be a string" + (" or a boolean" if key in ("force", "stage") else ""))
        for key in ("force", "stage"):
            if key in d and not isinstance(d[key], bool):
                raise SinkConfigError(f"{where}.{key} must be true or false")
        exe = _str(d, "command", where)
        argv = preset_argv(preset, d, exe)
        for i, a in enumerate(argv):
            if "{" in a and a != "{var}":
                raise SinkConfigError(f"{where}: braces are not allowed in preset fields (argv[{i}])")
        if check is None:
            check = [argv[0], *p.check]
        return CommandSink(name, argv, value, var=_var(d, where), database=_str(d, "database", where),
                           stdin=p.stdin, timeout=timeout, env_remove=env_remove, check=check or None, cwd=cwd,
                           describe=f"{preset} {' '.join(a for a in argv[1:] if a != '{var}')}")
    argv = d.get("argv")
    if argv is None:
        raise SinkConfigError(f"{where}: give a preset ({', '.join(PRESETS)}) or an argv list")
    if not isinstance(argv, list):
        raise SinkConfigError(f"{where}.argv must be a list of strings (no shell: one argument per item)")
    extra = sorted(set(d) - {"argv", "stdin", *_COMMON})
    if extra:
        raise SinkConfigError(f"{where}.{extra[0]} is not a sink setting")
    if "command" in d:
        raise SinkConfigError(f"{where}.command goes with a preset; put the executable first in argv")
    return CommandSink(name, argv, value, var=_var(d, where), database=_str(d, "database", where),
                       stdin=_str(d, "stdin", where) or "value", timeout=timeout, env_remove=env_remove,
                       check=check or None, cwd=cwd)


def parse_sink_config(data: Mapping) -> SinkConfig:
    """[sinks.NAME] tables and [[rules]] from a parsed config.toml. Raises SinkConfigError naming the key."""
    raw_sinks = data.get("sinks", {})
    if not isinstance(raw_sinks, Mapping):
        raise SinkConfigError("sinks must be a table of [sinks.NAME] tables")
    sinks = {name: _build_sink(name, d) for name, d in raw_sinks.items()}
    raw_rules = data.get("rules", [])
    if not isinstance(raw_rules, list):
        raise SinkConfigError("rules must be an array of [[rules]] tables")
    rules = []
    for i, r in enumerate(raw_rules):
        where = f"rules[{i}]"
        if not isinstance(r, Mapping):
            raise SinkConfigError(f"{where} must be a table")
        extra = sorted(set(r) - {"select", "sinks", "var", "database", "value"})
        if extra:
            raise SinkConfigError(f"{where}.{extra[0]} is not a rule setting (select, sinks, var, database, value)")
        texts = _strlist(r, "select", where)
        if not texts:
            raise SinkConfigError(f"{where}.select is missing (PROJECT[/BRANCH[/ROLE]], names or ids, globs)")
        try:
            selectors = tuple(Selector.parse(t) for t in texts)
        except ValueError as e:
            raise SinkConfigError(f"{where}.select: {e}") from None
        names = _strlist(r, "sinks", where)
        if not names:
            raise SinkConfigError(f"{where}.sinks is missing (names of [sinks.NAME] tables)")
        for n in names:
            if n not in sinks:
                raise SinkConfigError(f"{where}.sinks: no [sinks.{n}] in config.toml")
        value = _str(r, "value", where)
        if value is not None and value not in VALUES:
            raise SinkConfigError(f"{where}.value {value!r} is not one of {', '.join(VALUES)}")
        var = _var(r, where)
        for n in names:
            if var is None and sinks[n].var is None:
                raise SinkConfigError(f"{where}: no var for sink {n} (set var in the rule or in [sinks.{n}])")
        rules.append(Rule(selectors, tuple(names), var, _str(r, "database", where), value, ", ".join(texts)))
    return SinkConfig(sinks, rules)
