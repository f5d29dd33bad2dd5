"""Typed settings from the TOML file in the platformdirs config directory (NEON_TUI_CONFIG points elsewhere)."""

from __future__ import annotations

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
clear_after = 45     # seconds; the clipboard is cleared then if it still holds our value (0: never)

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
    """Settings and, if the file was bad, a message saying why (defaults are used then; nothing is lost)."""
    env = os.environ if env is None else env
    path = path or config_file()
    data: dict = {}
    problem: str | None = None
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as e:
            problem = f"{path}: {e}; using defaults"
            data = {}
    clip = data.get("clipboard", {}) if isinstance(data.get("clipboard", {}), dict) else {}
    mode = str(env.get("NEON_TUI_CLIPBOARD") or clip.get("mode", "auto")).lower()
    if mode not in CLIPBOARD_MODES:
        problem = f"clipboard mode {mode!r} is not one of {', '.join(CLIPBOARD_MODES)}; using auto"
        mode = "auto"
    clear = clip.get("clear_after", 45)
    if not isinstance(clear, (int, float)) or isinstance(clear, bool) or clear < 0:
        problem = "clipboard.clear_after must be a number of seconds; using 45"
        clear = 45
    keymap = data.get("keymap", {})
    if not isinstance(keymap, dict) or not all(isinstance(v, str) for v in keymap.values()):
        problem = "keymap entries must be strings like mark = \"space,x\"; ignoring the keymap"
        keymap = {}
    keyring_allow: tuple[str, ...] = ()
    ring = data.get("keyring", {})
    allow = ring.get("allow_backends", []) if isinstance(ring, dict) else None
    if (isinstance(allow, list) and all(isinstance(a, str) for a in allow)
            and all(_DOTTED.fullmatch(a.strip()) for a in allow)):
        keyring_allow = tuple(dict.fromkeys(a.strip() for a in allow))
    else:
        problem = ('keyring.allow_backends must be a list of class names like ["module.Class"]; '
                   "allowing only the keyrings known to encrypt")
    sink_config, sink_error = None, None
    if "sinks" in data or "rules" in data:
        from neon_tui.rotation.command_sink import SinkConfigError, parse_sink_config

        try:
            sink_config = parse_sink_config(data)
        except SinkConfigError as e:
            sink_error = f"{path}: {e}"
            problem = problem or f"{sink_error}; command sinks are unavailable"
    return Settings(mode, float(clear), dict(keymap), path, keyring_allow, sink_config, sink_error), problem
