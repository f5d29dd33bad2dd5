"""The rotation engine: one mutation in flight per project, projects in parallel, every reset journaled,
waited for, and reconciled (never retried blindly) when its answer is lost.

The engine owns the state of each target and the journal; where passwords go is not its business: it
hands every password it holds to a `Delivery` (the run session, which owns the sinks) and never drops
one. A circuit breaker (`halt`) stops new resets anywhere while letting those in flight finish.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, Protocol

from neon_tui.neon import NeonClient
from neon_tui.neon.errors import (
    LockedError,
    NeonError,
    NetworkError,
    NotFoundError,
    OutcomeUnknownError,
    PasswordsNotStoredError,
    RateLimitedError,
    ServerError,
    UnexpectedResponseError,
)
from neon_tui.neon.models import TERMINAL_FAILED, Operation
from neon_tui.neon.secret import Secret
from neon_tui.rotation.events import (
    Connection,
    DeliveryFailed,
    Event,
    Halted,
    Released,
    RotationResult,
    RunFinished,
    RunStarted,
    TargetChanged,
)
from neon_tui.rotation.journal import (
    APPLYING,
    CANCELLED,
    DELIVERED,
    FAILED,
    IN_DOUBT,
    PLANNED,
    RESETTING,
    ROTATED,
    SKIPPED,
    UNCONFIRMED,
    UNKNOWN,
    Journal,
    JournalState,
    JournalTarget,
    JournalWriteError,
    TargetState,
    now_wall,
)
from neon_tui.rotation.plan import Plan, Target, TargetKey, connection_uri
from neon_tui.rotation.polling import PollTimer

log = logging.getLogger("neon_tui.rotation")

# Reads that fail for these reasons are worth repeating: the answer will come.
TRANSIENT = (NetworkError, RateLimitedError, ServerError, LockedError)
RESUMABLE = frozenset({PLANNED, CANCELLED, RESETTING, UNKNOWN, APPLYING, UNCONFIRMED})
LOST_PASSWORD = ("the reset was applied but its new password was lost and this project does not store passwords; "
                 "reset it again (--retry-failed, or R in the app)")


class Delivery(Protocol):
    """Where the engine hands every password it holds (the run session implements it)."""

    def needs_password(self, key: TargetKey) -> bool:
        """Does some chosen sink still lack this target's current password?"""

    async def hand_over(self, result: RotationResult) -> None:
        """Deliver to the chosen sinks; never raises (failures trip the breaker and are recorded)."""

    async def settle(self, key: TargetKey) -> None:
        """Mark the target delivered if every chosen sink has its (confirmed) password."""


class SendRefused(Exception):
    """A reset was stopped right before it left: nothing was sent (cancel or circuit breaker)."""


class OperationFailed(Exception):
    def __init__(self, op: Operation) -> None:
        super().__init__(f"operation {op.action} {op.status}: {op.error or 'no error text'}")
        self.op = op


class RotationEngine:
    """Runs a plan. `prepare()` journals it; `run()` is an async iterator of events; `cancel()` stops new
    resets and lets the ones in flight finish; `halt()`/`release()` pause new resets (circuit breaker)."""

    def __init__(
        self,
        client: NeonClient,
        *,
        journal: Journal | None = None,
        delivery: Delivery | None = None,
        host: str | None = None,
        first_poll: float = 1.0,
        poll_min: float = 0.25,
        poll_max: float = 5.0,
        lock_timeout: float = 600.0,
        patience: float = 900.0,
        reconcile_pause: float = 1.0,
        max_resends: int = 2,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.client = client
        self.journal = journal
        self.delivery = delivery
        self.host = host or client.base_url
        self.first_poll = first_poll
        self.poll_min = poll_min
        self.poll_max = poll_max
        self.lock_timeout = lock_timeout
        self.patience = patience
        self.reconcile_pause = reconcile_pause
        self.max_resends = max_resends
        self._sleep = sleep
        self._cancel = asyncio.Event()
        self._released = asyncio.Event()
        self._released.set()
        self._halts: dict[str, str] = {}
        self._announced: set[str] = set()
        self._halted_projects: dict[str, str] = {}
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self.poll_timer = PollTimer(first_poll=first_poll, poll_min=poll_min, poll_max=poll_max)
        self._learned = asyncio.Event()
        self._scout_taken = False
        self._ended = False
        self._workers: list[asyncio.Task] = []
        self.plan: Plan | None = None
        self.states: dict[TargetKey, TargetState] = {}
        self.results: dict[TargetKey, RotationResult] = {}   # passwords handed over (confirmed or not)
        self.in_hand: dict[TargetKey, RotationResult] = {}   # returned by a reset, operations still running
        self._jt: dict[TargetKey, JournalTarget] = {}
        self._targets: dict[TargetKey, Target] = {}
        # Verification: read each role's current (old) password just before its reset, held in memory only
        # (never journaled, never in an event), for the verifier to prove it dead afterwards.
        self.reveal_old = False
        self.old_known: set[TargetKey] = set()  # targets whose old password the caller gave: no read needed
        self.old_passwords: dict[TargetKey, list[Secret]] = {}
        self.old_unread: dict[TargetKey, str] = {}  # why no old password could be read before the reset

    # ------------------------------------------------------------------ public

    def cancel(self) -> None:
        """Start no new reset; those in flight finish (and are handed over)."""
        self._cancel.set()
        self._released.set()

    def abort(self) -> None:
        """Stop now: in-flight work is abandoned; passwords already returned are still handed over
        (marked unconfirmed) before `run()` ends, and the journal keeps the rest resumable."""
        self.cancel()
        for w in self._workers:
            w.cancel()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def halt(self, source: str, reason: str, *, announce: bool = True) -> None:
        """Circuit breaker: no new reset starts anywhere until `release(source)`. `announce=False` closes
        the gate at once without telling the front ends yet (a sink being retried)."""
        self._halts[source] = reason
        self._released.clear()
        if announce and source not in self._announced:
            self._announced.add(source)
            self.emit(Halted(source, reason, self.held()))

    def release(self, source: str) -> None:
        self._halts.pop(source, None)
        if source in self._announced:
            self._announced.discard(source)
            self.emit(Released(source))
        if not self._halts:
            self._released.set()

    @property
    def halts(self) -> dict[str, str]:
        return dict(self._halts)

    def held(self) -> int:
        """Passwords in hand that some chosen sink has not received."""
        return sum(1 for k, s in self.states.items() if s in (ROTATED, UNCONFIRMED) and k in self.results
                   and self.delivery is not None and self.delivery.needs_password(k))

    def record(self, key: TargetKey) -> JournalTarget:
        return self._jt[key]

    def target(self, key: TargetKey) -> Target:
        return self._targets[key]

    def emit(self, event: Event) -> None:
        self._queue.put_nowait(event)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for state in self.states.values():
            out[state] = out.get(state, 0) + 1
        return out

    def unfinished(self) -> bool:
        """Something left for --resume: unreconciled resets, unstarted targets, undelivered passwords."""
        for key, s in self.states.items():
            if s in RESUMABLE:
                return True
            if s == ROTATED and self.delivery is not None and self.delivery.needs_password(key):
                return True
        return False

    async def finish_journal(self) -> bool:
        """Write the journal's end record (once) if nothing is left to resume; True if the run is complete."""
        if self.unfinished():
            return False
        if not self._ended:
            if await self._write("end", counts=self.counts()):
                self._ended = True
            else:
                return False
        return True

    async def prepare(self, plan: Plan, *, resume: JournalState | None = None, selectors: list[str] | None = None,
                      header: dict[str, Any] | None = None) -> None:
        """Take the plan (or an interrupted run's rest) and journal it. Raises JournalWriteError."""
        self.plan = plan
        self._targets.update({t.key: t for t in plan.targets})
        if resume is not None:
            self._jt = {**self._jt, **resume.targets}
            for t in plan.targets:
                self._jt.setdefault(t.key, JournalTarget(t.key, t.label, t.role_updated_at,
                                                         store_passwords=t.store_passwords))
            if self.journal:
                await self.journal.awrite("resumed", counts=resume.counts(), **(header or {}))
            planned = {t.key for t in plan.targets}
            for key, jt in resume.targets.items():
                if key not in planned and jt.state in RESUMABLE:
                    # Deleted since (project, branch or role): nothing left to rotate or reconcile.
                    jt.state, jt.reason = FAILED, "no longer exists"
                    if self.journal:
                        await self.journal.awrite("state", target=list(key), state=str(FAILED), reason=jt.reason)
        else:
            self._jt = {t.key: JournalTarget(t.key, t.label, t.role_updated_at, store_passwords=t.store_passwords)
                        for t in plan.targets}
            if self.journal:
                await self.journal.awrite(
                    "run", host=self.host, org_id=plan.org_id, selectors=selectors or [], **(header or {}),
                    targets=[{"target": list(t.key), "label": t.label, "role_updated_at": t.role_updated_at,
                              "store_passwords": t.store_passwords} for t in plan.targets],
                    skipped=[{"label": s.label, "reason": s.reason} for s in plan.skipped],
                )
        for t in plan.targets:
            self.states[t.key] = self._jt[t.key].state

    async def run(
        self, plan: Plan | None = None, *, resume: JournalState | None = None, retry_failed: bool = False,
        selectors: list[str] | None = None, only: Iterable[TargetKey] | None = None,
    ) -> AsyncIterator[Event]:
        """Execute the prepared plan (preparing it first if needed), or only some of its targets (an
        explicit retry), and yield events until every target is settled for now."""
        if self.plan is None or (plan is not None and plan is not self.plan and only is None):
            assert plan is not None, "run() needs a plan the first time"
            await self.prepare(plan, resume=resume, selectors=selectors)
        assert self.plan is not None
        started = time.monotonic()
        requests_before = self.client.requests_sent
        self._cancel.clear()  # a cancel ends one run; continuing the rest is a new, explicit one
        if self._halts:
            # Still halted (the user stopped at the breaker, or aborted while a sink was being retried):
            # nothing starts until the front end answers again, so ask again.
            self._released.clear()
            self._announced.clear()
            for source, reason in list(self._halts.items()):
                self.halt(source, reason)
        else:
            self._released.set()
        if self._ended:
            # The journal said "end"; what follows must be visible to --resume again.
            self._ended = False
            await self._write("resumed", counts=self.counts())
        wanted = set(only) if only is not None else None
        targets = [t for t in self.plan.targets if wanted is None or t.key in wanted]
        journal_path = str(self.journal.path) if self.journal else ""
        run_id = self.journal.run_id if self.journal else "unjournaled"
        yield RunStarted(run_id, journal_path, len(targets), resumed=resume is not None)
        for t in targets:
            yield self._changed(t)
        by_project: dict[str, list[Target]] = {}
        for t in targets:
            by_project.setdefault(t.project_id, []).append(t)
        if wanted is not None:
            for pid in by_project:
                self._halted_projects.pop(pid, None)  # an explicit retry looks again
        self._workers = [asyncio.create_task(self._project_worker(ts, retry_failed), name=f"rotate {pid}")
                         for pid, ts in by_project.items()]
        done = asyncio.ensure_future(asyncio.gather(*self._workers, return_exceptions=True))
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
            # Aborted with passwords in hand: hand them over (unconfirmed) rather than drop them.
            for key, result in list(self.in_hand.items()):
                await self._unconfirmed(self._targets[key], result,
                                        "stopped before its operations were confirmed")
            # A hand-over the abort interrupted: the sinks that did not get the password get it now
            # (delivering is safe to repeat).
            if self.delivery is not None:
                for key, result in list(self.results.items()):
                    if self.states.get(key) in (ROTATED, UNCONFIRMED) and self.delivery.needs_password(key):
                        await self._hand_over(result)
            while not self._queue.empty():
                ev = self._queue.get_nowait()
                if ev is not None:
                    yield ev
        finally:
            if not done.done():
                for w in self._workers:
                    w.cancel()
                await asyncio.gather(*self._workers, return_exceptions=True)
            self._workers = []
        complete = await self.finish_journal()
        if not complete:
            await self._write("paused", counts=self.counts(), cancelled=self.cancelled)
        yield RunFinished(run_id, self.counts(), self.cancelled, time.monotonic() - started,
                          self.client.requests_sent - requests_before, complete)

    async def set_state(self, key: TargetKey, state: TargetState, reason: str | None = None, *,
                        journal: bool = True, **extra: Any) -> None:
        """Change a target's state (journaled, then announced). For the session's delivery bookkeeping."""
        await self._set(self._targets[key], state, reason, journal=journal, **extra)

    async def note_delivered(self, key: TargetKey, sink: str, detail: str, *, unconfirmed: bool = False) -> None:
        jt = self._jt[key]
        jt.delivered[sink] = detail
        jt.delivery_failed.pop(sink, None)
        await self._write("delivered", target=list(key), sink=sink, detail=detail, unconfirmed=unconfirmed)
        self.emit(self._changed(self._targets[key]))

    async def note_delivery_failed(self, key: TargetKey, sink: str, reason: str) -> None:
        self._jt[key].delivery_failed[sink] = reason
        await self._write("delivery_failed", target=list(key), sink=sink, reason=reason)
        self.emit(DeliveryFailed(key, sink, reason))

    async def note(self, event: str, **fields: Any) -> bool:
        """Journal a run-level record (e.g. the sinks chosen); False if the journal cannot be written."""
        return await self._write(event, **fields)

    # ------------------------------------------------------------------ events and journal

    def _changed(self, t: Target, operations: tuple[Operation, ...] = ()) -> TargetChanged:
        jt = self._jt[t.key]
        return TargetChanged(t, jt.state, jt.reason, operations, self.results.get(t.key), jt.attempts,
                             tuple(jt.delivered))

    async def _write(self, event: str, **fields: Any) -> bool:
        """Journal one record. A journal that cannot be written trips the breaker: no reset starts
        without its record on disk, and the passwords in hand still go to the sinks."""
        if self.journal is None:
            return True
        if self.journal.broken:
            return False
        try:
            await self.journal.awrite(event, **fields)
            return True
        except JournalWriteError as e:
            self.halt("journal", str(e))
            return False

    async def _set(self, t: Target, state: TargetState, reason: str | None = None, *,
                   operations: tuple[Operation, ...] = (), journal: bool = True, **extra: Any) -> None:
        jt = self._jt[t.key]
        if state == RESETTING:
            jt.attempts += 1
            jt.delivered, jt.delivery_failed = {}, {}
            jt.verified = None
            jt.operations = []
        if operations and state in (APPLYING, UNCONFIRMED):
            jt.operations = [o.id for o in operations]
        jt.state, jt.reason = state, reason
        self.states[t.key] = state
        if journal:
            fields: dict[str, Any] = {"target": list(t.key), "state": str(state)}
            if reason:
                fields["reason"] = reason
            if operations:
                fields["operations"] = [o.id for o in operations]
            fields.update(extra)
            await self._write("state", **fields)
        self.emit(self._changed(t, operations))

    # ------------------------------------------------------------------ the gate

    async def _may_start(self) -> bool:
        """Wait while the breaker is open; False if the run was cancelled meanwhile."""
        while self._halts and not self._cancel.is_set():
            self._released.clear()  # set only by release() with no halt left, or by cancel()
            await self._released.wait()
        return not self._cancel.is_set()

    async def _nap(self, seconds: float) -> None:
        """Sleep, but wake at once when the run is cancelled (a Retry-After of a minute must not hold a
        cancel for a minute)."""
        if self._cancel.is_set():
            return
        try:
            await asyncio.wait_for(self._cancel.wait(), timeout=max(0.0, seconds))
        except asyncio.TimeoutError:
            pass

    def _guard(self) -> None:
        # Called by the client right before the reset leaves (after the rate limiter's wait).
        if self._cancel.is_set():
            raise SendRefused("cancelled")
        if self._halts:
            raise SendRefused("; ".join(self._halts.values()))

    def _stop_reason(self) -> str:
        if self._halts:
            return "not started: " + "; ".join(self._halts.values())
        return "cancelled before it started"

    # ------------------------------------------------------------------ the work

    async def _project_worker(self, targets: list[Target], retry_failed: bool) -> None:
        # One target at a time per project: a reset locks the project until its operations finish.
        # Resets in doubt are settled first: nothing new starts in a project before they are accounted for.
        doubt = IN_DOUBT | {UNCONFIRMED}
        for t in sorted(targets, key=lambda t: self._jt[t.key].state not in doubt):
            jt = self._jt[t.key]
            try:
                if jt.state == UNCONFIRMED:
                    await self._recheck(t, jt)
                    continue
                if jt.state == ROTATED and t.key not in self.results and self.delivery is not None:
                    if self.delivery.needs_password(t.key):
                        # Rotated by a process that died before delivering: read the password back.
                        await self._recover_for_delivery(t, jt)
                    else:
                        await self.delivery.settle(t.key)  # died between the last receipt and "delivered"
                    continue
                if jt.state in (ROTATED, DELIVERED, SKIPPED) or (jt.state == FAILED and not retry_failed):
                    continue
                halted = self._halted_projects.get(t.project_id)
                if halted is not None and jt.state not in IN_DOUBT:
                    await self._set(t, CANCELLED, f"not started: {halted}")
                    continue
                if jt.state not in IN_DOUBT and not await self._may_start():
                    await self._set(t, CANCELLED, self._stop_reason())
                    continue
                await self._target(t, jt)
            except asyncio.CancelledError:
                raise
            except NeonError as e:
                await self._set(t, FAILED, str(e))
            except Exception as e:  # never let one target's surprise stop the others
                log.error("unexpected error on %s: %s", t.label, type(e).__name__)
                await self._set(t, FAILED, f"internal error: {type(e).__name__}")
            if self._jt[t.key].state in (UNCONFIRMED, UNKNOWN):
                # A reset we cannot account for: start nothing more in this project until it is checked.
                self._halted_projects[t.project_id] = (f"{t.label} could not be confirmed; "
                                                       "--resume (or R) checks it first")

    async def _target(self, t: Target, jt: JournalTarget) -> None:
        if jt.state in IN_DOUBT:
            # An earlier reset may have landed: find out before anything else is sent.
            if await self._resolve(t, jt):
                return
            halted = self._halted_projects.get(t.project_id)
            if halted is not None:
                await self._set(t, CANCELLED, f"not started: {halted} (the earlier reset did not land)")
                return
            if not await self._may_start():
                await self._set(t, CANCELLED, self._stop_reason() + " (the earlier reset did not land)")
                return
        elif jt.state == FAILED:
            # An explicit retry: take a fresh baseline so reconciling compares against now.
            role = await self._read(self.client.get_role, t.project_id, t.branch_id, t.role_name)
            jt.role_updated_at = _iso(role.updated_at)
        await self._reset_and_finish(t, jt)

    async def _reveal_old(self, t: Target) -> None:
        """One GET (the client's limiter paces it) before the reset; a failure never stops the reset."""
        if not t.store_passwords:
            self.old_unread[t.key] = "the project does not store passwords"
            return
        try:
            old = await self.client.reveal_role_password(t.project_id, t.branch_id, t.role_name)
        except asyncio.CancelledError:
            raise
        except NeonError as e:
            self.old_unread[t.key] = f"could not read it before the reset ({e.title})"
            return
        except Exception as e:
            self.old_unread[t.key] = f"could not read it before the reset ({type(e).__name__})"
            return
        if old:
            held = self.old_passwords.setdefault(t.key, [])
            if old not in held:
                held.append(old)
            self.old_unread.pop(t.key, None)

    async def _reset_and_finish(self, t: Target, jt: JournalTarget) -> None:
        deadline = time.monotonic() + self.lock_timeout
        if self.reveal_old and t.key not in self.old_known and await self._may_start():
            await self._reveal_old(t)
        resends = 0
        backoff = self.poll_min
        while True:
            await self._set(t, RESETTING, before=jt.role_updated_at, wall=now_wall())
            try:
                res = await self.client.reset_role_password(t.project_id, t.branch_id, t.role_name,
                                                            guard=self._guard)
                answered = time.monotonic()  # the operations started at Neon just before this
            except SendRefused:
                jt.attempts -= 1  # never sent
                if not await self._may_start():
                    await self._set(t, CANCELLED, self._stop_reason())
                    return
                await self._set(t, PLANNED, "not sent; continuing")
                continue
            except (LockedError, RateLimitedError) as e:
                # 423 and 429 prove nothing was applied; wait (for the project's operations, or out the
                # rate limit), then try again within the same deadline.
                if time.monotonic() > deadline:
                    await self._set(t, FAILED, f"could not reset for {self.lock_timeout:.0f}s: {e.message}")
                    return
                await self._set(t, PLANNED, f"{'project busy' if isinstance(e, LockedError) else 'rate limited'} "
                                            f"({e.message}); waiting")
                if isinstance(e, LockedError):
                    await self._wait_project_idle(t, deadline)
                else:
                    await self._nap(e.retry_after if e.retry_after is not None else backoff)
                    backoff = min(backoff * 2, self.poll_max)
                if not await self._may_start():
                    await self._set(t, CANCELLED, self._stop_reason())
                    return
                continue
            except (OutcomeUnknownError, ServerError, UnexpectedResponseError) as e:
                if isinstance(e, ServerError) and e.status == 503:
                    raise  # 503 proves nothing happened, and the client already retried it
                # A lost answer, a gateway error or a garbled 2xx: the reset may have landed. Find out;
                # never send it again blindly.
                await self._set(t, UNKNOWN, f"answer lost ({e.message}); reconciling")
                if await self._resolve(t, jt):
                    return
                resends += 1
                if resends > self.max_resends:
                    await self._set(t, FAILED, "resets keep getting lost and none landed; check the API, then retry")
                    return
                if not await self._may_start():
                    await self._set(t, CANCELLED, self._stop_reason() + " (the earlier reset did not land)")
                    return
                continue  # proven not applied: sending it again is not a double reset
            assert res.role.password is not None
            # From here the password is in hand: it is handed over whatever happens next.
            result = build_result(t, res.role.password, confirmed=False)
            self.in_hand[t.key] = result
            await self._set(t, APPLYING, operations=res.operations, role_updated_at=_iso(res.role.updated_at),
                            request_id=_reset_request_id(self.client, t))
            try:
                final = await self._wait_ops(t, [o.id for o in res.operations], started=answered)
            except _OpError:
                self.in_hand.pop(t.key, None)  # never took effect: this password is worthless
                raise
            except NeonError as e:
                # Applied, but its operations cannot be confirmed (key revoked, API gone, garbled answers).
                await self._unconfirmed(t, result, f"its operations could not be confirmed ({e})")
                return
            await self._finish(t, res.role.password, operations=final)
            return

    async def _unconfirmed(self, t: Target, result: RotationResult, why: str) -> None:
        """A password in hand whose operations are not confirmed: handed over, marked unconfirmed."""
        self.in_hand.pop(t.key, None)
        result = dataclasses.replace(result, confirmed=False)
        self.results[t.key] = result
        await self._set(t, UNCONFIRMED, f"reset applied; {why}; the new password is handed over marked "
                                         "unconfirmed and --resume checks it")
        self._halted_projects[t.project_id] = f"{t.label} could not be confirmed; --resume (or R) checks it first"
        await self._hand_over(result)

    async def _recheck(self, t: Target, jt: JournalTarget) -> None:
        """An unconfirmed reset (this process or a journal): did its operations finish after all?"""
        try:
            final = await self._wait_ops(t, list(jt.operations)) if jt.operations else ()
        except _OpError as e:
            self.results.pop(t.key, None)
            await self._set(t, FAILED, f"{e.message}: the password handed over as unconfirmed never took effect "
                                       "and the old one may still work; reset again")
            return
        except NeonError as e:
            await self._set(t, UNCONFIRMED, f"still unconfirmed: its operations could not be read ({e})")
            return
        held = self.results.get(t.key)
        if held is not None:
            await self._finish(t, held.password, operations=final, reason="operations finished: the password "
                                                                         "handed over as unconfirmed is live")
            return
        if self.delivery is not None and self.delivery.needs_password(t.key):
            await self._set(t, ROTATED, "operations finished; reading the password back for the sinks that lack it",
                            operations=final)
            await self._recover_for_delivery(t, jt)
            return
        await self._set(t, ROTATED, "operations finished: the password handed over as unconfirmed is live",
                        operations=final)
        if self.delivery is not None:
            await self.delivery.settle(t.key)

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
                await self._set(t, FAILED, "the role no longer exists on this branch")
                return None
            except NeonError as e:
                await self._set(t, UNKNOWN, f"could not check whether the reset landed ({e}); --resume tries again")
                return None
        try:
            if jt.operations:
                op_ids = list(jt.operations)
            else:
                # Our reset's operations are the branch's ones created in or after the second the role changed.
                ops, _ = await self._read(self.client.list_operations, t.project_id, limit=50)
                since = role.updated_at.timestamp() - 1 if role is not None and role.updated_at else None
                op_ids = [o.id for o in ops if o.branch_id == t.branch_id and o.created_at is not None
                          and (since is None or o.created_at.timestamp() >= since)]
            final = await self._wait_ops(t, op_ids)
        except _OpError as e:
            await self._set(t, FAILED, f"{e.message}; the new password never took effect and the old one may still "
                                       "work: reset again")
            return None
        except NeonError as e:
            await self._set(t, UNKNOWN, f"reset landed; its operations could not be confirmed ({e}); "
                                        "--resume tries again")
            return None
        password = await self._recover(t)
        if password is None:
            await self._set(t, FAILED, LOST_PASSWORD)
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

    async def _recover_for_delivery(self, t: Target, jt: JournalTarget) -> None:
        password = await self._recover(t)
        if password is None:
            had = ", ".join(jt.delivered)
            if had:
                await self._set(t, FAILED, f"rotated and delivered to {had}, but the other chosen sinks never got "
                                           "it and this project does not store passwords: take it from there, or "
                                           "reset again (R in the app, --retry-failed on the command line)")
            else:
                await self._set(t, FAILED, "rotated, but the new password was lost before delivery and this project "
                                           "does not store passwords; reset it again (R in the app, --retry-failed "
                                           "on the command line)")
            return
        result = build_result(t, password)
        self.results[t.key] = result
        self.emit(self._changed(t))
        await self._hand_over(result)

    async def _wait_project_idle(self, t: Target, deadline: float) -> None:
        delay = self.poll_min
        while time.monotonic() < deadline and not self._cancel.is_set():
            ops, _ = await self._read(self.client.list_operations, t.project_id, limit=20)
            if not any(o.status in ("scheduling", "running", "cancelling") for o in ops):
                return
            await self._nap(delay)
            delay = min(delay * 2, self.poll_max)

    def _pressured(self) -> bool:
        """Is the account's per-minute budget the bottleneck (then a poll costs time, lateness does not)?"""
        limiter = getattr(self.client, "limiter", None)
        return bool(limiter is not None and limiter.pressured())

    async def _first_look(self, started: float, learn: bool) -> tuple[bool, float, bool]:
        """Sleep until the first poll is due. Returns (scout, the elapsed time it was planned for, probe).

        Until one reset's operations have been timed, a single scout polls finely to learn how long
        they take, and every other project waits for that answer instead of guessing: that keeps
        polling near one request per reset even when fifty projects start at once.
        """
        timer = self.poll_timer
        scout = False
        if learn and not timer.known:
            if not self._scout_taken:
                self._scout_taken = True
                scout = True
            else:
                try:
                    await asyncio.wait_for(self._learned.wait(), timeout=self.poll_max * 6)
                except asyncio.TimeoutError:
                    pass
        probe = False
        if learn:
            at, probe = timer.plan(pressured=self._pressured())
        else:
            at = timer.hi if timer.hi is not None else self.first_poll
        remaining = at - (time.monotonic() - started)
        if remaining > 0:
            try:
                await self._sleep(remaining)
            except BaseException:
                if probe:
                    timer.abandon()
                raise
        return scout, at, probe

    def _sent_at(self, t: Target, fallback: float) -> tuple[float, float | None]:
        """When the poll that just answered actually left (after the limiter's wait), and its round trip."""
        path = f"/projects/{t.project_id}/operations"
        for rec in reversed(getattr(self.client, "history", ())):
            if rec.method == "GET" and rec.path.endswith(path) and rec.status == 200 and rec.started >= fallback:
                return rec.started, rec.duration
        return fallback, None

    async def _wait_ops(self, t: Target, op_ids: list[str], *, started: float | None = None) -> tuple[Operation, ...]:
        """Poll (one list request per round) until every operation is terminal; raise on failure.

        `started`: when the reset that created them answered. Only such waits teach the poll timer (an
        earlier reset being reconciled has no known start)."""
        if not op_ids:
            return ()
        learn = started is not None
        if started is None:
            started = time.monotonic()
        timer = self.poll_timer
        scout, planned, probe = await self._first_look(started, learn)
        step = self.poll_min
        missed: list[float] = []
        observed = False
        try:
            while True:
                before = time.monotonic()
                ops, _ = await self._read(self.client.list_operations, t.project_id,
                                          limit=max(10, 2 * len(op_ids) + 4))
                sent, rtt = self._sent_at(t, before)
                elapsed = sent - started
                by_id = {o.id: o for o in ops}
                for missing in [i for i in op_ids if i not in by_id]:
                    by_id[missing] = await self._read(self.client.get_operation, t.project_id, missing)
                mine = tuple(by_id[i] for i in op_ids)
                bad = [o for o in mine if o.status in TERMINAL_FAILED]
                if bad:
                    raise _OpError(str(OperationFailed(bad[0])))
                if all(o.done for o in mine):
                    if learn:
                        # `elapsed` is when this poll really left (after any wait in the limiter).
                        timer.observe(elapsed, missed, pressured=self._pressured(), rtt=rtt, probe=probe)
                        observed = True
                        self._learned.set()
                    return mine
                self.emit(self._changed(t, mine))
                if scout:
                    missed.append(elapsed)
                    await self._sleep(self.poll_min)
                    continue
                if learn:
                    missed.append(elapsed)
                    planned, step = timer.after_miss(elapsed, step, pressured=self._pressured())
                    await self._sleep(max(0.0, planned - (time.monotonic() - started)))
                else:
                    await self._sleep(step)
                    step = min(step * 2, self.poll_max)
        finally:
            if scout and not self._learned.is_set():
                self._scout_taken = False  # let another waiter learn the timing
            if probe and not observed:
                timer.abandon()

    async def _finish(self, t: Target, password: Secret, *, operations: tuple[Operation, ...] = (),
                      reason: str | None = None) -> None:
        result = build_result(t, password)
        self.in_hand.pop(t.key, None)
        self.results[t.key] = result
        await self._set(t, ROTATED, reason, operations=operations)
        await self._hand_over(result)

    async def _hand_over(self, result: RotationResult) -> None:
        if self.delivery is None:
            return
        try:
            await self.delivery.hand_over(result)
        except Exception as e:  # the session never raises; if it does, the password still stays in hand
            log.error("hand-over failed: %s", type(e).__name__)


class _OpError(NeonError):
    title = "Operation failed"


def build_result(t: Target, password: Secret, *, confirmed: bool = True) -> RotationResult:
    """Connection strings from the password reset_password returned (never fetched back from Neon)."""
    ep = t.connect_endpoint
    conns: list[Connection] = []
    if ep is not None:
        for db in t.connection_databases():
            direct = connection_uri(t.role_name, password, ep.host, db.name)
            pooled = connection_uri(t.role_name, password, ep.pooler_host, db.name)
            conns.append(Connection(db.name, direct, pooled, ep.host))
    return RotationResult(t, password, tuple(conns), confirmed)


def _reset_request_id(client, t: Target) -> str | None:
    """The request id of the reset that just answered (from the client's request history; evidence for the
    incident report). The path names one role on one branch and the answer has just arrived, so the newest
    successful POST to it is this reset."""
    path = NeonClient._role_path(t.project_id, t.branch_id, t.role_name, "/reset_password")
    for rec in reversed(getattr(client, "history", ())):
        if rec.method == "POST" and rec.path == path and rec.status is not None and rec.status < 400:
            return rec.request_id
    return None


def _iso(dt) -> str | None:
    return dt.isoformat() if dt is not None else None


__all__ = ["Delivery", "RotationEngine", "SendRefused", "build_result"]
