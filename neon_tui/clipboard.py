"""The one copy path of the app: OSC 52 or the system clipboard, with an auto-clear that never clobbers the user."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping

from neon_tui.neon.secret import Secret

MODES = ("auto", "osc52", "native", "off")
_SSH_VARS = ("SSH_CONNECTION", "SSH_CLIENT", "SSH_TTY")
_LINUX_TOOLS = ("xclip", "xsel", "wl-copy")


class ClipboardUnavailable(RuntimeError):
    """Copying is off or impossible here: the message says why and never contains the value."""

    title = "Clipboard unavailable"


class Clipboard:
    """Copies Secrets and clears them again after `clear_after` seconds, if they are still there.

    Paths:
      osc52   the terminal's clipboard, through an escape sequence (the app passes `App.copy_to_clipboard`).
              Works over SSH and inside tmux (`set -g set-clipboard on`), needs neither X nor pyperclip,
              but cannot be read back.
      native  the system clipboard through pyperclip (xclip/xsel/wl-copy, pbcopy, Windows). On a remote
              machine this is the *remote* clipboard, which is why auto prefers OSC 52 over SSH.

    The copied value is kept only here, as a Secret, until it is cleared or forgotten. Textual's
    `copy_to_clipboard` also keeps its last text in `App.clipboard`; the OSC 52 clear overwrites it.
    """

    def __init__(
        self,
        mode: str = "auto",
        *,
        osc52: Callable[[str], None] | None = None,
        clear_after: float = 45.0,
        env: Mapping[str, str] | None = None,
        native: object | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"clipboard mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.mode = mode
        self.clear_after = clear_after
        self._osc52 = osc52
        self._env = os.environ if env is None else env
        self._native = native
        self._clock = clock
        self._value: Secret | None = None
        self._path: str | None = None
        self._deadline: float | None = None
        # Why the last auto copy could not use the system clipboard, for the app to show next to the toast.
        self.fallback_reason: str | None = None

    def __repr__(self) -> str:
        state = "pending" if self._value is not None else "idle"
        return f"Clipboard(mode={self.mode!r}, {state})"

    def resolve(self) -> str:
        """The path `copy` tries first now: auto picks osc52 over SSH or inside tmux, else native.

        An explicit mode resolves to itself ("off" included).
        """
        if self.mode != "auto":
            return self.mode
        remote = any(self._env.get(k) for k in _SSH_VARS) or bool(self._env.get("TMUX"))
        # Over SSH the system clipboard is the server's, which the user cannot paste from.
        return "osc52" if remote and self._osc52 is not None else "native"

    def copy(self, value: Secret) -> str:
        """Copy `value`; returns the path used: "osc52", "native" or "native→osc52" (auto's fallback)."""
        if not isinstance(value, Secret):
            raise TypeError("Clipboard.copy takes a Secret")
        if self.mode == "off":
            raise ClipboardUnavailable(
                "copying is turned off (clipboard mode 'off'; set [clipboard] mode or NEON_TUI_CLIPBOARD)")
        first = self.resolve()
        if first == "osc52":
            self._send_osc52(value)
            path = "osc52"
        else:
            failure = self._native_copy(value)
            if failure is None:
                path = "native"
                self.fallback_reason = None
            elif self.mode == "auto" and self._osc52 is not None:
                self._send_osc52(value)
                path = "native→osc52"
                self.fallback_reason = failure
            else:
                hint = "" if self.mode == "native" else " and no terminal (OSC 52) copy is available"
                raise ClipboardUnavailable(f"the system clipboard is not usable: {failure}{hint}")
        self._remember(value, path)
        return path

    def remaining(self) -> float | None:
        """Seconds until the auto-clear (0 once due), or None when nothing is pending."""
        if self._value is None or self._deadline is None:
            return None
        return max(0.0, self._deadline - self._clock())

    def clear_if_ours(self) -> bool:
        """Clear what we copied, unless the user has copied something else since; forget it either way.

        native: clears only if the system clipboard still holds our value.
        osc52:  a terminal clipboard cannot be read back, so this sends an empty OSC 52 copy, which
                xterm-compatible terminals (and tmux with set-clipboard on) take as "clipboard now empty".
                That may also wipe something the user copied since; it is the only way to drop the secret.
        Returns whether a clear was issued. Never raises: it runs from a timer.
        """
        value, path = self._value, self._path
        self.forget()
        if value is None:
            return False
        try:
            if path == "native":
                mod = self._native_module()
                # Compare inline so the clipboard's text (maybe the user's own secret) is never bound to a local.
                if mod.paste() != value.reveal():
                    return False
                mod.copy("")
                return True
            if self._osc52 is None:
                return False
            self._osc52("")
            return True
        except Exception:
            # Losing the X display or the terminal between copy and clear leaves nothing we could clear.
            return False

    def forget(self) -> None:
        """Drop the remembered value and the pending clear, without touching any clipboard."""
        self._value = None
        self._path = None
        self._deadline = None

    def _remember(self, value: Secret, path: str) -> None:
        if self.clear_after <= 0:
            # Auto-clear is off, so holding the value would only widen its exposure.
            self.forget()
            return
        self._value = Secret(value)
        self._path = "native" if path == "native" else "osc52"
        self._deadline = self._clock() + self.clear_after

    def _send_osc52(self, value: Secret) -> None:
        if self._osc52 is None:
            raise ClipboardUnavailable("the terminal (OSC 52) clipboard is not available here (no terminal to write)")
        try:
            self._osc52(value.reveal())
        except Exception as e:
            failure = type(e).__name__
        else:
            return
        # Raised outside the except block so no chained exception (or its frames' locals) travels with it.
        raise ClipboardUnavailable(f"the terminal (OSC 52) copy failed: {failure}")

    def _native_module(self):
        if self._native is None:
            import pyperclip  # lazily: it probes for tools on first use and the app may never copy

            self._native = pyperclip
        return self._native

    def _native_copy(self, value: Secret) -> str | None:
        """Copy through the system clipboard; None on success, else why it failed (without the value)."""
        try:
            mod = self._native_module()
        except ImportError:
            return "pyperclip is not installed"
        try:
            mod.copy(value.reveal())
            # xclip exits quietly when it cannot reach the display, so read back to know the copy landed.
            landed = mod.paste() == value.reveal()
        except Exception as e:
            return f"{self._native_hint()} ({type(e).__name__})"
        if not landed:
            return f"the copy did not land ({self._native_hint()})"
        return None

    def _native_hint(self) -> str:
        if not sys.platform.startswith("linux"):
            return "the system clipboard tool failed"
        if not self._env.get("DISPLAY") and not self._env.get("WAYLAND_DISPLAY"):
            return "no DISPLAY or WAYLAND_DISPLAY is set (no graphical session; over SSH use osc52)"
        path = self._env.get("PATH", os.defpath)
        if not any(shutil.which(t, path=path) for t in _LINUX_TOOLS):
            return "none of xclip, xsel or wl-copy is installed"
        display = self._env.get("DISPLAY") or self._env.get("WAYLAND_DISPLAY")
        return f"the clipboard tool could not reach the display {display}"
