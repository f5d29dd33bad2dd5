"""The one copy path of the app: OSC 52 or the system clipboard, with an auto-clear that never clobbers the user."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from neon_tui.neon.secret import Secret

MODES = ("auto", "osc52", "native", "off")
_SSH_VARS = ("SSH_CONNECTION", "SSH_CLIENT", "SSH_TTY")
_LINUX_TOOLS = ("xclip", "xsel", "wl-copy")

# tmux drops an OSC 52 copy with an empty payload (input.c: `if (*end == '\0') return;`): it neither reaches
# the terminal outside tmux nor changes a paste buffer. Inside tmux the clear therefore overwrites with this
# instead, which travels exactly where the copy went.
TMUX_BLANK = " "
TMUX_SECONDS = 2.0  # all tmux calls of one clear together; they run on the UI's loop, so a hung tmux must not hang it

TmuxRunner = Callable[[Sequence[str], float], bytes]
"""Runs `tmux ARGS` with a timeout in seconds and returns its stdout; raises on any failure."""


class TmuxError(RuntimeError):
    """A tmux command failed; the message names the command and how, never a buffer's content."""


def run_tmux(socket: str | None) -> TmuxRunner:
    """A runner for the tmux server at `socket` (the first field of $TMUX), or the default server."""

    def run(args: Sequence[str], timeout: float) -> bytes:
        cmd = ["tmux", *(("-S", socket) if socket else ()), *args]
        try:
            done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            failure = "did not answer in time"
        except OSError as e:
            failure = f"could not be run ({type(e).__name__})"
        else:
            if done.returncode == 0:
                return done.stdout
            failure = f"exited with status {done.returncode}"
        # stderr is left out: the command's own words are not needed, and show-buffer's are not ours to repeat.
        raise TmuxError(f"tmux {args[0]} {failure}")

    return run


@dataclass(frozen=True, slots=True)
class ClearReport:
    """What a clear did, for a notification that tells the truth. Never holds the value."""

    path: str  # "native" | "osc52"
    cleared: bool  # a clear was issued (native: only when our value was still there)
    failure: str | None = None  # why the clipboard itself could not be cleared
    in_tmux: bool = False  # the copy went over OSC 52 inside tmux, so tmux paste buffers were looked at
    tmux_deleted: int = 0  # tmux paste buffers that held the value and were deleted
    tmux_left: str | None = None  # why tmux paste buffers may still hold it, if they may

    @property
    def copy_may_remain(self) -> bool:
        return self.failure is not None or self.tmux_left is not None

    @property
    def severity(self) -> str:
        return "warning" if self.copy_may_remain else "information"

    def message(self) -> str | None:
        """The notification, or None when there is nothing to say (the user has copied something else since)."""
        if self.failure is not None:
            where = "system" if self.path == "native" else "terminal"
            head = f"Could not clear the {where} clipboard ({self.failure}): it may still hold the copy"
        elif not self.cleared:
            return None
        else:
            head = "Clipboard cleared"
        if not self.in_tmux:
            return head + "."
        deleted = self.tmux_deleted
        done = (f"{deleted} tmux paste buffer{'s' if deleted != 1 else ''} deleted" if deleted
                else "no tmux paste buffer held it")
        if self.tmux_left is None:
            return f"{head}; {done}."
        done = f"{done}, but " if deleted else ""
        return f"{head}; {done}tmux paste buffers may still hold it ({self.tmux_left}): check tmux list-buffers."


class ClipboardUnavailable(RuntimeError):
    """Copying is off or impossible here: the message says why and never contains the value."""

    title = "Clipboard unavailable"


class Clipboard:
    """Copies Secrets and clears them again after `clear_after` seconds, if they are still there.

    Paths:
      osc52   the terminal's clipboard, through an escape sequence (the app passes `App.copy_to_clipboard`).
              Works over SSH and inside tmux (`set -g set-clipboard on`), needs neither X nor pyperclip,
              but cannot be read back. Inside tmux the copy also lands in a tmux paste buffer, which the
              clear deletes (`tmux` is asked with a timeout, through the injectable `tmux` runner).
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
        tmux: TmuxRunner | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"clipboard mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.mode = mode
        self.clear_after = clear_after
        self._osc52 = osc52
        self._env = os.environ if env is None else env
        self._native = native
        self._clock = clock
        self._tmux = tmux
        self._value: Secret | None = None
        self._path: str | None = None
        self._in_tmux = False
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
        """`clear()`; returns whether a clear was issued."""
        report = self.clear()
        return report is not None and report.cleared

    def clear(self) -> ClearReport | None:
        """Clear what we copied, unless the user has copied something else since; forget it either way.

        native: clears only if the system clipboard still holds our value.
        osc52:  a terminal clipboard cannot be read back, so this sends an empty OSC 52 copy, which
                xterm-compatible terminals take as "clipboard now empty". That may also wipe something the
                user copied since; it is the only way to drop the secret.
        tmux:   (an OSC 52 copy made inside tmux) tmux ignores an empty OSC 52, so a blank is sent instead;
                with set-clipboard on, tmux also kept the copy in a paste buffer: every paste buffer holding
                the value is deleted (read with show-buffer and compared in memory; the value is never in
                a command line).
        Returns what was done (None if nothing was pending). Never raises: it runs from a timer.
        """
        value, path, in_tmux = self._value, self._path, self._in_tmux
        self.forget()
        if value is None or path is None:
            return None
        cleared, failure = self._clear_clipboard(value, path, in_tmux)
        if not in_tmux:
            return ClearReport(path, cleared, failure)
        deleted, left = self._scrub_tmux(value)
        return ClearReport(path, cleared, failure, True, deleted, left)

    def _clear_clipboard(self, value: Secret, path: str, in_tmux: bool) -> tuple[bool, str | None]:
        try:
            if path == "native":
                mod = self._native_module()
                # Compare inline so the clipboard's text (maybe the user's own secret) is never bound to a local.
                if mod.paste() != value.reveal():
                    return False, None
                mod.copy("")
                return True, None
            if self._osc52 is None:
                return False, "no terminal to write to"
            self._osc52(TMUX_BLANK if in_tmux else "")
            return True, None
        except Exception as e:
            # Losing the X display or the terminal between copy and clear: say so, by type only.
            return False, type(e).__name__

    def _tmux_runner(self) -> TmuxRunner:
        if self._tmux is None:
            self._tmux = run_tmux(self._env.get("TMUX", "").split(",")[0] or None)
        return self._tmux

    def _scrub_tmux(self, value: Secret) -> tuple[int, str | None]:
        """Delete the tmux paste buffers that hold `value`: (how many, why some may still hold it, or None)."""
        deadline = self._clock() + TMUX_SECONDS
        deleted = 0
        try:
            run = self._tmux_runner()

            def tmux(*args: str) -> bytes:
                left = deadline - self._clock()
                if left <= 0:
                    raise TmuxError(f"tmux {args[0]} did not answer in time")
                return run(args, min(left, 1.0))

            def names() -> list[str]:
                out = tmux("list-buffers", "-F", "#{buffer_name}")
                return [n for n in out.decode("utf-8", "surrogateescape").splitlines() if n]

            needle = value.reveal().encode("utf-8")
            unread: list[str] = []
            undeleted: list[str] = []
            for name in names():
                try:
                    holds = needle in tmux("show-buffer", "-b", name)  # compared here, never kept or shown
                except TmuxError:
                    unread.append(name)  # gone since the listing, or unreadable: looked at again below
                    continue
                if holds:
                    try:
                        tmux("delete-buffer", "-b", name)
                        deleted += 1
                    except TmuxError:
                        undeleted.append(name)
            if unread or undeleted:
                still = set(names())
                unread = [n for n in unread if n in still]
                undeleted = [n for n in undeleted if n in still]
            problems = ([f"could not delete {', '.join(undeleted)}"] if undeleted else []) + \
                       ([f"could not read {', '.join(unread)}"] if unread else [])
            return deleted, "; ".join(problems) or None
        except TmuxError as e:
            return deleted, str(e)
        except Exception as e:
            return deleted, f"tmux could not be asked ({type(e).__name__})"

    def forget(self) -> None:
        """Drop the remembered value and the pending clear, without touching any clipboard."""
        self._value = None
        self._path = None
        self._in_tmux = False
        self._deadline = None

    def _remember(self, value: Secret, path: str) -> None:
        if self.clear_after <= 0:
            # Auto-clear is off, so holding the value would only widen its exposure.
            self.forget()
            return
        self._value = Secret(value)
        self._path = "native" if path == "native" else "osc52"
        # tmux (set-clipboard on) keeps an OSC 52 copy in a paste buffer too, which the clear must find.
        self._in_tmux = self._path == "osc52" and bool(self._env.get("TMUX"))
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
