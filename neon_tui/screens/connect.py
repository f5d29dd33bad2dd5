"""ConnectScreen: what start-up is trying (host, attempt n of m, the last error, the next retry) and a way out."""

from __future__ import annotations

import time

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Footer, Input, Label, Static

from neon_tui.screens.base import NeonScreen


def normalize_host(text: str) -> str:
    """What the user typed as an API host, as a base URL: `https://` when no scheme is given, `/api/v2` when
    no path is; then the app's one host rule (neon.client.check_host: https, or plain http to loopback only)."""
    from neon_tui.neon.client import check_host

    text = text.strip()
    if not text:
        raise ValueError("type an API host, e.g. https://console.neon.tech/api/v2")
    if "://" not in text:
        text = "https://" + text
    scheme, _, rest = text.partition("://")
    if "/" not in rest:
        text = f"{scheme}://{rest}/api/v2"
    try:
        return check_host(text)
    except Exception as e:  # InvalidHostError, InsecureTransportError: their text names NEON_API_HOST
        raise ValueError(str(e).replace("NEON_API_HOST", "the API host")) from None


def one_line(text: str, width: int = 200) -> str:
    """The text on one line of at most `width` characters (cut with …)."""
    line = " ".join(str(text).split())
    return line if len(line) <= width else line[: width - 1] + "…"


class ConnectScreen(NeonScreen):
    """Start-up: reading the key, then checking it against the API, with retries the user can see and cut short."""

    BINDINGS = [
        Binding("q", "app.quit", "Quit", id="connect-quit"),
        Binding("h", "change_host", "Change host", id="connect-host"),
        Binding("r", "retry_now", "Retry now", id="connect-retry"),
        Binding("escape", "close_host", "Cancel", show=False, id="connect-cancel"),
    ]

    AUTO_FOCUS = ""  # the host field is hidden until h: with focus there, q would type instead of quitting

    def __init__(self, clock=time.monotonic) -> None:
        super().__init__()
        self.clock = clock
        self.host = ""
        self.phase = "Starting…"
        self.attempt = 0
        self.attempts = 0
        self.error = ""
        self.request_id: str | None = None  # Neon's, when it answered (for support); none for a network error
        self.retry_at: float | None = None  # monotonic time of the next attempt, while waiting for it
        self.waiting_for_user = False  # gave up (or a host problem): r retries, h changes the host

    def compose(self) -> ComposeResult:
        # No Header here: Textual's Header updates its title in a callback that fails (NoMatches) when the
        # sub-title changes as its screen is popped, which is exactly what a fast connection does.
        with Vertical(id="connect-box"):
            yield Label("neon-tui: connecting to the Neon API", classes="dialog-title")
            yield Static("", id="connect-status", markup=False)
            field = Input(placeholder="https://console.neon.tech/api/v2  (enter connects, esc cancels)",
                          id="connect-host-input")
            field.display = False
            yield field
            yield Static("", id="connect-host-problem", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.set_interval(0.25, self.refresh_status)
        self.refresh_status()

    # ------------------------------------------------------------- what the app reports

    def show(self, phase: str, *, host: str | None = None, attempt: int = 0, attempts: int = 0,
             error: str = "", retry_in: float | None = None, waiting_for_user: bool = False,
             request_id: str | None = None) -> None:
        self.phase = phase
        self.request_id = request_id
        if host is not None:
            # shown, pre-filled in h and in screenshots: never a user:password written into the URL
            from neon_tui.neon.client import _redact_url

            self.host = _redact_url(host)
        self.attempt, self.attempts = attempt, attempts
        self.error = " ".join(error.split()) if error else ""
        self.retry_at = self.clock() + retry_in if retry_in is not None else None
        self.waiting_for_user = waiting_for_user
        if self.is_mounted:
            self.refresh_status()

    def status_text(self) -> str:
        width = self.query_one("#connect-status").size.width if self.is_mounted else 0
        width = width or 70
        lines = [self.phase, ""]
        if self.host:
            lines.append(f"host     {self.host}")
        if self.attempts:
            lines.append(f"attempt  {self.attempt} of {self.attempts}")
        if self.error:
            lines.append(f"error    {one_line(self.error, max(20, width - 9))}")  # one line, whatever the width
        if self.request_id:
            lines.append(f"request  {self.request_id}")
        if self.retry_at is not None:
            left = max(0.0, self.retry_at - self.clock())
            lines.append(f"next     retry in {left:.0f}s")
        lines.append("")
        if self.waiting_for_user:
            lines.append("r tries again · h changes the API host · q quits")
        else:
            lines.append("h changes the API host · q (or ctrl+q) quits at any time")
        return "\n".join(lines)

    def refresh_status(self) -> None:
        self.query_one("#connect-status", Static).update(self.status_text())

    # ------------------------------------------------------------- keys

    def action_change_host(self) -> None:
        field = self.query_one("#connect-host-input", Input)
        field.display = True
        if not field.value:
            field.value = self.host
        field.focus()

    def action_close_host(self) -> None:
        field = self.query_one("#connect-host-input", Input)
        field.display = False
        self.query_one("#connect-host-problem", Static).update("")
        self.set_focus(None)

    def action_retry_now(self) -> None:
        self.app.retry_connect()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        try:
            host = normalize_host(event.value)
        except ValueError as e:
            self.query_one("#connect-host-problem", Static).update(str(e))
            return
        self.action_close_host()
        self.app.retry_connect(host=host)
