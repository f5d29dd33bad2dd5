"""NeonApp: composes the screens; the client comes from outside (real API, keyring/env key, or the demo)."""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import NamedTuple

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from neon_tui.config import Settings
from neon_tui.neon import NeonClient
from neon_tui.neon.errors import NeonError
from neon_tui.neon.secret import Secret
from neon_tui.paths import stylesheet_path
from neon_tui.rotation.inventory import Inventory
from neon_tui.rotation.journal import Journal, JournalState, find_unfinished
from neon_tui.rotation.plan import Plan
from neon_tui.rotation.session import RunSession
from neon_tui.screens.modals import ApiKeyModal, ErrorModal, HelpModal, QuitModal, ResumeModal

# factory(key) or factory(key, host=URL): the host the user typed on the start-up screen (h).
ClientFactory = Callable[..., NeonClient]
NOTICES_KEPT = 200


class Notice(NamedTuple):
    """One notification the app showed (see NeonApp.notices)."""

    message: str
    severity: str
    title: str = ""
    timeout: float = 0.0  # seconds on screen


class NeonApp(App):
    """The keyboard-first rotation TUI."""

    CSS_PATH = str(stylesheet_path())
    TITLE = "neon-tui"
    BINDINGS = [
        Binding("q", "quit", "Quit", id="quit"),
        Binding("question_mark", "help", "Help", id="help"),
        Binding("at", "command_log", "API log", id="command-log"),
        Binding("K", "open_keys", "API keys", show=False, id="keys"),
        Binding("C", "open_checklist", "Checklist", show=False, id="checklist"),
        Binding("I", "open_ipallow", "IP allow", show=False, id="ipallow"),
        Binding("A", "open_audit", "Audit", show=False, id="audit"),
        Binding("ctrl+p", "command_palette", "Commands", show=False, id="command-palette"),
    ]

    class AccountLoaded(Message):
        """The first organizations and projects are on screen."""

    class RunEnded(Message):
        """A run finished: the tree drops marks of what rotated and reloads the roles it touched."""

        def __init__(self, done: list[tuple[str, str, str]], touched: list[tuple[str, str]]) -> None:
            super().__init__()
            self.done = done
            self.touched = touched

    def __init__(
        self,
        *,
        client: NeonClient | None = None,
        client_factory: ClientFactory | None = None,
        settings: Settings | None = None,
        settings_problem: str | None = None,
        demo: bool = False,
        read_only: bool = False,
        now: Callable[[], datetime] | None = None,
        clipboard=None,
        offer_resume: bool = True,
        env: dict[str, str] | None = None,
        journal_factory: Callable[[], Journal] | None = None,
        monotonic: Callable[[], float] | None = None,
        open_checklist: bool = False,
    ) -> None:
        super().__init__()
        self.client = client
        self.client_factory = client_factory or (lambda key, host=None: NeonClient(key, host=host))
        self.settings = settings or Settings()
        self.settings_problem = settings_problem
        self.demo = demo
        self.read_only = read_only
        self.now = now or (lambda: datetime.now(timezone.utc))
        self.offer_resume = offer_resume
        self.env = os.environ if env is None else env
        self.inventory: Inventory | None = None
        self.journal_factory = journal_factory or Journal.create
        # The run of this app session (at most one): it outlives its screen until every password is out.
        self.session: RunSession | None = None
        # The last exposure scan (neon_tui.rotation.exposure.ExposureReport): its old_passwords() are the leaked
        # passwords each exposed target held, for verifying after a rotation that they are dead.
        self.exposure = None
        self._account: str | None = None
        # The key in use and where it came from (env | keyring | given), for the API keys view's hand-off.
        self.api_key: Secret | None = None
        self.key_source = "given"
        self.started_at = datetime.now(timezone.utc)  # wall time: the demo's checklist counts journals from here
        self.key_sink_spec: str | None = None  # where the keys view stores a rotated key (None: the keyring entry)
        self._key_kind: str | None = None  # personal | organization (GET /auth), for the run journal's header
        self.open_checklist = open_checklist  # start on the incident checklist (neon-tui --checklist, the demo)
        # The API host typed on the start-up screen (h), if any; the client factory's own host otherwise.
        self.api_host: str | None = None
        self._pending_key: tuple[Secret, bool] | None = None  # the key being checked at start-up
        # Screens show elapsed times from this clock; tests freeze it for stable snapshots.
        self.monotonic = monotonic or time.monotonic
        self.startup_notes: list[tuple[str, str]] = []  # (message, severity) said once the app is up
        self.update_header()
        from neon_tui.clipboard import Clipboard

        self.clip = clipboard or Clipboard(self.settings.clipboard_mode, osc52=self.copy_to_clipboard,
                                                clear_after=self.settings.clipboard_clear_after)

    # ------------------------------------------------------------- start-up

    def on_mount(self) -> None:
        if self.settings.keymap:
            self.set_keymap(self.settings.keymap)
        if self.settings_problem:
            self.notify(self.settings_problem, title="Settings", severity="warning", markup=False,
                        timeout=max(self.NOTIFICATION_TIMEOUT, 4 * self.settings_problem.count("\n") + 8))
        self.set_interval(1.0, self._clipboard_tick)
        for note, severity in self.startup_notes:
            self.notify(note, severity=severity, markup=False)  # type: ignore[arg-type]
        self.update_header()
        if self.client is not None:
            self._start_with_client()
            self._fill_key_kind()
            return
        from neon_tui.screens.connect import ConnectScreen

        # Never a blank screen: what start-up is doing is on screen from the first frame, and q quits.
        self.push_screen(ConnectScreen())
        key = self.env.get("NEON_API_KEY", "").strip()
        if key:
            self.key_source = "env"
            self._connect(Secret(key), save=False)
            return
        self._connect_screen().show("Reading the API key from the keyring…")
        self._key_from_keyring()

    # ------------------------------------------------------------- header

    # each kind of key, long and short (the short one when the header is tight)
    KEY_KINDS = {"personal": ("personal key", "personal"), "organization": ("organization key", "org key"),
                 "project": ("project-scoped key", "project key")}

    def header_parts(self) -> list[tuple[str, ...]]:
        """Where the app is pointed, each part as (text, shorter text…): SIMULATED (the demo), the API host
        when it is not Neon's, the organization (or how many), the kind of key, read-only."""
        from neon_tui.neon.client import DEFAULT_HOST

        parts: list[tuple[str, ...]] = []
        if self.demo:
            parts.append(("SIMULATED",))
        host = (self.client.base_url if self.client is not None
                else self.api_host or (self.env.get("NEON_API_HOST") or "").strip())
        if not self.demo and host and host.rstrip("/") != DEFAULT_HOST:
            from urllib.parse import urlsplit

            u = urlsplit(host)
            where = u.netloc.rpartition("@")[2]  # never a user:password written into the URL
            parts.append((where + (u.path if u.path.rstrip("/") not in ("", "/api/v2") else ""),))
        orgs = self.inventory.organizations if self.inventory is not None else None
        if orgs:
            parts.append((orgs[0].name,) if len(orgs) == 1 else (f"{len(orgs)} organizations", f"{len(orgs)} orgs"))
        if self._key_kind:
            parts.append(self.KEY_KINDS.get(self._key_kind, (f"{self._key_kind} key",)))
        if self.read_only:
            parts.append(("read-only",))
        return parts

    def header_text(self, width: int) -> str:
        """The parts, fitted into what the header leaves at this width (its icon and clock space, 18 columns,
        and "neon-tui — ", 11): shorter forms first, then the longest names (host, organization) cut with …;
        never SIMULATED or read-only."""
        budget = max(16, width - 29)
        choices = self.header_parts()
        parts = [c[0] for c in choices]

        def text() -> str:
            return " · ".join(parts)

        for i, c in enumerate(choices):
            if len(text()) > budget and len(c) > 1:
                parts[i] = c[-1]
        fixed = {"SIMULATED", "read-only"}
        for i in sorted(range(len(parts)), key=lambda i: -len(parts[i])):
            over = len(text()) - budget
            if over <= 0:
                break
            if parts[i] in fixed or len(choices[i]) > 1:
                continue
            keep = max(6, len(parts[i]) - over - 1)
            if keep < len(parts[i]):
                parts[i] = parts[i][:keep] + "…"
        out = text()
        return out if len(out) <= budget else out[: budget - 1] + "…"

    def update_header(self) -> None:
        width = self.size.width if self.is_running else 80
        text = self.header_text(width or 80)
        if text != self.sub_title:
            self.sub_title = text

    def on_resize(self) -> None:
        self.update_header()

    def on_neon_app_account_loaded(self, message: AccountLoaded) -> None:
        self.update_header()

    @work(group="header", exit_on_error=False, description="Reading the kind of API key")
    async def _fill_key_kind(self) -> None:
        await self.account_id()
        self.update_header()

    def _connect_screen(self):
        """The start-up screen on the stack (pushed again if a key prompt replaced it)."""
        from neon_tui.screens.connect import ConnectScreen

        screen = next((s for s in self.screen_stack if isinstance(s, ConnectScreen)), None)
        if screen is None:
            screen = ConnectScreen()
            self.push_screen(screen)
        return screen

    @work(group="start", exit_on_error=False, description="Reading the API key from the keyring")
    async def _key_from_keyring(self) -> None:
        from neon_tui import secrets

        key = await asyncio.to_thread(lambda: secrets.load_api_key(allow=self.settings.keyring_allow))
        if key:
            self.key_source = "keyring"
            self._connect(key, save=False)
        else:
            self._ask_key(None)

    def _ask_key(self, problem: str | None) -> None:
        def got(answer: tuple[Secret, bool] | None) -> None:
            if answer is None:
                self.exit(message="No API key given.")
                return
            self._connect(*answer)

        self.push_screen(ApiKeyModal(problem), got)

    def _make_client(self, key: Secret) -> NeonClient:
        """A client for the key, on the host typed at start-up (h) if any, else the factory's own."""
        if self.api_host is not None:
            return self.client_factory(key, host=self.api_host)
        return self.client_factory(key)

    def retry_connect(self, host: str | None = None) -> None:
        """r (now) or a new API host (h) on the start-up screen: start the attempts again."""
        if self.client is not None or self._pending_key is None:
            return
        if host is not None:
            self.api_host = host
            self.update_header()
        self._connect(*self._pending_key)

    @work(group="connect", exclusive=True, exit_on_error=False, description="Checking the API key")
    async def _connect(self, key: Secret, save: bool) -> None:
        """Check the key with GET /auth, one attempt at a time so each shows: the host, attempt n of m, the
        error in one line and the countdown to the next. The attempts and their backoff are the client's
        RetryPolicy; the client's own retries are off meanwhile (they would hide the attempts)."""
        from neon_tui.neon.client import RetryPolicy
        from neon_tui.neon.errors import (AuthenticationError, InsecureTransportError, PermissionDeniedError,
                                          RateLimitedError, TlsError)

        self._pending_key = (key, save)
        screen = self._connect_screen()
        try:
            client = self._make_client(key)
        except InsecureTransportError as e:  # a bad NEON_API_HOST (or typed host): nothing was sent
            screen.show(f"{e.title}: press h to type another host",
                        host=self.api_host or self.env.get("NEON_API_HOST", ""),
                        error=str(e), waiting_for_user=True)
            return
        policy = client.retry
        attempts = max(1, policy.max_attempts)
        client.retry = RetryPolicy(max_attempts=1, base_delay=policy.base_delay, max_delay=policy.max_delay,
                                   max_retry_after=policy.max_retry_after)
        auth = None
        said, rid = "", None  # the last attempt's error stays on screen while the next one runs
        try:
            for attempt in range(1, attempts + 1):
                screen.show("Checking the API key…", host=client.base_url, attempt=attempt, attempts=attempts,
                            error=said, request_id=rid)
                try:
                    auth = await client.get_auth()
                    break
                except (AuthenticationError, PermissionDeniedError) as e:
                    await client.aclose()
                    self._ask_key(f"{e.title}: {e}")
                    return
                except TlsError as e:
                    # A certificate will not change on retry (and TLS verification stays on): say so and wait.
                    screen.show(f"{e.title}: r tries again, h changes the host", host=client.base_url,
                                attempt=attempt, attempts=attempts, error=str(e), waiting_for_user=True)
                    await client.aclose()
                    return
                except NeonError as e:
                    # The error on one line: the host is on its own line, Neon's request id too (when it answered)
                    said = f"{e.title}: {e.message.replace(' at ' + client.base_url, '')}" + (
                        f" (HTTP {e.status})" if e.status is not None else "")
                    rid = e.request_id if e.status is not None else None
                    if attempt == attempts:
                        screen.show(f"Could not connect after {attempts} attempt(s).", host=client.base_url,
                                    attempt=attempt, attempts=attempts, error=said, request_id=rid,
                                    waiting_for_user=True)
                        await client.aclose()
                        return
                    retry_after = e.retry_after if isinstance(e, RateLimitedError) else None
                    delay = policy.delay(attempt, retry_after)
                    screen.show("Checking the API key…", host=client.base_url, attempt=attempt,
                                attempts=attempts, error=said, request_id=rid, retry_in=delay)
                    await asyncio.sleep(delay)
        except asyncio.CancelledError:  # r or a new host started the attempts again
            await client.aclose()
            raise
        finally:
            client.retry = policy
        assert auth is not None
        from neon_tui.incident.actions import key_kind_of

        self._account, self._key_kind = auth.account_id, key_kind_of(auth.auth_method)
        if save:
            from neon_tui import secrets
            from neon_tui.secrets import KeyringUnavailable

            try:
                await asyncio.to_thread(lambda: secrets.store_api_key(key, allow=self.settings.keyring_allow))
                from neon_tui.incident.keys import forget_current

                forget_current()  # the key recorded as the one in the keyring entry is not there any more
                self.notify("API key saved to the OS keyring.")
            except KeyringUnavailable as e:
                self.notify(str(e), title="Not saved", severity="warning", markup=False)
        self.client = client
        self.api_key = key
        self._pending_key = None
        if save:
            self.key_source = "keyring"
        from neon_tui.screens.connect import ConnectScreen

        self.update_header()  # before the start-up screen goes: its header must not be updated while it leaves
        if isinstance(self.screen, ConnectScreen):
            self.pop_screen()
        self._start_with_client()

    def _start_with_client(self) -> None:
        assert self.client is not None
        self.inventory = Inventory(self.client)
        from neon_tui.screens.main import MainScreen

        self.push_screen(MainScreen(self.inventory))
        if self.open_checklist:
            self.action_open_checklist()
        # The demo is a fresh simulated account each time: a journal of an earlier demo (or of a real account)
        # describes other roles, so the demo never offers one; a real account is never offered a demo's.
        if self.offer_resume and not self.read_only and not self.demo:
            self._check_resume()

    async def account_id(self) -> str | None:
        """The Neon account of the key (journaled with each run, so a run is never resumed by another)."""
        if self._account is None and self.client is not None:
            try:
                from neon_tui.incident.actions import key_kind_of

                auth = await self.client.get_auth()
                self._account, self._key_kind = auth.account_id, key_kind_of(auth.auth_method)
            except NeonError:
                return None
        return self._account

    @work(group="start", exit_on_error=False, description="Looking for an interrupted run")
    async def _check_resume(self) -> None:
        assert self.client is not None
        account = await self.account_id()
        found = await asyncio.to_thread(find_unfinished, self.client.base_url, account)
        for problem in found.problems:
            # A damaged journal is named, never silently skipped, and never hides the others.
            self.notify(problem, title="Damaged run journal", severity="warning", timeout=15, markup=False)
        state = found.state
        if state is None:
            return
        counts = state.counts()
        summary = (f"Run {state.run_id}: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) +
                   ".\nTargets whose reset may have been sent are reconciled, never reset twice.")

        def answer(yes: bool | None) -> None:
            if yes:
                self._resume(state)

        self.push_screen(ResumeModal(summary), answer)

    @work(group="start", exit_on_error=False, description="Preparing the resumed run")
    async def _resume(self, state: JournalState) -> None:
        from neon_tui.rotation.resume import plan_for_resume

        assert self.inventory is not None
        plan, gone = await plan_for_resume(self.inventory, state)
        for label in gone:
            self.notify(f"{label} no longer exists", severity="warning", markup=False)
        self.start_run(plan, resume=state)

    # ------------------------------------------------------------- runs

    def read_only_hint(self) -> str:
        """Why enter starts nothing under --read-only, and what to do instead (the copy-as-command key when
        the tree has one)."""
        from neon_tui.screens.main import MainScreen
        from neon_tui.widgets.org_tree import OrgTree

        for cls in (MainScreen, OrgTree):
            for _, binding in cls._merge_bindings():
                if binding.action == "copy_command":
                    key = self.get_key_display(binding)
                    return (f"read-only: nothing is reset here. Press {key} on the tree to copy the "
                            "`neon-tui rotate …` command for the selection, and run it where writes are allowed.")
        return ("read-only: nothing is reset here. Run `neon-tui rotate` with the same selection where writes "
                "are allowed, or start neon-tui without --read-only.")

    def run_screen(self):
        """The run screen on the stack, if any (there is at most one)."""
        from neon_tui.screens.run import RunScreen

        return next((s for s in self.screen_stack if isinstance(s, RunScreen)), None)

    def run_blocks_new_one(self) -> str | None:
        """Why a new run may not start now, or None. Two runs on the same roles could reset each twice
        and the first one's passwords still waiting here would be forgotten: one open run at a time."""
        s = self.session
        if s is None:
            return None
        if s.running:
            return "A run is in progress: wait for it (x cancels it)."
        if s.undelivered():
            return (f"The last run has {len(s.undelivered())} new password(s) not yet copied or stored: "
                    "o opens it.")
        return None

    def start_run(self, plan: Plan, resume: JournalState | None = None,
                  delivery: tuple[str, str] = ("hand", ""), more: str = "") -> None:
        """Open a run session on the plan; `delivery` is ("hand" | "keyring" | "file" | "env", path); `more`:
        further `--deliver` specs, space-separated (any sink the CLI has). A spec that cannot be used, or a
        plan those sinks cannot take, is shown before anything starts."""
        if self.read_only:
            self.notify(self.read_only_hint(), title="Read-only", severity="warning", markup=False)
            return
        why = self.run_blocks_new_one()
        if why is not None:
            self.notify(why, severity="warning", markup=False)
            return
        from neon_tui.rotation.sinks import FileSink, KeyringSink

        assert self.client is not None
        choice, path = delivery
        sinks = []
        if choice == "keyring":
            sinks.append(KeyringSink(self.settings.keyring_allow))
        elif choice == "file":
            sink = FileSink(path)
            sink.may_append = resume is not None and sink.name in resume.sinks  # the file this run made
            sinks.append(sink)
        elif choice == "env":
            from neon_tui.rotation.envfiles import EnvFileSink

            sinks.append(EnvFileSink(path, targets=plan.targets))  # patches the copies in place
        if more.split():
            from neon_tui.rotation.sink_specs import SpecError, build_sinks, plan_problems

            try:
                extra = build_sinks(more.split(), self.settings, taken=[s.name for s in sinks],
                                    appendable=resume.sinks if resume is not None else ())
                problems = plan_problems(extra, plan)
            except SpecError as e:
                problems = [str(e)]
            if problems:
                self.push_screen(ErrorModal("Cannot start the run", "\n".join(problems) + "\n\nNothing was reset."))
                return
            sinks += extra
        from neon_tui.rotation.verify import where_to_verify

        # Verification logs in to each rotated branch: against the demo's PostgreSQL router if its simulator
        # has one, never a fake success on a demo without it ("not verified: no PostgreSQL here").
        route, unavailable = where_to_verify(self.client.base_url, getattr(self, "simulator", None),
                                             simulated=self.demo, environ=dict(self.env))
        # The leaked passwords the exposure scan matched are the old passwords to prove dead on those targets.
        old = self.exposure.old_passwords() if self.exposure is not None else {}
        self.session = RunSession(self.client, plan, sinks=sinks, by_hand=not sinks, resume=resume,
                                  journal_factory=self.journal_factory, account=self._account,
                                  key_kind=self._key_kind,
                                  verify=True, route=route, verify_unavailable=unavailable,
                                  old_passwords={t.key: old[t.key] for t in plan.targets if t.key in old})
        self._open_session(self.session)

    @work(group="start-run", exit_on_error=False, description="Checking where the passwords will go")
    async def _open_session(self, session: RunSession) -> None:
        """Preflight (every sink, the journal) before the run screen opens: a failure resets nothing and
        leaves the user on the review, to choose another way."""
        from neon_tui.rotation.session import SessionError
        from neon_tui.screens.review import ReviewScreen
        from neon_tui.screens.run import RunScreen

        try:
            session.account = session.account or await self.account_id()
            await session.prepare()
        except SessionError as e:
            self.run_failed_to_start(session, e)
            return
        self._env_old_passwords(session)
        while isinstance(self.screen, ReviewScreen):
            self.pop_screen()
        self.push_screen(RunScreen(session))

    def _env_old_passwords(self, session: RunSession) -> None:
        """After preflight: the passwords the .env files held go to verification as old passwords (memory
        only), as `rotate --deliver env:` does; targets with no copy there are named (never a value)."""
        from neon_tui.rotation.journal import CANCELLED, PLANNED

        resume = session.resume_state
        for sink in session.sinks:
            if not hasattr(sink, "old_passwords"):
                continue
            for key, passwords in sink.old_passwords().items():
                state = resume.targets.get(key) if resume is not None else None
                if state is not None and state.state not in (PLANNED, CANCELLED):
                    continue  # its reset may have been sent: the file may hold the new password by now
                for pw in passwords:
                    session.old.add(key, pw)
            missing = sink.uncovered()
            if missing:
                names = ", ".join(t.label for t in missing[:5]) + (f" and {len(missing) - 5} more"
                                                                   if len(missing) > 5 else "")
                self.notify(f"No copy of {names} in {sink.path}: deliver those by hand.",
                            severity="warning", markup=False, timeout=10)

    def run_failed_to_start(self, session: RunSession, error: Exception) -> None:
        """Preflight failed (a sink, the journal): nothing was reset. Say why where the user is."""
        if self.session is session:
            self.session = None
        self.push_screen(ErrorModal("Cannot start the run", f"{error}\n\nNothing was reset."))

    def run_question(self, session: RunSession | None) -> str | None:
        """What quitting would cost, as a question, or None when nothing would be lost."""
        if session is None:
            return None
        if session.running:
            # Counted: what is in hand and not yet at a sink, and of that what Neon cannot give back.
            held, lost = len(session.undelivered()), len(session.lost_on_exit())
            left = sum(1 for v in session.views() if v.state in ("planned", "resetting", "applying"))
            at_risk = ""
            if held:
                at_risk = (f" {held} new password(s) are not delivered to a sink yet"
                           + (f": {lost} of them in projects that do not store passwords are lost for good."
                              if lost else "; Neon stores them, so resuming can read them back."))
            return (f"A run is in progress ({left} target(s) to go).{at_risk} If you leave, resets in flight "
                    "finish and the run is offered for resuming next time (reconciled, never repeated). "
                    "Leave anyway?")
        waiting = session.undelivered()
        if waiting:
            lost = len(session.lost_on_exit())
            extra = (f" {lost} of them are in projects that do not store passwords: those are lost for good."
                     if lost else " Neon stores them, so resuming can read them back.")
            return f"{len(waiting)} new password(s) have not been copied or stored yet.{extra} Leave anyway?"
        return None

    def after_run(self, done: list, touched: list[tuple[str, str]]) -> None:
        from neon_tui.screens.main import MainScreen

        main = next((s for s in self.screen_stack if isinstance(s, MainScreen)), None)
        if main is not None:
            main.after_run(done, touched)
        from neon_tui.screens.checklist import ChecklistScreen

        for screen in self.screen_stack:
            if isinstance(screen, ChecklistScreen):
                screen.refresh_steps()  # a run ended: its journal changed the steps

    def action_open_run(self) -> None:
        """Back to the run (until every password is delivered)."""
        from neon_tui.screens.run import RunScreen

        if self.session is None:
            self.notify("No run in this session.", severity="information")
            return
        run = self.run_screen()
        if run is not None:
            while self.screen is not run:
                self.pop_screen()
            return
        self.push_screen(RunScreen(self.session))

    async def action_quit(self) -> None:
        """q: never drop a run in progress or new passwords nobody has copied without asking."""
        question = self.run_question(self.session)
        if question is None:
            await self._quit()
            return
        session = self.session

        async def answer(yes: bool | None) -> None:
            if yes:
                if session is not None and session.running:
                    # Stop now, but let the run hand over what it holds (to the chosen sinks) and journal
                    # the rest before the process ends; bounded, so quitting never hangs.
                    session.abort()
                    for _ in range(100):
                        if not session.running:
                            break
                        await asyncio.sleep(0.05)
                await self._quit()

        # Asked again while open: a run finishing under the dialog changes what would be lost.
        self.push_screen(QuitModal(lambda: self.run_question(session)), answer)

    def export_screenshot(self, *, title: str | None = None, simplify: bool = False) -> str:
        """Every screenshot (the palette's, action_screenshot, deliver_screenshot) is drawn here: a revealed
        password is masked for it and shown again after."""
        restores = [screen.conceal_secrets() for screen in self.screen_stack if hasattr(screen, "conceal_secrets")]
        try:
            return super().export_screenshot(title=title, simplify=simplify)
        finally:
            for restore in restores:
                restore()

    async def _quit(self) -> None:
        if self.session is not None and not self.session.running and self.session.journal is not None:
            # Passwords that leave with this process and that Neon cannot give back are journaled as lost
            # (failed: reset again), never left looking rotated; the journal is closed off the event loop.
            try:
                await self.session.close()
            except Exception as e:  # quitting must never fail over the journal
                self.log.error(f"closing the run: {type(e).__name__}")
        said = None
        if self.clip.remaining() is not None:
            # Do not leave a connection string behind in the clipboard (or tmux's paste buffers), and say on the
            # way out what was done, or where a copy may remain.
            report = self.clip.clear()
            text = report.message() if report is not None else None
            if text:
                from rich.text import Text

                said = Text(text)  # plain: a tmux buffer name is not markup
        self.exit(message=said)

    # ------------------------------------------------------------- clipboard

    def copy_secret(self, value: Secret, what: str) -> bool:
        """The app's one copy path; says which way it went."""
        from neon_tui.clipboard import ClipboardUnavailable

        try:
            path = self.clip.copy(value)
        except ClipboardUnavailable as e:
            self.notify(str(e), title="Not copied", severity="error", markup=False)
            return False
        left = self.clip.remaining()
        clears = f"; clears in {left:.0f}s" if left else ""
        self.notify(f"Copied {what} via {path}{clears}", markup=False)
        return True

    def clipboard_status(self) -> str:
        left = self.clip.remaining()
        return f"clipboard clears in {left:.0f}s" if left is not None else ""

    def _clipboard_tick(self) -> None:
        left = self.clip.remaining()
        if left is not None and left <= 0:
            report = self.clip.clear()  # never raises; tmux gets at most a couple of seconds
            text = report.message() if report is not None else None
            if text:
                # What was cleared, and where a copy may remain (e.g. a tmux paste buffer): never the value.
                self.notify(text, severity=report.severity, markup=False,
                            timeout=20 if report.copy_may_remain else self.NOTIFICATION_TIMEOUT)
        if left is not None and hasattr(self.screen, "update_status"):
            self.screen.update_status()  # the countdown shows wherever you are

    # ------------------------------------------------------------- global actions

    def action_help(self) -> None:
        """Every key of the current screen (and the app), grouped by binding id, as the user types them."""
        keys: dict[str, list[str]] = {}
        desc: dict[str, str] = {}
        ours: dict[str, bool] = {}
        for active in self.screen.active_bindings.values():
            b = active.binding
            bid = b.id or b.action
            shown = self.get_key_display(b)
            if shown not in keys.setdefault(bid, []):
                keys[bid].append(shown)
            desc.setdefault(bid, (b.tooltip if b.id else "") or b.description or b.action)  # short footer text
            ours[bid] = ours.get(bid, False) or b.id is not None
        # Ours (they have ids, so they can be remapped) first; Textual's own widget keys after.
        rows = sorted(((" ".join(keys[bid]), desc[bid], bid if ours[bid] else "") for bid in keys),
                      key=lambda r: (not r[2], r[2], r[0]))
        self.push_screen(HelpModal(rows, str(self.settings.path or "")))

    def action_open_checklist(self) -> None:
        """C: the incident checklist (Neon's breach FAQ), each step's live state; enter opens a step."""
        from neon_tui.screens.checklist import ChecklistScreen

        existing = next((s for s in self.screen_stack if isinstance(s, ChecklistScreen)), None)
        if existing is not None:
            while self.screen is not existing:
                self.pop_screen()
            existing.refresh_steps()
            return
        self.push_screen(ChecklistScreen())

    def action_command_log(self) -> None:
        from neon_tui.screens.command_log import CommandLogScreen

        if self.screen.__class__.__name__ != "CommandLogScreen":
            self.push_screen(CommandLogScreen())

    def action_open_keys(self) -> None:
        from neon_tui.screens.keys import KeysScreen

        if self.client is None or isinstance(self.screen, KeysScreen):
            return
        self.push_screen(KeysScreen())

    def action_open_ipallow(self) -> None:
        from neon_tui.screens.ipallow import IpAllowScreen

        if self.client is not None and not isinstance(self.screen, IpAllowScreen):
            self.push_screen(IpAllowScreen())

    async def action_open_audit(self) -> None:
        """A: roles, branches, members and project access changed since the leak; drop or keep roles."""
        from neon_tui.screens.audit import AuditScreen

        if self.client is None or isinstance(self.screen, AuditScreen):
            return
        sim = getattr(self, "simulator", None)
        if sim is not None:
            from neon_tui.simulator.leak import demo_leaked_at

            since, why = demo_leaked_at(sim), "the demo's leak time"
        else:
            from neon_tui.incident.audit import default_since

            # the leak time of this API host's and account's exposure scan, never another account's
            since, why = default_since(host=str(self.client.base_url), account=await self.account_id())
        self.push_screen(AuditScreen(since, why))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Help: keys", "Every key on this screen and its id", self.action_help)
        yield SystemCommand("API log", "The API calls made this session", self.action_command_log)
        yield SystemCommand("API keys", "List, revoke and rotate Neon API keys (K)", self.action_open_keys)
        yield SystemCommand("Checklist", "The incident checklist: each step's live state; enter opens it (C)",
                            self.action_open_checklist)
        yield SystemCommand("IP allow", "Review and edit each project's IP Allow list (I)", self.action_open_ipallow)
        yield SystemCommand("Audit", "Roles, branches, members and project access changed since the leak (A)",
                            self.action_open_audit)
        from neon_tui.screens.main import MainScreen
        from neon_tui.screens.run import RunScreen

        if self.session is not None:
            left = len(self.session.undelivered())
            yield SystemCommand("Open run", f"Back to the run {self.session.run_id}"
                                + (f" ({left} password(s) to deliver)" if left else ""), self.action_open_run)
        main = next((s for s in self.screen_stack if isinstance(s, MainScreen)), None)
        if main is not None:
            yield SystemCommand("Review plan", "Review the marked roles", main.action_review)
            yield SystemCommand("Unmark all", "Clear every mark", main.action_unmark_all)
            yield SystemCommand("Filter", "Filter the tree by name or id", main.action_filter)
            yield SystemCommand("Reload account", "Load organizations and projects again", main.action_reload)
            yield SystemCommand("Load leak", "Find and mark every role holding a leaked password (L)",
                                main.action_load_leak)
        run = next((s for s in self.screen_stack if isinstance(s, RunScreen)), None)
        if run is not None:
            yield SystemCommand("Copy all as .env", "A DATABASE_URL and DATABASE_URL_UNPOOLED per target (unique names)",
                                run.action_copy_env)
            yield SystemCommand("Retry failed", "Reset failed targets again", run.action_retry_failed)
            yield SystemCommand("Deliveries", "Targets × sinks: what was delivered where, retry a failed one (D)",
                                run.action_deliver_view)
            yield SystemCommand("Cancel run", "Stop starting resets", run.action_cancel_run)

    # ------------------------------------------------------------- errors

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """One place for what escapes a worker: a clear message, never a traceback."""
        if event.state != WorkerState.ERROR:
            return
        err = event.worker.error
        if isinstance(err, NeonError):
            self.push_screen(ErrorModal(err.title, str(err)))
        elif isinstance(err, (LookupError, ValueError, OSError)):
            self.push_screen(ErrorModal("Error", f"{type(err).__name__}: {err}"))
        else:
            self.push_screen(ErrorModal("Internal error", f"{type(err).__name__} in {event.worker.description}"))

    def _fatal_error(self) -> None:
        # Textual's default crash report prints local variables; ours never does.
        from rich.traceback import Traceback

        self.bell()
        traceback = Traceback(show_locals=False, width=None)
        from rich.segment import Segments

        self._exit_renderables.append(Segments(self.console.render(traceback, self.console.options)))
        self._close_messages_no_wait()

    async def on_unmount(self) -> None:
        if self.client is not None:
            await self.client.aclose()

    async def run_in_thread(self, fn, *args):
        return await asyncio.to_thread(fn, *args)

    # ------------------------------------------------------------- notices

    _notices: deque[Notice] | None = None

    def notify(self, message, *, title: str = "", severity="information", timeout: float | None = None,
               markup: bool = True) -> None:
        """Show a toast, and remember it in `notices`: toasts expire and Textual keeps no public list of them.
        Notifications never carry a secret (a standing rule), so keeping their text is safe."""
        if self._notices is None:  # made on first use, so this feature stays in this one block
            self._notices = deque(maxlen=NOTICES_KEPT)
        self._notices.append(Notice(str(message), severity, title,
                                    self.NOTIFICATION_TIMEOUT if timeout is None else timeout))
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    @property
    def notices(self) -> tuple[Notice, ...]:
        """The notifications this app sent, oldest first (the last NOTICES_KEPT)."""
        return tuple(self._notices or ())


def make_app(*, demo: bool = False, read_only: bool = False, env: dict[str, str] | None = None,
             checklist: bool = False) -> NeonApp:
    """Build the app for the command line: the demo simulator in-process, or the real API."""
    from neon_tui.config import read_settings
    from neon_tui.keymap_check import keymap_problems

    settings, problems = read_settings()
    if settings.path is not None:
        problems += keymap_problems(settings.keymap, where=f"{settings.path}: keymap")
    problem = "\n".join(problems) or None  # every problem, one a line (neon-tui --check-config lists them too)
    if demo:
        from neon_tui.simulator import SimConfig, Simulator

        sim = Simulator(SimConfig(op_seconds=2.0))
        client = NeonClient(sim.api_key, host="https://neon-sim.invalid/api/v2", transport=sim.transport())
        # The demo is an incident drill: it opens on the checklist it follows.
        app = NeonApp(client=client, settings=settings, settings_problem=problem, demo=True, read_only=read_only,
                      env=env, client_factory=lambda key: NeonClient(key, host="https://neon-sim.invalid/api/v2",
                                                                     transport=sim.transport()),
                      open_checklist=True)
        app.simulator = sim  # type: ignore[attr-defined]
        app.key_sink_spec = "memory"  # a rotated demo key stays in memory, never in the user's keyring entry
        from neon_tui.simulator.postgres import start_or_explain

        app.demo_postgres, app.demo_postgres_problem = start_or_explain(sim)  # type: ignore[attr-defined]
        app.startup_notes.append(
            ("Demo: real PostgreSQL behind the simulated account; new passwords are verified by logging in.",
             "information") if app.demo_postgres is not None  # type: ignore[attr-defined]
            else ("Demo: no PostgreSQL here, so new passwords are not verified by logging in.", "warning"))
        return app
    env = os.environ if env is None else env
    host = env.get("NEON_API_HOST")
    return NeonApp(client_factory=lambda key, host=host: NeonClient(key, host=host), settings=settings,
                   settings_problem=problem, read_only=read_only, env=env, open_checklist=checklist)
