"""The rotation engine: one mutation in flight per project, projects in parallel, every reset journaled,
waited for, and reconciled (never retried blindly) when its answer is lost."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Protocol

from neon_tui.neon import NeonClient
from neon_tui.neon.errors import (
    LockedError,
    UnexpectedResponseError,
    NeonError,
    NetworkError,
    NotFoundError,
    OutcomeUnknownError,
    PasswordsNotStoredError,
    RateLimitedError,
    ServerError,
)
from neon_tui.neon.models import TERMINAL_FAILED, Operation
from neon_tui.neon.secret import Secret
from neon_tui.rotation.events import Connection, RotationResult, RunFinished, RunStarted, TargetChanged
from neon_tui.rotation.journal import (
    APPLYING,
    CANCELLED,
    DELIVERED,
    FAILED,
    PLANNED,
    RESETTING,
    ROTATED,
    SKIPPED,
    UNKNOWN,
    Journal,
    JournalState,
    JournalTarget,
    now_wall,
)
from neon_tui.rotation.plan import Plan, Target, TargetKey, connection_uri

log = logging.getLogger("neon_tui.rotation")

Event = RunStarted | TargetChanged | RunFinished
# Reads that fail for these reasons are worth repeating: the answer will come.
TRANSIENT = (NetworkError, RateLimitedError, ServerError, LockedError)
RESUMABLE = frozenset({PLANNED, CANCELLED, RESETTING, UNKNOWN, APPLYING})
LOST_PASSWORD = ("the reset was applied but its new password was lost and this project does not store passwords; "
                 "reset it again (--retry-failed, or r in the app)")


class Sink(Protocol):
    """Somewhere the user chose to send new connection strings."""

    name: str

    async def deliver(self, result: RotationResult) -> None: ...


class OperationFailed(Exception):
    def __init__(self, op: Operation) -> None:
        super().__init__(f"operation {op.action} {op.status}: {op.error or 'no error text'}")
        self.op = op


class RotationEngine:
    """Runs a plan. `run()` is an async iterator of events; `cancel()` stops new resets and lets
    the ones in flight finish."""

    def __init__(
        self,
        client: NeonClient,
        *,
        journal: Journal | None = None,
        sinks: Iterable[Sink] = (),
        host: str | None = None,
        first_poll: float = 1.0,
        poll_min: float = 0.25,
        poll_max: float = 5.0,
        lock_timeout: float = 600.0,
        patience: float = 900.0,
        reconcile_pause: float = 1.0,
        max_resends: int = 2,
        require_delivery: bool = False,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.client = client
        self.journal = journal
        self.sinks = list(sinks)
        self.host = host or client.base_url
        self.first_poll = first_poll
        self.poll_min = poll_min
        self.poll_max = poll_max
        self.lock_timeout = lock_timeout
        self.patience = patience
        self.reconcile_pause = reconcile_pause
        self.max_resends = max_resends
        # With a sink (or a caller that delivers later, like --json), a target is done only once delivered.
        self.require_delivery = require_delivery or bool(self.sinks)
        self._sleep = sleep
        self._cancel = asyncio.Event()
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._durations: deque[float] = deque(maxlen=32)
        self._learned = asyncio.Event()
        self._scout_taken = False
        self._ended = False
        self.states: dict[TargetKey, str] = {}
        self.results: dict[TargetKey, RotationResult] = {}
        self._jt: dict[TargetKey, JournalTarget] = {}

    # ------------------------------------------------------------------ public

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    async def run(
        self, plan: Plan, *, resume: JournalState | None = None, retry_failed: bool = False,
        selectors: list[str] | None = None,
    ) -> AsyncIterator[Event]:
        """Execute the plan (or the rest of a resumed run) and yield events until every target is final."""
        started = time.monotonic()
        requests_before = self.client.requests_sent
        self._cancel.clear()  # a cancel ends one run; continuing the rest is a new, explicit one
        self._prepare(plan, resume, selectors)
        journal_path = str(self.journal.path) if self.journal else ""
        run_id = self.journal.run_id if self.journal else "unjournaled"
        yield RunStarted(run_id, journal_path, len(plan.targets), resumed=resume is not None)
        for t in plan.targets:
            jt = self._jt[t.key]
            yield TargetChanged(t, jt.state, jt.reason, attempt=jt.attempts)
        by_project: dict[str, list[Target]] = {}
        for t in plan.targets:
            by_project.setdefault(t.project_id, []).append(t)
        workers = [asyncio.create_task(self._project_worker(ts, retry_failed), name=f"rotate {pid}")
                   for pid, ts in by_project.items()]
        done = asyncio.ensure_future(asyncio.gather(*workers, return_exceptions=True))
        done.add_done_callback(lambda _: self._queue.put_nowait(None))
        try:
            while True:
                ev = await self._queue.get()
                if ev is None:
                    break
                yield ev
            for r in done.result():
                if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError):
                    log.error("project worker crashed: %s", type(r).__name__)
        finally:
            if not done.done():
                for w in workers:
                    w.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
        counts = self.counts()
        if not self.finish_journal():
            if self.journal:
                self.journal.write("paused", counts=counts, cancelled=self.cancelled)
        yield RunFinished(run_id, counts, self.cancelled, time.monotonic() - started,
                          self.client.requests_sent - requests_before)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for state in self.states.values():
            out[state] = out.get(state, 0) + 1
        return out

    def unfinished(self) -> bool:
        """Something left for --resume: unreconciled resets, unstarted targets, undelivered passwords."""
        return any(s in RESUMABLE or (s == ROTATED and self.require_delivery) for s in self.states.values())

    def finish_journal(self) -> bool:
        """Write the journal's end record (once) if nothing is left to resume; True if the run is complete."""
        if self.unfinished():
            return False
        if self.journal and not self._ended:
            self.journal.write("end", counts=self.counts())
            self._ended = True
        return True

    def mark_delivered(self, key: TargetKey, sink: str) -> None:
        """Record that the user delivered a result by hand (the TUI's copy or keyring actions)."""
        if self.journal:
            self.journal.write("delivered", target=list(key), sink=sink)
        self.states[key] = DELIVERED

    # ------------------------------------------------------------------ set-up

    def _prepare(self, plan: Plan, resume: JournalState | None, selectors: list[str] | None) -> None:
        if resume is not None:
            self._jt = {**self._jt, **resume.targets}
            for t in plan.targets:
                self._jt.setdefault(t.key, JournalTarget(t.key, t.label, t.role_updated_at))
            if self.journal:
                self.journal.write("resumed", counts=resume.counts())
                planned = {t.key for t in plan.targets}
                for key, jt in resume.targets.items():
                    if key not in planned and jt.state in RESUMABLE:
                        # Deleted since (project, branch or role): nothing left to rotate or reconcile.
                        jt.state, jt.reason = FAILED, "no longer exists"
                        self.journal.write("state", target=list(key), state=FAILED, reason=jt.reason)
        else:
            self._jt = {t.key: JournalTarget(t.key, t.label, t.role_updated_at) for t in plan.targets}
            if self.journal:
                self.journal.write(
                    "run", host=self.host, org_id=plan.org_id, selectors=selectors or [],
                    targets=[{"target": list(t.key), "label": t.label, "role_updated_at": t.role_updated_at,
                              "store_passwords": t.store_passwords} for t in plan.targets],
                    skipped=[{"label": s.label, "reason": s.reason} for s in plan.skipped],
                )
        for t in plan.targets:
            self.states[t.key] = self._jt[t.key].state

    # ------------------------------------------------------------------ events and journal

    def _set(self, t: Target, state: str, reason: str | None = None, *, operations: tuple[Operation, ...] = (),
             result: RotationResult | None = None, journal: bool = True, **extra) -> None:
        jt = self._jt[t.key]
        if state == RESETTING:
            jt.attempts += 1
        jt.state, jt.reason = state, reason
        self.states[t.key] = state
        if journal and self.journal:
            fields = {"target": list(t.key), "state": state}
            if reason:
                fields["reason"] = reason
            if operations:
                fields["operations"] = [o.id for o in operations]
            fields.update(extra)
            self.journal.write("state", **fields)
        self._queue.put_nowait(TargetChanged(t, state, reason, operations, result, jt.attempts))

    # ------------------------------------------------------------------ the work

    async def _project_worker(self, targets: list[Target], retry_failed: bool) -> None:
        # One target at a time per project: a reset locks the project until its operations finish.
        for t in targets:
            jt = self._jt[t.key]
            try:
                if jt.state == ROTATED and self.require_delivery and not jt.delivered_to \
                        and t.key not in self.results:
                    # Rotated by a process that died before delivering: read the password back.
                    await self._recover_for_delivery(t)
                    continue
                if jt.state in (ROTATED, DELIVERED, SKIPPED) or (jt.state == FAILED and not retry_failed):
                    continue
                if self._cancel.is_set() and jt.state not in (RESETTING, UNKNOWN, APPLYING):
                    # Cancelled: start nothing new; only finish what may already be in flight.
                    if jt.state in (PLANNED, CANCELLED):
                        self._set(t, CANCELLED, "cancelled before it started")
                    continue
                await self._target(t, jt)
            except asyncio.CancelledError:
                raise
            except NeonError as e:
                self._set(t, FAILED, str(e))
            except Exception as e:  # never let one target's surprise stop the others
                log.error("unexpected error on %s: %s", t.label, type(e).__name__)
                self._set(t, FAILED, f"internal error: {type(e).__name__}")

    async def _target(self, t: Target, jt: JournalTarget) -> None:
        if jt.state in (RESETTING, UNKNOWN, APPLYING):
            # An earlier reset may have landed: find out before anything else is sent.
            if await self._resolve(t, jt):
                return
        elif jt.state == FAILED:
            # An explicit retry: take a fresh baseline so reconciling compares against now.
            role = await self._read(self.client.get_role, t.project_id, t.branch_id, t.role_name)
            jt.role_updated_at = _iso(role.updated_at)
        await self._reset_and_finish(t, jt)

    async def _reset_and_finish(self, t: Target, jt: JournalTarget) -> None:
        deadline = time.monotonic() + self.lock_timeout
        resends = 0
        while True:
            self._set(t, RESETTING, before=jt.role_updated_at, wall=now_wall())
            try:
                res = await self.client.reset_role_password(t.project_id, t.branch_id, t.role_name)
            except LockedError as e:
                # 423 proves nothing was applied; wait for the project's operations, then try again.
                if time.monotonic() > deadline:
                    self._set(t, FAILED, f"project stayed locked for {self.lock_timeout:.0f}s: {e.message}")
                    return
                self._set(t, PLANNED, f"project busy ({e.message}); waiting", journal=False)
                await self._wait_project_idle(t, deadline)
                continue
            except (OutcomeUnknownError, ServerError, UnexpectedResponseError) as e:
                if isinstance(e, ServerError) and e.status == 503:
                    raise  # 503 proves nothing happened, and the client already retried it
                # A lost answer, a gateway error or a garbled 2xx: the reset may have landed. Find out;
                # never send it again blindly.
                self._set(t, UNKNOWN, f"answer lost ({e.message}); reconciling")
                if await self._resolve(t, jt):
                    return
                resends += 1
                if resends > self.max_resends:
                    self._set(t, FAILED, "resets keep getting lost and none landed; check the API, then retry")
                    return
                continue  # proven not applied: sending it again is not a double reset
            self._set(t, APPLYING, operations=res.operations, role_updated_at=_iso(res.role.updated_at))
            try:
                final = await self._wait_ops(t, [o.id for o in res.operations])
            except _OpError:
                raise
            except NeonError as e:
                # Applied, but its operations cannot be confirmed: keep it resumable rather than failed.
                self._set(t, UNKNOWN, f"reset applied; its operations could not be confirmed ({e}); "
                                      "--resume reconciles it")
                return
            assert res.role.password is not None
            await self._finish(t, res.role.password, operations=final)
            return

    async def _resolve(self, t: Target, jt: JournalTarget) -> bool:
        """Reconcile an earlier reset and finish the target if it landed; False if it provably did not."""
        outcome = await self._reconcile(t, jt)
        if outcome is None:
            return True  # ended here: failed or unknown, with the reason set
        if outcome is False:
            return False
        password, ops = outcome
        await self._finish(t, password, operations=ops)
        return True

    async def _reconcile(self, t: Target, jt: JournalTarget):
        """Did an earlier reset land? Returns (password, operations) if it did and the new password is
        live and recoverable, False if it did not land, None if the target ended here (failed or unknown).

        Proof of a reset is the role's updated_at moving past the baseline journaled before it was sent;
        the reset's own operations must then finish, and none of them may have failed.
        """
        role = None
        if jt.state != APPLYING:
            try:
                for pause in (0.0, self.reconcile_pause, 2 * self.reconcile_pause):
                    # A request can still be inside Neon when its answer is lost: look more than once.
                    if pause:
                        await self._sleep(pause)
                    role = await self._read(self.client.get_role, t.project_id, t.branch_id, t.role_name)
                    if _iso(role.updated_at) != jt.role_updated_at:
                        break
                else:
                    return False
            except NotFoundError:
                self._set(t, FAILED, "the role no longer exists on this branch")
                return None
            except NeonError as e:
                self._set(t, UNKNOWN, f"could not check whether the reset landed ({e}); --resume tries again")
                return None
        if jt.operations:
            op_ids = list(jt.operations)
        else:
            # Our reset's operations are the branch's ones created in or after the second the role changed.
            ops, _ = await self._read(self.client.list_operations, t.project_id, limit=50)
            since = role.updated_at.timestamp() - 1 if role is not None and role.updated_at else None
            op_ids = [o.id for o in ops if o.branch_id == t.branch_id and o.created_at is not None
                      and (since is None or o.created_at.timestamp() >= since)]
        try:
            final = await self._wait_ops(t, op_ids)
        except _OpError as e:
            self._set(t, FAILED, f"{e.message}; the new password never took effect and the old one may still "
                                 "work: reset again")
            return None
        except NeonError as e:
            self._set(t, UNKNOWN, f"reset landed; its operations could not be confirmed ({e}); --resume tries again")
            return None
        password = await self._recover(t)
        if password is None:
            self._set(t, FAILED, LOST_PASSWORD)
            return None
        return password, final

    async def _read(self, fn, *args, **kw):
        """A GET that must not give up quickly: once a reset is applied, the new password is in our
        hands and a passing 429 or 5xx while we look at operations must not throw it away."""
        deadline = time.monotonic() + self.patience
        delay = self.poll_min
        while True:
            try:
                return await fn(*args, **kw)
            except TRANSIENT:
                if time.monotonic() > deadline:
                    raise
                await self._sleep(delay)
                delay = min(delay * 2, self.poll_max)

    async def _recover(self, t: Target) -> Secret | None:
        if not t.store_passwords:
            return None
        try:
            return await self._read(self.client.reveal_role_password, t.project_id, t.branch_id, t.role_name)
        except PasswordsNotStoredError:
            return None

    async def _recover_for_delivery(self, t: Target) -> None:
        password = await self._recover(t)
        if password is None:
            self._set(t, FAILED, "rotated, but the new password was lost before delivery and this project does "
                                 "not store passwords; reset it again (--retry-failed)")
            return
        await self._finish(t, password, journal_rotated=False)

    async def _wait_project_idle(self, t: Target, deadline: float) -> None:
        delay = self.poll_min
        while time.monotonic() < deadline:
            ops, _ = await self._read(self.client.list_operations, t.project_id, limit=20)
            if not any(o.status in ("scheduling", "running", "cancelling") for o in ops):
                return
            await self._sleep(delay)
            delay = min(delay * 2, self.poll_max)

    def _estimate(self) -> float | None:
        """How long a reset's operations take, from the ones already seen (p90), or None yet."""
        if not self._durations:
            return None
        ordered = sorted(self._durations)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]

    async def _first_look(self, started: float) -> bool:
        """Sleep until the operations are likely done. Returns True if this waiter is the scout.

        Until one reset's operations have been timed, a single scout polls finely to learn how long
        they take, and every other project waits for that answer instead of guessing: that keeps
        polling near one request per reset even when fifty projects start at once.
        """
        if self._estimate() is None:
            if not self._scout_taken:
                self._scout_taken = True
                await self._sleep(self.first_poll)
                return True
            try:
                await asyncio.wait_for(self._learned.wait(), timeout=self.poll_max * 6)
            except asyncio.TimeoutError:
                pass
        est = self._estimate()
        remaining = (est if est is not None else self.first_poll) - (time.monotonic() - started)
        if remaining > 0:
            await self._sleep(remaining)
        return False

    async def _wait_ops(self, t: Target, op_ids: list[str]) -> tuple[Operation, ...]:
        """Poll (one list request per round) until every operation is terminal; raise on failure."""
        if not op_ids:
            return ()
        started = time.monotonic()
        scout = await self._first_look(started)
        delay = self.poll_min
        try:
            while True:
                sent = time.monotonic()
                ops, _ = await self._read(self.client.list_operations, t.project_id,
                                          limit=max(10, 2 * len(op_ids) + 4))
                by_id = {o.id: o for o in ops}
                for missing in [i for i in op_ids if i not in by_id]:
                    by_id[missing] = await self._read(self.client.get_operation, t.project_id, missing)
                mine = tuple(by_id[i] for i in op_ids)
                bad = [o for o in mine if o.status in TERMINAL_FAILED]
                if bad:
                    raise _OpError(str(OperationFailed(bad[0])))
                if all(o.done for o in mine):
                    # An upper bound (done when this poll left); a scout's fine polling keeps it tight,
                    # and timing from the send, not the answer, keeps the estimate from creeping up.
                    self._durations.append(sent - started)
                    self._learned.set()
                    return mine
                self._set(t, APPLYING, operations=mine, journal=False)
                if scout:
                    await self._sleep(self.poll_min)
                    continue
                await self._sleep(delay)
                delay = min(delay * 2, self.poll_max)
        finally:
            if scout and not self._learned.is_set():
                self._scout_taken = False  # let another waiter learn the timing

    async def _finish(self, t: Target, password: Secret, *, journal_rotated: bool = True,
                      operations: tuple[Operation, ...] = ()) -> None:
        result = build_result(t, password)
        self.results[t.key] = result
        self._set(t, ROTATED, result=result, journal=journal_rotated, operations=operations)
        for sink in self.sinks:
            try:
                await sink.deliver(result)
            except Exception as e:
                # Our own errors say why in words made to be shown; anything else only by its type,
                # since a foreign exception's text could quote what it was handed.
                detail = f"{type(e).__name__}: {e}" if hasattr(e, "title") else type(e).__name__
                why = f"delivery to {sink.name} failed ({detail})"
                if t.store_passwords:
                    # Still rotated and undelivered: --resume reads the password back and delivers it.
                    self._set(t, ROTATED, why + "; --resume delivers it again", result=result)
                else:
                    self._set(t, FAILED, why + "; the project does not store passwords, so reset it again "
                                               "(--retry-failed)", result=result)
                return
            if self.journal:
                self.journal.write("delivered", target=list(t.key), sink=sink.name)
            self._jt[t.key].delivered_to.append(sink.name)
            self._set(t, DELIVERED, f"delivered to {sink.name}", result=result, journal=False)


class _OpError(NeonError):
    title = "Operation failed"


def build_result(t: Target, password: Secret) -> RotationResult:
    """Connection strings from the password reset_password returned (never fetched back from Neon)."""
    ep = t.connect_endpoint
    conns: list[Connection] = []
    if ep is not None:
        for db in t.connection_databases():
            direct = connection_uri(t.role_name, password, ep.host, db.name)
            pooled = connection_uri(t.role_name, password, ep.pooler_host, db.name)
            conns.append(Connection(db.name, direct, pooled, ep.host))
    return RotationResult(t, password, tuple(conns))


def _iso(dt) -> str | None:
    return dt.isoformat() if dt is not None else None


__all__ = ["RotationEngine", "Sink", "build_result"]
