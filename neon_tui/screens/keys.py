"""KeysScreen (`K`): the account's Neon API keys, the one in use marked; `R` replaces it through the journaled
hand-off of neon_tui.incident.keys, `x`/space select others and `d` revokes them after a typed confirmation."""

from __future__ import annotations

import asyncio

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Footer, Header, Input, Label, Static

from neon_tui.incident.keys import (
    KeyError_,
    KeyListing,
    KeyringKeySink,
    KeyRotation,
    NeedsConfirmation,
    NeedsPersonalKey,
    find_unfinished_handoffs,
    list_keys,
    revoke_selected,
)
from neon_tui.neon.errors import NeonError
from neon_tui.neon.secret import Secret
from neon_tui.screens.base import NeonScreen
from neon_tui.screens.modals import ErrorModal, TypedConfirmModal, YesNoModal


class PersonalKeyModal(ModalScreen["Secret | None"]):
    """Masked prompt for a personal API key, when the key in use (project-scoped) cannot manage keys."""

    BINDINGS = [Binding("escape", "cancel", "Back", id="cancel")]

    def __init__(self, why: str) -> None:
        super().__init__()
        self.why = why

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog -warning"):
            yield Label("A personal API key is needed", classes="dialog-title")
            yield Static(self.why + "\nIt is used for this only and not stored.", markup=False,
                         classes="dialog-body")
            yield Input(password=True, placeholder="napi_…", id="personal-key")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Use key", id="ok", variant="primary")
                yield Button("Back", id="back")

    def on_input_submitted(self) -> None:
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ok":
            self._submit()
        else:
            self.dismiss(None)

    def _submit(self) -> None:
        field = self.query_one("#personal-key", Input)
        value = field.value.strip()
        field.value = ""
        if not value:
            self.notify("Paste a personal API key first (or esc).", severity="warning")
            return
        self.dismiss(Secret(value))

    def action_cancel(self) -> None:
        self.dismiss(None)


def _when(d) -> str:
    return d.strftime("%Y-%m-%d %H:%M") if d else "never"


class KeysScreen(NeonScreen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="keys-back"),
        Binding("R", "rotate", "Rotate key in use", id="keys-rotate"),
        Binding("x,space", "toggle", "Select", id="keys-select"),
        Binding("d", "revoke", "Revoke selected", id="keys-revoke"),
        Binding("g", "reload", "Reload", id="keys-reload"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.listing: KeyListing | None = None
        self.selected: set[int] = set()
        self.manager_key: Secret | None = None
        self.busy = False
        self.steps: list[str] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Loading API keys…", id="keys-head", markup=False)
        yield DataTable(id="keys-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="keys-progress", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("sel", "in use", "id", "name", "scope", "org / project", "created", "by", "last used",
                          "from")
        table.focus()
        self.load()

    # ---------------------------------------------------------------- listing

    @property
    def _host(self) -> str:
        return self.app.client.base_url

    @work(group="keys", exclusive=True, exit_on_error=False, description="Listing API keys")
    async def load(self) -> None:
        client = self.app.client
        source = getattr(self.app, "key_source", "given")
        listing = await list_keys(client, key_source=source, host=self._host)
        if not listing.can_manage and self.manager_key is not None:
            manager = self.app.client_factory(self.manager_key)
            try:
                listing = await list_keys(client, key_source=source, host=self._host, manager=manager)
            finally:
                await manager.aclose()
        self.listing = listing
        self.selected &= {r.id for r in listing.rows}
        self.show()
        if not listing.can_manage and self.manager_key is None:
            def got(key: Secret | None) -> None:
                if key is not None:
                    self.manager_key = key
                    self.load()
            self.app.push_screen(PersonalKeyModal("The key in use is project-scoped: it cannot list or manage "
                                                  "API keys. A personal key can."), got)

    def show(self) -> None:
        listing = self.listing
        if listing is None:
            return
        table = self.query_one(DataTable)
        table.clear()
        for r in listing.rows:
            table.add_row("x" if r.id in self.selected else "", "● in use" if r.in_use else "", str(r.id), r.name,
                          r.scope, r.project_id or r.org_id or "", _when(r.created_at), r.created_by or "",
                          _when(r.last_used_at), r.last_used_from_addr or "", key=str(r.id))
        how = {"recorded": "recorded by neon-tui", "probe": "a guess (the only key whose last use moved)",
               "named": "named by you", "unknown": "unknown"}[listing.in_use_how]
        lines = [f"{len(listing.rows)} API keys · account {listing.account} · the key in use is {listing.key_kind}; "
                 f"which one: {how}"]
        lines += listing.problems
        if find_unfinished_handoffs(host=self._host):
            lines.append("An interrupted key hand-off exists: R resumes it (finishes or undoes it).")
        self.query_one("#keys-head", Static).update("\n".join(lines))

    def action_reload(self) -> None:
        self.load()

    def _cursor_id(self) -> int | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return int(key.value) if key.value is not None else None

    def action_toggle(self) -> None:
        kid = self._cursor_id()
        if kid is None or self.listing is None:
            return
        if kid == self.listing.in_use_id:
            self.notify("That is the key in use: R replaces it safely.", severity="warning")
            return
        self.selected ^= {kid}
        row = self.query_one(DataTable).cursor_row
        self.show()
        self.query_one(DataTable).move_cursor(row=row)

    # ---------------------------------------------------------------- revoke others

    def action_revoke(self) -> None:
        if self.listing is None or not self.selected or self.busy:
            self.notify("Select keys with x first.", severity="warning")
            return
        ids = sorted(self.selected)
        rows = [self.listing.row(i) for i in ids]
        text = "\n".join(f"  {r.id}  {r.name}  {r.scope}  last used {_when(r.last_used_at)} from "
                         f"{r.last_used_from_addr or '-'}" for r in rows if r is not None)
        warn = "" if self.listing.in_use_id is not None else "\nThe key in use is unknown: make sure none is it."
        question = f"Revoke {len(ids)} key(s)? Revocation is immediate and cannot be undone.\n{text}{warn}"

        def answer(yes: bool | None) -> None:
            if yes:
                self._revoke(ids)

        self.app.push_screen(TypedConfirmModal(question, "revoke"), answer)

    @work(group="keys", exclusive=True, exit_on_error=False, description="Revoking API keys")
    async def _revoke(self, ids: list[int]) -> None:
        assert self.listing is not None
        self.busy = True
        try:
            manager = (self.app.client_factory(self.manager_key)
                       if self.manager_key is not None and self.listing.key_kind == "project" else None)
            client = manager or self.app.client
            try:
                res = await revoke_selected(client, self.listing, ids, host=self._host)
            except KeyError_ as e:
                self.app.push_screen(ErrorModal("Not revoked", str(e)))
                return
            finally:
                if manager is not None:
                    await manager.aclose()
        finally:
            self.busy = False
        if res.revoked:
            self.notify(f"Revoked {len(res.revoked)} key(s): {', '.join(map(str, res.revoked))}.")
        for kid, why in res.failed.items():
            self.notify(f"Revoking key {kid} failed ({why}): it is STILL LIVE.", severity="error", timeout=30,
                        markup=False)
        self.selected -= set(res.revoked)
        self.load()

    # ---------------------------------------------------------------- rotate the key in use

    def action_rotate(self) -> None:
        if self.busy or self.listing is None:
            return
        session = getattr(self.app, "session", None)
        if session is not None and session.running:
            self.notify("A password rotation run is in progress: rotate the API key after it.", severity="warning")
            return
        if getattr(self.app, "key_sink_spec", None) == "memory":
            from neon_tui.incident.keys import abandon_demo_handoffs

            abandoned = abandon_demo_handoffs()
            if abandoned:
                self.notify(f"{len(abandoned)} earlier demo key hand-off(s) did not end; a demo's simulated account "
                            "ends with its session, so they cannot be resumed: closed as abandoned.",
                            severity="warning", timeout=10)
        unfinished = find_unfinished_handoffs(host=self._host)
        if unfinished:
            path = unfinished[-1]

            def answer(yes: bool | None) -> None:
                if yes:
                    self.busy = True
                    self._resume(path)
            self.app.push_screen(YesNoModal(
                "Interrupted key hand-off", f"{path.name} did not end (or left a key live).\n"
                "Resume it now? It finishes the hand-off if the new key was stored, else undoes it.",
                "Resume", "Not now"), answer)
            return
        self._start(named=self.listing.in_use_id if self.listing.in_use_how == "named" else None, confirmed=False)

    def _start(self, *, named: int | None, confirmed: bool) -> None:
        self.busy = True
        self._prepare(named, confirmed)

    def _sink(self):
        # `neon-tui --demo` sets key_sink_spec "memory": the simulated key must never replace the user's real
        # key in the keyring entry.
        from neon_tui.incident.keys import sink_from_spec

        spec = getattr(self.app, "key_sink_spec", None) or "keyring"
        return sink_from_spec(spec, allow=self.app.settings.keyring_allow, demo=spec == "memory")

    def _rotation(self, named: int | None, confirmed: bool) -> KeyRotation:
        return KeyRotation(self.app.client, old_key=getattr(self.app, "api_key", None) or Secret(""),
                           sink=self._sink(), client_factory=self.app.client_factory, host=self._host,
                           key_source=getattr(self.app, "key_source", "given"), manager_key=self.manager_key,
                           old_key_id=named, confirmed=confirmed, progress=self._progress)

    def _progress(self, step: str, message: str) -> None:
        self.steps.append(f"[{step}] {message}")
        self.query_one("#keys-progress", Static).update("\n".join(self.steps[-9:]))

    @work(group="keys", exclusive=True, exit_on_error=False, description="Checking the key in use")
    async def _prepare(self, named: int | None, confirmed: bool) -> None:
        rot = self._rotation(named, confirmed)
        self.steps = []
        try:
            await rot.prepare()
        except NeedsPersonalKey as e:
            await rot.aclose()
            self.busy = False

            def got(key: Secret | None) -> None:
                if key is not None:
                    self.manager_key = key
                    self._start(named=named, confirmed=confirmed)
            self.app.push_screen(PersonalKeyModal(str(e)), got)
            return
        except NeedsConfirmation as e:
            await rot.aclose()
            self.busy = False
            guessed = e.key_id

            def ok(yes: bool | None) -> None:
                if yes:
                    self._start(named=guessed, confirmed=True)
            self.app.push_screen(TypedConfirmModal(f"{e}.\nThis key will be revoked once its successor works.",
                                                   str(guessed)), ok)
            return
        except (KeyError_, NeonError) as e:
            await rot.aclose()
            self.busy = False
            self.app.push_screen(ErrorModal("Cannot rotate the API key", f"{e}\n\nNothing was changed."))
            return
        row = self.listing.row(rot.old_key_id) if self.listing else None
        review = (f"Replace the key in use, {rot.old_key_id}{' (' + row.name + ')' if row else ''}, a {rot.scope} key:\n"
                  f"  1. create a new key (journaled first)\n  2. store it in {rot.sink.describe()}\n"
                  "  3. switch neon-tui to it and prove it works\n  4. revoke the old key with the new one and "
                  "prove it answers 401\nA failure before step 4 puts everything back.")

        def go(yes: bool | None) -> None:
            if yes:
                self._execute(rot)
            else:
                self.busy = False
                self.app.call_later(rot.aclose)
        self.app.push_screen(TypedConfirmModal(review, "rotate"), go)

    @work(group="keys", exclusive=True, exit_on_error=False, description="Resuming a key hand-off")
    async def _resume(self, path) -> None:
        from neon_tui.incident.actions import read_action_journal
        from neon_tui.incident.keys import sink_from_spec

        self.steps = []
        try:
            header = read_action_journal(path).header
            spec = getattr(self.app, "key_sink_spec", None)
            sink = sink_from_spec(str(header.get("sink", "")), allow=self.app.settings.keyring_allow,
                                  demo=spec == "memory")
            env_key = getattr(self.app, "api_key", None) if getattr(self.app, "key_source", "") == "env" else None
            res = await KeyRotation.resume(path, old_key=env_key, sink=sink, client_factory=self.app.client_factory,
                                           host=self._host, manager_key=self.manager_key, progress=self._progress)
        except (KeyError_, NeonError, ValueError) as e:
            self.app.push_screen(ErrorModal("Cannot resume the key hand-off", str(e)))
            return
        finally:
            self.busy = False
        if res.outcome in ("undone", "new_key_dead") and isinstance(sink, KeyringKeySink) and sink.is_default:
            # the undo put the old key back where the app reads it: run on it (the app may have started on
            # the half-made key, which is revoked now)
            old = await asyncio.to_thread(sink.load)
            if old is not None and old != getattr(self.app, "api_key", None):
                client = self.app.client_factory(old)
                try:
                    await client.get_auth()
                except NeonError:
                    await client.aclose()
                else:
                    self._switch_app(client, old)
        self._ended(res)

    @work(group="keys", exclusive=True, exit_on_error=False, description="Handing off to a new API key")
    async def _execute(self, rot: KeyRotation) -> None:
        try:
            res = await rot.execute()
        finally:
            await rot.aclose()
            self.busy = False
        self._ended(res)

    def _ended(self, res) -> None:
        if res.new_client is not None:
            self._switch_app(res.new_client, res.new_key)
        severity = "information" if res.outcome == "rotated" else "error"
        self.notify("\n".join(res.messages), title=f"API key hand-off: {res.outcome}", severity=severity,
                    timeout=30, markup=False)
        if res.outcome == "old_live":
            self.app.push_screen(ErrorModal("Old API key STILL LIVE", "\n".join(res.messages)))
        elif res.outcome == "wrong_key":
            self.app.push_screen(ErrorModal("The API key in use is STILL LIVE", "\n".join(res.messages)))
        elif res.outcome == "new_key_dead":
            self.app.push_screen(ErrorModal("The new API key was revoked by someone else", "\n".join(res.messages)))
        self.load()

    def _switch_app(self, client, key: Secret | None) -> None:
        """Every part of the app that calls the API uses the new key from now on."""
        app = self.app
        old = app.client
        app.client = client
        if key is not None:
            app.api_key = key
        app.key_source = "keyring"
        if app.inventory is not None:
            app.inventory.client = client
        session = getattr(app, "session", None)
        if session is not None and not session.running:
            session.client = client
            session.engine.client = client
        if old is not None and old is not client:
            app.set_timer(30, old.aclose)  # in-flight calls on the old key end (with 401) before it closes
