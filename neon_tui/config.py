"""Typed settings from the TOML file in the platformdirs config directory (NEON_TUI_CONFIG points elsewhere)."""

from __future__ import annotations

import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from neon_tui.paths import config_file

CLIPBOARD_MODES = ("auto", "osc52", "native", "off")
_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")  # "module.Class", as keyring backends are named

EXAMPLE = """\
# neon-tui settings
[clipboard]
mode = "auto"        # auto | osc52 | native | off  (env NEON_TUI_CLIPBOARD overrides)
clear_after = 45     # seconds (above 0); the clipboard is cleared then if it still holds our value

[keymap]
# binding id = "keys" (comma-separated); see `?` in the app for the ids
# mark = "space,x"

[keyring]
# Only keyrings known to encrypt at rest are used (Secret Service, libsecret, KWallet, macOS Keychain,
# Windows Credential Manager). Allow another by its fully qualified class name, as neon-tui's refusal names it:
# allow_backends = ["module.Class"]

# Command sinks (`neon-tui rotate --deliver rules` or `--deliver sink:NAME`): the new value goes to the
# command's standard input only. Presets: gh-secret, vercel-env, fly-secrets, doppler.
# [sinks.app-repo]
# preset = "gh-secret"
# repo = "acme/app"
# [sinks.vercel-prod]
# preset = "vercel-env"
# environment = "production"
# value = "pooled"            # direct | pooled | password
# [sinks.custom]
# argv = ["my-tool", "put", "{var}"]   # placeholders: {var} {project} {project_id} {branch} {branch_id} {role} {database}
# var = "DB_URL"
# timeout = 30
# [[rules]]
# select = "acme-prod/main/app"
# sinks = ["app-repo", "vercel-prod"]
# var = "DATABASE_URL"
# database = "neondb"
"""


class ConfigError(Exception):
    title = "Settings file"


@dataclass(frozen=True, slots=True)
class Settings:
    clipboard_mode: str = "auto"
    clipboard_clear_after: float = 45.0
    keymap: dict[str, str] = field(default_factory=dict)
    path: Path | None = None
    # Extra keyring backends to accept ("module.Class"), beyond those known to encrypt: pass as secrets' allow=.
    keyring_allow: tuple[str, ...] = ()
    # [sinks.NAME] and [[rules]] (command sinks: neon_tui.rotation.command_sink.SinkConfig), or why they are bad.
    sink_config: object | None = None
    sink_error: str | None = None


def load_settings(path: Path | None = None, env: dict[str, str] | None = None) -> tuple[Settings, str | None]:
    """Settings and, if the file was bad, a message saying why (defaults are used then; nothing is lost).
    Every problem is in the message, one per line (see `read_settings` for the list)."""
    settings, problems = read_settings(path, env)
    return settings, "\n".join(problems) or None


def _where(path: Path, key: str) -> str:
    return f"{path}: {key}"


def read_settings(path: Path | None = None, env: dict[str, str] | None = None) -> tuple[Settings, list[str]]:
    """Settings and every problem found in the file, each naming the file and the key (the defaults are used
    for what is bad; the rest of the file still counts)."""
    env = os.environ if env is None else env
    path = path or config_file()
    data: dict = {}
    problems: list[str] = []
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as e:
            problems.append(f"{path}: {e}; using defaults")
            data = {}
    clip = data.get("clipboard", {})
    if not isinstance(clip, dict):
        problems.append(f"{_where(path, 'clipboard')} must be a table ([clipboard]); using the defaults")
        clip = {}
    from_env = bool(env.get("NEON_TUI_CLIPBOARD"))
    mode = str(env.get("NEON_TUI_CLIPBOARD") or clip.get("mode", "auto")).lower()
    if mode not in CLIPBOARD_MODES:
        where = "NEON_TUI_CLIPBOARD" if from_env else _where(path, "clipboard.mode")
        problems.append(f"{where}: {mode!r} is not one of {', '.join(CLIPBOARD_MODES)}; using auto")
        mode = "auto"
    clear = clip.get("clear_after", 45)
    # A clipboard holding a password must clear: nan and inf would never fire, 0 or less would never arm.
    if (not isinstance(clear, (int, float)) or isinstance(clear, bool) or not math.isfinite(clear)
            or clear <= 0):
        problems.append(f"{_where(path, 'clipboard.clear_after')} must be a finite number of seconds above 0, "
                        f"not {clear!r}; using 45")
        clear = 45
    keymap = data.get("keymap", {})
    if not isinstance(keymap, dict):
        problems.append(f"{_where(path, 'keymap')} must be a table ([keymap]); ignoring the keymap")
        keymap = {}
    good_keymap: dict[str, str] = {}
    for bid, keys in keymap.items():
        if isinstance(keys, str) and keys.strip() and all(k.strip() for k in keys.split(",")):
            good_keymap[bid] = ",".join(k.strip() for k in keys.split(","))
        else:
            problems.append(f"{_where(path, 'keymap.' + bid)} must be keys like \"space,x\", not {keys!r}; "
                            "ignoring it")
    keyring_allow: tuple[str, ...] = ()
    ring = data.get("keyring", {})
    allow = ring.get("allow_backends", []) if isinstance(ring, dict) else None
    if (isinstance(allow, list) and all(isinstance(a, str) for a in allow)
            and all(_DOTTED.fullmatch(a.strip()) for a in allow)):
        keyring_allow = tuple(dict.fromkeys(a.strip() for a in allow))
    else:
        problems.append(f"{_where(path, 'keyring.allow_backends')} must be a list of class names like "
                        '["module.Class"]; allowing only the keyrings known to encrypt')
    sink_config, sink_error = None, None
    if "sinks" in data or "rules" in data:
        from neon_tui.rotation.command_sink import SinkConfigError, parse_sink_config

        try:
            sink_config = parse_sink_config(data)
        except SinkConfigError as e:
            sink_error = f"{path}: {e}"
            problems.append(f"{sink_error}; command sinks are unavailable")
    known = {"clipboard", "keymap", "keyring", "sinks", "rules"}
    for name in data:
        if name not in known:
            problems.append(f"{_where(path, name)}: unknown setting (known: {', '.join(sorted(known))}); ignored")
    settings = Settings(mode, float(clear), good_keymap, path, keyring_allow, sink_config, sink_error)
    return settings, problems
