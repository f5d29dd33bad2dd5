"""Where neon-tui keeps its files: platformdirs config/state dirs, and the stylesheet shipped with the package."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "neon-tui"


def config_dir() -> Path:
    return Path(platformdirs.user_config_dir(APP, appauthor=False))


def config_file() -> Path:
    """The settings file; NEON_TUI_CONFIG points at another one."""
    override = os.environ.get("NEON_TUI_CONFIG")
    return Path(override) if override else config_dir() / "config.toml"


def state_dir() -> Path:
    """Journals of rotation runs live here (no secrets in them)."""
    override = os.environ.get("NEON_TUI_STATE_DIR")
    return Path(override) if override else Path(platformdirs.user_state_dir(APP, appauthor=False))


def stylesheet_path() -> Path:
    """app.tcss: inside the installed wheel (neon_tui/styles), else the checkout's top-level styles/."""
    packaged = Path(__file__).parent / "styles" / "app.tcss"
    if packaged.is_file():
        return packaged
    return Path(__file__).resolve().parent.parent / "styles" / "app.tcss"
