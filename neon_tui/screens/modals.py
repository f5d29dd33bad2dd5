"""Small modals: errors, the API key prompt, typed confirmation, resume offer, help."""

from __future__ import annotations

from collections.abc import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Static

from neon_tui.neon.secret import Secret


class ErrorModal(ModalScreen[None]):
    """A title and a plain message (API text is never parsed as markup)."""

    BINDINGS = [Binding("escape,enter", "dismiss", "Close", id="close")]

    def __init__(self, title: str, message: str) -> None:
        super().__init__()
        self.title_text = title
        self.message = message

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog -error"):
            yield Label(self.title_text, classes="dialog-title", markup=False)
            yield Static(self.message, markup=False, classes="dialog-body")
            yield Button("Close", id="close", variant="error")

    def on_button_pressed(self) -> None:
        self.dismiss()

    def action_dismiss(self) -> None:
        self.dismiss()


class ApiKeyModal(ModalScreen[tuple[Secret, bool] | None]):
    """Masked prompt for a Neon API key, optionally saved to the OS keyring."""

    BINDINGS = [Binding("escape", "cancel", "Quit", id="cancel")]

    def __init__(self, problem: str | None = None) -> None:
        super().__init__()
        self.problem = problem

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Neon API key", classes="dialog-title")
            yield Static("NEON_API_KEY is not set and no key is in the keyring. Paste a key (it is not shown).",
                         classes="dialog-body")
            if self.problem:
                yield Static(self.problem, markup=False, classes="dialog-problem")
            yield Input(password=True, placeholder="napi_…", id="key")
            yield Checkbox("Save to the OS keyring", id="save")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Use key", id="ok", variant="primary")
                yield Button("Quit", id="quit")

    def on_input_submitted(self) -> None:
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ok":
            self._submit()
        else:
            self.dismiss(None)

    def _submit(self) -> None:
        field = self.query_one("#key", Input)
        value = field.value.strip()
        field.value = ""  # do not keep the key in a widget longer than needed
        if not value:
            self.notify("Paste an API key first (or Quit).", severity="warning")
            field.focus()
            return
        self.dismiss((Secret(value), self.query_one("#save", Checkbox).value))

    def action_cancel(self) -> None:
        self.dismiss(None)


class TypedConfirmModal(ModalScreen[bool]):
    """Asks the user to type a word before something dangerous (a protected branch)."""

    BINDINGS = [Binding("escape", "cancel", "Back", id="cancel")]

    def __init__(self, question: str, word: str) -> None:
        super().__init__()
        self.question = question
        self.word = word

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog -warning"):
            yield Label("Confirm", classes="dialog-title")
            yield Static(self.question, markup=False, classes="dialog-body")
            yield Static(f"Type {self.word!r} to go on.", markup=False)
            yield Input(placeholder=self.word, id="word")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.value.strip() == self.word:
            self.dismiss(True)
        else:
            self.notify(f"Type {self.word!r} exactly, or esc to go back.", severity="warning", markup=False)

    def action_cancel(self) -> None:
        self.dismiss(False)


class YesNoModal(ModalScreen[bool]):
    """A question with two answers: y or n (esc).

    The safe answer (No, Stay, Not now) has the focus when the dialog opens, so a reflexive enter keeps
    what the question protects; giving it up takes a deliberate y (or moving to the other button).
    An enter that lands before anything has focus means no as well.
    """

    AUTO_FOCUS = "#no"
    BINDINGS = [
        Binding("escape,n", "no", "No", id="answer-no"),
        Binding("y", "yes", "Yes", id="answer-yes"),
        Binding("enter", "no", "No", show=False),  # only reached when no button has focus
    ]

    def __init__(self, title: str, text: str, yes: str = "Yes", no: str = "No") -> None:
        super().__init__()
        self.title_text = title
        self.text = text
        self.yes_label = yes
        self.no_label = no

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog -warning"):
            yield Label(self.title_text, classes="dialog-title", markup=False)
            yield Static(self.text, markup=False, classes="dialog-body")
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.yes_label} (y)", id="yes", variant="warning")
                yield Button(f"{self.no_label} (n)", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_yes(self) -> None:
        self.dismiss(True)

    def action_no(self) -> None:
        self.dismiss(False)


class QuitModal(YesNoModal):
    """The quit question, asked again while it is open: a run that finishes (or delivers) under the dialog
    changes what quitting would lose, and the text follows."""

    NOTHING_LOST = "Nothing would be lost now: no run is in progress and every new password was delivered."

    def __init__(self, question: Callable[[], str | None]) -> None:
        self.question = question
        super().__init__("Quit?", question() or self.NOTHING_LOST, "Quit", "Stay")

    def on_mount(self) -> None:
        self.set_interval(0.25, self.redraw)

    def redraw(self) -> None:
        text = self.question() or self.NOTHING_LOST
        if text != self.text:
            self.text = text
            self.query_one(".dialog-body", Static).update(text)


class ResumeModal(YesNoModal):
    """Offers to finish an interrupted run found in the journal."""

    def __init__(self, summary: str) -> None:
        super().__init__("An interrupted run was found", summary, "Resume", "Not now")


class HelpModal(ModalScreen[None]):
    """Every key of the screen underneath, with the binding ids used for remapping."""

    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close", id="close-help")]

    def __init__(self, rows: list[tuple[str, str, str]], config_path: str) -> None:
        super().__init__()
        self.rows = rows
        self.config_path = config_path

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog -help"):
            yield Label("Keys", classes="dialog-title")
            with VerticalScroll():
                lines = [f"{keys:<14} {desc:<28} {bid}" for keys, desc, bid in self.rows]
                yield Static("\n".join([f"{'key':<14} {'action':<28} id", *lines]), markup=False)
            from neon_tui.paths import config_file

            yield Static(f"Remap in {self.config_path or config_file()} under [keymap]: id = \"keys\"", markup=False,
                         classes="dialog-hint")

    def action_dismiss(self) -> None:
        self.dismiss()


class BreakerModal(ModalScreen[str]):
    """A sink (or the journal) failed mid-run: no new reset starts until the user chooses.

    Answers: "retry" the sink, deliver by "hand" from now on, the "keyring" instead, or "stop".
    """

    BINDINGS = [
        Binding("r", "choose('retry')", "Retry", id="breaker-retry"),
        Binding("h", "choose('hand')", "By hand", id="breaker-hand"),
        Binding("k", "choose('keyring')", "Keyring", id="breaker-keyring"),
        Binding("s,escape", "choose('stop')", "Stop", id="breaker-stop"),
    ]

    def __init__(self, reason: str, held: int, *, can_retry: bool = True) -> None:
        super().__init__()
        self.reason = reason
        self.held = held
        self.can_retry = can_retry

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog -error"):
            yield Label("Delivery stopped the run", classes="dialog-title")
            held = (f"{self.held} new password(s) are held here and have not reached it. " if self.held else "")
            yield Static(f"{self.reason}\n\nNo new reset starts until you choose; resets already in flight finish. "
                         f"{held}Nothing is lost while the app runs.", markup=False, classes="dialog-body")
            with Horizontal(classes="dialog-buttons"):
                if self.can_retry:
                    yield Button("Retry (r)", id="retry", variant="primary")
                    yield Button("By hand (h)", id="hand")
                    yield Button("Keyring (k)", id="keyring")
                yield Button("Stop (s)", id="stop", variant="warning")

    def on_mount(self) -> None:
        self.query_one("#retry" if self.can_retry else "#stop", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id or "stop")

    def action_choose(self, choice: str) -> None:
        if choice != "stop" and not self.can_retry:
            return
        self.dismiss(choice)


class DeliveryModal(ModalScreen[tuple[str, str, str] | None]):
    """Where the new passwords go during a run: by hand (default), the OS keyring, a new file, or the .env
    files under a path, patched in place; plus "more sinks": any `--deliver` specs, space-separated
    (github:OWNER/REPO, vercel:PROJECT, aws-sm:ID, rules, sink:NAME…). Returns (choice, path, more)."""

    BINDINGS = [
        Binding("h", "choose('hand')", "By hand", id="delivery-hand"),
        Binding("k", "choose('keyring')", "Keyring", id="delivery-keyring"),
        Binding("f", "file", "File", id="delivery-file"),
        Binding("e", "env", ".env files", id="delivery-env"),
        Binding("m", "more", "More sinks", id="delivery-more"),
        Binding("escape", "cancel", "Back", id="delivery-back"),
    ]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (32, "-tall")]  # see LeakModal: one-line fields when short

    def __init__(self, current: str = "hand", path: str = "", more: str = "") -> None:
        super().__init__()
        self.current = current
        self.path = path
        self.more = more

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Deliver new passwords to", classes="dialog-title")
            yield Static("h  by hand: copy or store each result (c, w, k, e)\n"
                         "k  the OS keyring, as each target rotates\n"
                         "f  a new file (0600), a line per credential: path, enter\n"
                         "e  Patch .env files in place (a file or a directory): path, enter\n"
                         "m  more sinks too: --deliver specs, space-separated, enter\n\n"
                         "Checked before the first reset. esc goes back.",
                         markup=False, classes="dialog-body")
            yield Input(value=self.path if self.current == "file" else "", placeholder="path of a new file",
                        id="path")
            yield Input(value=self.path if self.current == "env" else "",
                        placeholder="Patch .env files in place: a .env file or a directory", id="env-path")
            yield Input(value=self.more, placeholder="more sinks: github:acme/app vercel:web rules …", id="more")
            with Horizontal(classes="dialog-buttons"):
                yield Button("By hand (h)", id="hand", variant="primary" if self.current == "hand" else "default")
                yield Button("Keyring (k)", id="keyring", variant="primary" if self.current == "keyring" else "default")

    def on_mount(self) -> None:
        self.query_one("#hand" if self.current != "keyring" else "#keyring", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss((event.button.id or "hand", "", self._more()))

    def _more(self) -> str:
        return " ".join(self.query_one("#more", Input).value.split())

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "more":  # keep the main choice, add these sinks
            self.dismiss((self.current, self.path if self.current in ("file", "env") else "", self._more()))
            return
        path = event.value.strip()
        env = event.input.id == "env-path"
        if not path:
            self.notify("Type the path of a .env file or directory (or esc)." if env
                        else "Type the path of a new file (or esc).", severity="warning")
            return
        self.dismiss(("env" if env else "file", path, self._more()))

    def action_choose(self, choice: str) -> None:
        self.dismiss((choice, "", self._more()))

    def action_more(self) -> None:
        self.query_one("#more", Input).focus()

    def action_file(self) -> None:
        self.query_one("#path", Input).focus()

    def action_env(self) -> None:
        self.query_one("#env-path", Input).focus()

    def action_cancel(self) -> None:
        self.dismiss(None)


class LeakModal(ModalScreen["tuple[str, object, bool, object] | None"]):
    """Load what leaked: a file path, or one pasted value (masked), and when it leaked if known. Returns
    ("path", str, probe, leaked_at) or ("paste", Secret, probe, leaked_at) (leaked_at: a UTC datetime or None);
    the pasted value never stays in the widget."""

    BINDINGS = [Binding("escape", "cancel", "Back", id="cancel")]
    # below 32 rows (80x24, a tmux split) the fields lose their borders so the buttons stay on screen
    VERTICAL_BREAKPOINTS = [(0, "-short"), (32, "-tall")]

    def __init__(self, *, sample: bool = False, probe: bool = False) -> None:
        super().__init__()
        self._sample, self._probe = sample, probe

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Load leak: find exposed roles", classes="dialog-title")
            yield Static("A leaked file (.env, connection strings, bare passwords one per line), or paste one "
                         "leaked connection string or password below (it is not shown). Every role on every "
                         "branch is checked; the exposed ones replace the current marks.", classes="dialog-body")
            yield Input(placeholder="path to the leaked file", id="leak-path")
            yield Input(password=True, placeholder="…or paste a leaked URI or password", id="leak-paste")
            yield Input(placeholder="when it leaked, if known (ISO 8601, e.g. 2026-11-30T14:05Z; UTC if no zone)",
                        id="leak-at")
            yield Checkbox("Probe logins where passwords are not stored", self._probe, id="leak-probe")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Scan", id="ok", variant="primary")
                if self._sample:
                    yield Button("Demo's sample leak", id="sample")
                yield Button("Back", id="back")

    def on_input_submitted(self) -> None:
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ok":
            self._submit()
        elif event.button.id == "sample":
            self.query_one("#leak-paste", Input).value = ""
            leaked_at = self._leaked_at()
            if leaked_at is not False:
                self.dismiss(("sample", None, self.query_one("#leak-probe", Checkbox).value, leaked_at))
        else:
            self.dismiss(None)

    def _leaked_at(self):
        """The leak's time (aware UTC datetime), None when not given, False (and a notice) when unreadable."""
        from neon_tui.incident.exposure_log import TimeError, parse_when

        text = self.query_one("#leak-at", Input).value.strip()
        if not text:
            return None
        try:
            return parse_when(text, "When it leaked")
        except TimeError as e:
            self.notify(str(e), severity="warning", markup=False)
            return False

    def _submit(self) -> None:
        leaked_at = self._leaked_at()
        if leaked_at is False:
            return
        path = self.query_one("#leak-path", Input).value.strip()
        paste_field = self.query_one("#leak-paste", Input)
        pasted = paste_field.value.strip()
        paste_field.value = ""
        probe = self.query_one("#leak-probe", Checkbox).value
        if pasted:
            self.dismiss(("paste", Secret(pasted), probe, leaked_at))
        elif path:
            self.dismiss(("path", path, probe, leaked_at))
        else:
            self.notify("Give a file path or paste a leaked value (or esc).", severity="warning")

    def action_cancel(self) -> None:
        self.query_one("#leak-paste", Input).value = ""
        self.dismiss(None)
