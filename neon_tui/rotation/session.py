"""RunSession: the one owner of a run (plan, engine, journal, results, delivery), with no front end in it.

The TUI and `neon-tui rotate` are thin front ends over it: they send requests (prepare, run, cancel,
retry, deliver, answer the breaker) and draw the typed events it yields. Neither touches the journal
nor the engine's private state.

Delivery: every password the engine holds is handed to the chosen automatic sinks (stdout last, so a
JSON line can tell where else the password went). A target is "delivered" only when every chosen sink
confirmed it; in "by hand" mode (the TUI without automatic sinks) when the user copied or stored it.
When a sink fails, the breaker opens: no new reset starts anywhere, resets in flight finish and their
passwords go to the other sinks or are held, and the front end decides: retry the sink, replace it,
or stop. The run stays resumable until every password has reached the sinks.

Verification (`verify=True`): once a target's reset operations are confirmed and its password has been
handed over, a background task (bounded concurrency, see verify.Verifier) logs in with the new password
on the direct and pooled strings and tries every known old password, which must be refused. It never
delays delivery; `run()` yields its `TargetVerified` events and ends once the pending ones are done;
cancel/abort/close stop it. Old passwords are held in memory only: read by the engine just before the
reset (projects that store passwords), or given by the caller (`old_passwords`, `leaked`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neon_tui.neon import NeonClient
from neon_tui.neon.errors import NeonError
from neon_tui.rotation.engine import RotationEngine
from neon_tui.neon.secret import Secret
from neon_tui.rotation.events import Event, RotationResult, RunFinished, TargetVerified
from neon_tui.rotation.journal import (
    DELIVERED,
    FAILED,
    ROTATED,
    UNCONFIRMED,
    Journal,
    JournalState,
    JournalWriteError,
    TargetState,
)
from neon_tui.rotation.plan import Plan, Target, TargetKey, connection_uri
from neon_tui.rotation.logins import Route
from neon_tui.rotation.sinks import Receipt, Sink, SinkError
from neon_tui.rotation.verify import OldPasswords, Verification, Verifier, summarize

BY_HAND = "hand"  # the requirement of a run without automatic sinks: the user copies or stores each password
NOT_VERIFIED_CANCELLED = "the run was cancelled before verification"
NOT_VERIFIED_UNCONFIRMED = "operations not confirmed"
NOT_VERIFIED_NOT_HELD = "the new password is not held by this process (resumed run)"
_ENGINE_DONE = object()
_WAKE = object()


class SessionError(Exception):
    """The run cannot start: one line saying why (nothing was reset)."""

    title = "Cannot start the run"


@dataclass(frozen=True, slots=True)
class TargetView:
    """What a front end may know about one target."""

    target: Target
    state: TargetState
    reason: str | None
    delivered: dict[str, str]
    delivery_failed: dict[str, str]
    result: RotationResult | None
    attempts: int
    verification: Verification | None = None  # None: not verified (yet, or verification is off)
    verifying: bool = False                    # a verification is running for it

    @property
    def key(self) -> TargetKey:
        return self.target.key


class RunSession:
    def __init__(
        self,
        client: NeonClient,
        plan: Plan,
        *,
        sinks: Sequence[Sink] = (),
        by_hand: bool = False,
        resume: JournalState | None = None,
        journal_factory: Callable[[], Journal] | None = None,
        account: str | None = None,
        key_kind: str | None = None,
        selectors: Sequence[str] = (),
        delivery_attempts: int = 3,
        delivery_backoff: float = 0.5,
        engine_options: dict[str, Any] | None = None,
        verify: bool = False,
        route: Route | None = None,
        verify_unavailable: str | None = None,
        verifier: Verifier | None = None,
        old_passwords: Mapping[TargetKey, Sequence[Secret]] | None = None,
        leaked: Sequence[Secret] = (),
    ) -> None:
        self.client = client
        self.plan = plan
        # stdout last: a JSON line then says truthfully where else the password went.
        self.sinks: list[Sink] = sorted(sinks, key=lambda s: s.name == "stdout")
        self.by_hand = by_hand and not self.sinks
        self.resume_state = resume
        self.journal_factory = journal_factory or Journal.create
        self.account = account
        self.key_kind = key_kind  # personal | organization | project (from GET /auth), for the incident report
        self.selectors = list(selectors)
        self.delivery_attempts = max(1, delivery_attempts)
        self.delivery_backoff = delivery_backoff
        self.journal: Journal | None = None
        self.engine = RotationEngine(client, delivery=self, **(engine_options or {}))
        self._tripped: dict[str, str] = {}   # sink name -> why it failed (breaker open for it)
        self._retrying: dict[str, int] = {}  # sink name -> deliveries to it being retried right now
        self._prepared = False
        self._runs = 0
        self.finished = False  # the last run() ended (not necessarily complete)
        self.stopped = False
        # Verification. `verify_unavailable` (e.g. "no PostgreSQL here") makes every target "not verified"
        # with that reason and reads no old password (never a fake success, no request spent for nothing).
        self.verifier: Verifier | None = None
        if verify:
            self.verifier = verifier or Verifier(route=route, unavailable=verify_unavailable)
            if verify_unavailable and verifier is not None:
                self.verifier.unavailable = verify_unavailable
        self.engine.reveal_old = self.verifier is not None and not self.verifier.unavailable
        self.old = OldPasswords()
        for key, passwords in (old_passwords or {}).items():
            for pw in passwords:
                self.old.add(tuple(key), pw)
        for pw in leaked:
            if not isinstance(pw, Secret):
                raise TypeError("leaked passwords must be Secrets")
            if pw not in self.old.leaked:
                self.old.leaked.append(pw)
        # A target whose current password the caller already gave (the exposure scan matched it) needs no
        # read before its reset: one request per such target saved.
        self.engine.old_known = set(self.old.per_target)
        self.verifications: dict[TargetKey, Verification] = {}
        self._verified_for: dict[TargetKey, Secret] = {}  # the password each verification was about
        self._verifying: dict[TargetKey, asyncio.Task] = {}
        self._verify_stopped = False
        self._out: asyncio.Queue | None = None

    # ------------------------------------------------------------------ views

    @property
    def run_id(self) -> str:
        return self.journal.run_id if self.journal else "unjournaled"

    @property
    def journal_path(self) -> Path | None:
        return self.journal.path if self.journal else None

    @property
    def required(self) -> list[str]:
        return [BY_HAND] if self.by_hand else [s.name for s in self.sinks]

    @property
    def running(self) -> bool:
        return self._runs > 0

    @property
    def cancelled(self) -> bool:
        return self.engine.cancelled

    @property
    def halts(self) -> dict[str, str]:
        """Why no new reset may start now (sink or journal -> reason); empty when the breaker is closed."""
        return self.engine.halts

    def view(self, key: TargetKey) -> TargetView:
        jt = self.engine.record(key)
        return TargetView(self.engine.target(key), jt.state, jt.reason, dict(jt.delivered), dict(jt.delivery_failed),
                          self.engine.results.get(key), jt.attempts, self.verifications.get(key),
                          key in self._verifying)

    def views(self) -> list[TargetView]:
        return [self.view(t.key) for t in self.plan.targets]

    def result(self, key: TargetKey) -> RotationResult | None:
        return self.engine.results.get(key)

    def counts(self) -> dict[str, int]:
        return self.engine.counts()

    def needs_password(self, key: TargetKey) -> bool:
        """Delivery protocol: does a chosen sink still lack this target's password?"""
        jt = self.engine.record(key)
        if self.by_hand:
            return not jt.delivered
        return any(name not in jt.delivered for name in self.required)

    def undelivered(self) -> list[TargetKey]:
        """Passwords in hand that have not reached every chosen sink (lost if this process ends)."""
        return [k for k in self.engine.results
                if self.engine.states.get(k) in (ROTATED, UNCONFIRMED) and self.needs_password(k)]

    def lost_on_exit(self) -> list[TargetKey]:
        """Of those, the ones Neon cannot give back (projects that do not store passwords)."""
        return [k for k in self.undelivered() if not self.engine.target(k).store_passwords]

    @property
    def complete(self) -> bool:
        return not self.engine.unfinished()

    @property
    def verify(self) -> bool:
        return self.verifier is not None

    def verification_counts(self) -> dict[str, int]:
        return summarize(self.verifications.get(t.key) for t in self.plan.targets)

    def alarms(self) -> list[TargetKey]:
        """Targets whose old password still logs in after their reset's operations finished."""
        return [t.key for t in self.plan.targets if (v := self.verifications.get(t.key)) is not None and v.alarm]

    # ------------------------------------------------------------------ lifecycle

    async def prepare(self) -> None:
        """Everything that can fail before a reset: sinks' preflight, the journal. Raises SessionError."""
        if self._prepared:
            return
        if not self.sinks and not self.by_hand:
            lost = sorted({t.project_name for t in self.plan.targets if not t.store_passwords})
            if lost:
                raise SessionError(f"{', '.join(lost)} do(es) not store passwords: with no sink the new passwords "
                                   "would reach nobody; choose where they go (--deliver)")
        for sink in self.sinks:
            try:
                await sink.preflight()
            except SinkError as e:
                raise SessionError(f"{sink.name}: {e}") from None
        try:
            if self.resume_state is not None:
                self.journal = await asyncio.to_thread(Journal, self.resume_state.path)
            else:
                self.journal = await asyncio.to_thread(self.journal_factory)
            self.engine.journal = self.journal
            from neon_tui.incident.actions import operator

            header = {"account": self.account, "key_kind": self.key_kind, "operator": operator(),
                      "sinks": self.required}
            await self.engine.prepare(self.plan, resume=self.resume_state, selectors=self.selectors, header=header)
            for t in self.plan.targets:  # verdicts an earlier process journaled for the current password
                verified = self.engine.record(t.key).verified
                if verified and t.key not in self.verifications:
                    try:
                        self.verifications[t.key] = Verification.from_json(verified)
                    except (KeyError, TypeError, ValueError):
                        pass
            if self.resume_state is not None and self.resume_state.sinks != self.required:
                await self.journal.awrite("sinks", sinks=self.required)
        except JournalWriteError as e:
            raise SessionError(str(e)) from None
        self._prepared = True

    async def run(self, *, retry_failed: bool = False, only: Iterable[TargetKey] | None = None) -> AsyncIterator[Event]:
        """Run (or continue) the plan; yields events until every target is settled for now."""
        await self.prepare()
        self._runs += 1
        self.finished = False
        self.stopped = False
        self._verify_stopped = False
        started = time.monotonic()
        out: asyncio.Queue = asyncio.Queue()
        self._out = out
        resume = self.resume_state if self._runs == 1 else None

        async def pump() -> None:
            # The engine's events and the verifications' go through one queue, in the order they happen.
            try:
                async for ev in self.engine.run(self.plan, resume=resume, retry_failed=retry_failed,
                                                selectors=self.selectors, only=only):
                    out.put_nowait(ev)
            finally:
                out.put_nowait(_ENGINE_DONE)

        pumping = asyncio.create_task(pump(), name="run session")
        finished: RunFinished | None = None
        engine_done = False
        try:
            self._verify_again()
            while not (engine_done and not self._verifying and out.empty()):
                ev = await out.get()
                if ev is _WAKE:
                    continue
                if ev is _ENGINE_DONE:
                    engine_done = True
                    await pumping  # raises what the engine raised
                    await self._verify_leftovers()
                    continue
                if isinstance(ev, RunFinished):
                    finished = ev  # last, once the verifications are done too
                    continue
                yield ev
            if finished is not None:
                yield dataclasses.replace(finished, elapsed=time.monotonic() - started,
                                          verification=self.verification_counts())
        finally:
            if not pumping.done():
                pumping.cancel()
                await asyncio.gather(pumping, return_exceptions=True)
            if self._out is out:
                self._out = None
            self._runs -= 1
            self.finished = True

    def retryable(self) -> list[TargetKey]:
        return [k for k, s in self.engine.states.items() if s in (FAILED, TargetState.CANCELLED, UNCONFIRMED)
                or (s == TargetState.UNKNOWN)]

    async def retry(self) -> AsyncIterator[Event]:
        """Reset failed targets again (explicit), start cancelled ones, re-check unconfirmed and unknown ones."""
        async for ev in self.run(retry_failed=True, only=self.retryable()):
            yield ev

    def cancel(self) -> None:
        self.engine.cancel()
        self._stop_verifying()

    def abort(self) -> None:
        self.engine.abort()
        self._stop_verifying()

    def stop(self) -> None:
        """Answer to the breaker: start nothing more; the run stays resumable."""
        self.stopped = True
        self.engine.cancel()

    async def close(self) -> None:
        """The process is about to end: passwords that will be gone with it are journaled as failed
        (their projects do not store passwords), so --resume --retry-failed resets them again."""
        self._stop_verifying()
        if self._verifying:
            await asyncio.gather(*self._verifying.values(), return_exceptions=True)
        for key in self.lost_on_exit():
            await self.engine.set_state(key, FAILED, "the new password never reached the chosen sinks and this "
                                                     "project does not store passwords: it is lost; reset it again "
                                                     "(--resume --retry-failed)")
        await self.engine.finish_journal()
        if self.journal is not None:
            await asyncio.to_thread(self.journal.close)
        for sink in self.sinks:
            closer = getattr(sink, "close", None)
            if closer is not None:
                closer()

    # ------------------------------------------------------------------ the breaker

    async def retry_sink(self, name: str) -> None:
        """Try a failed sink again: preflight, then deliver everything it lacks. Raises SinkError."""
        sink = next(s for s in self.sinks if s.name == name)
        await sink.preflight()
        self._tripped.pop(name, None)
        await self._deliver_held()
        if name in self._tripped:
            # Its probe works but deliveries still fail: the breaker stays open, and the caller must know.
            raise SinkError(f"still failing: {self._tripped[name]}")
        self.engine.release(name)

    async def replace_sink(self, name: str, new: Sink | None) -> None:
        """Swap a failed sink for another (None: by hand from now on) and deliver what it lacks."""
        if new is not None:
            await new.preflight()
        self.sinks = [s for s in self.sinks if s.name != name]
        if new is not None:
            self.sinks.append(new)
            self.sinks.sort(key=lambda s: s.name == "stdout")
        elif not self.sinks:
            self.by_hand = True
        self._tripped.pop(name, None)
        await self.engine.note("sinks", sinks=self.required)
        await self._deliver_held()
        for key in list(self.engine.results):
            await self.settle(key)
        self.engine.release(name)

    async def retry_delivery(self, key: TargetKey, sink_name: str) -> Receipt:
        """Deliver one target's held password to one chosen sink again (journaled like any delivery).
        Raises SinkError saying why when there is nothing to deliver or the sink still fails. A sink whose
        breaker is open is released once no held password still lacks it."""
        sink = next((s for s in self.sinks if s.name == sink_name), None)
        if sink is None:
            raise SinkError(f"{sink_name} is not a sink of this run")
        result = self.engine.results.get(key)
        if result is None:
            raise SinkError("this process does not hold a new password for this target (not rotated here, "
                            "or a resumed run): nothing to deliver")
        receipt = await self._deliver_or_trip(sink, result)
        if receipt is None:
            raise SinkError(self._tripped[sink.name])
        await self.settle(key)
        if sink.name in self._tripped and not any(
                sink.name in self.engine.record(k).delivery_failed for k in self.undelivered()):
            self._tripped.pop(sink.name, None)
            self.engine.release(sink.name)
        return receipt

    async def _deliver_or_trip(self, sink: Sink, result: RotationResult) -> Receipt | None:
        """One delivery, journaled. On failure the sink's breaker opens (announced, never a silent halt) and
        None is returned; the reason is in `_tripped`."""
        key = result.target.key
        try:
            receipt = await self._deliver(sink, result)
        except Exception as e:
            reason = _why(sink, e)
            # Trip first (no await in between): the gate must not open while the failure is journaled.
            self._tripped[sink.name] = reason
            self.engine.halt(sink.name, f"delivery to {sink.name} failed: {reason}")
            await self.engine.note_delivery_failed(key, sink.name, reason)
            return None
        await self.engine.note_delivered(key, sink.name, receipt.detail, unconfirmed=not result.confirmed)
        return receipt

    async def _deliver_held(self) -> None:
        for key in self.undelivered():
            await self.hand_over(self.engine.results[key])

    # ------------------------------------------------------------------ delivery (the engine calls these)

    async def hand_over(self, result: RotationResult) -> None:
        """Give one password to every chosen sink that lacks it. Never raises."""
        key = result.target.key
        jt = self.engine.record(key)
        for sink in list(self.sinks):
            if sink.name in jt.delivered:
                continue
            if sink.name in self._tripped:
                continue  # held for it until the user decides
            await self._deliver_or_trip(sink, result)
        await self.settle(key)
        self._schedule_verify(result)
        if self.engine.states[key] == ROTATED and self.needs_password(key) and not self.by_hand:
            missing = [n for n in self.required if n not in jt.delivered]
            await self.engine.set_state(key, ROTATED, f"held: not yet delivered to {', '.join(missing)}")

    async def _deliver(self, sink: Sink, result: RotationResult) -> Receipt:
        """Deliver with a few quick retries (deliver() is safe to repeat). From the first failure on, no
        new reset starts anywhere while this sink is being retried; the gate opens again only when no
        delivery to the sink is failing any more (a final failure trips the sink and keeps it shut)."""
        delay = self.delivery_backoff
        counted = delivered = False
        try:
            for attempt in range(1, self.delivery_attempts + 1):
                try:
                    receipt = _checked(await sink.deliver(result), result)
                except Exception as e:
                    if attempt == self.delivery_attempts:
                        raise
                    if not counted:
                        counted = True
                        self._retrying[sink.name] = self._retrying.get(sink.name, 0) + 1
                    self.engine.halt(sink.name, f"delivery to {sink.name} failed ({_why(sink, e)}); retrying",
                                     announce=False)
                    await asyncio.sleep(delay)
                    delay *= 2
                    continue
                delivered = True
                return receipt
            raise AssertionError("unreachable")
        finally:
            if counted:  # also when an abort cancelled us mid-retry: the count must not stick
                self._retrying[sink.name] -= 1
            if delivered and not self._retrying.get(sink.name) and sink.name not in self._tripped \
                    and sink.name in self.engine.halts:
                self.engine.release(sink.name)  # it works: no delivery to it is failing any more

    async def settle(self, key: TargetKey) -> None:
        """Delivered once every chosen sink has the (confirmed) password."""
        state = self.engine.states.get(key)
        if state != ROTATED or self.needs_password(key):
            return
        jt = self.engine.record(key)
        if not self.required and not self.by_hand:
            return  # --deliver none: rotated, and nobody was meant to receive it here
        await self.engine.set_state(key, DELIVERED, "delivered to " + ", ".join(jt.delivered))
        await self.engine.finish_journal()

    async def deliver_by_hand(self, keys: Sequence[TargetKey], sink: Sink) -> list[Receipt]:
        """The user hands passwords over (copy, keyring, .env block). Raises SinkError; records receipts."""
        results = [self.engine.results[k] for k in keys if k in self.engine.results]
        if not results:
            raise SinkError("no new password for this target (yet)")
        await sink.preflight()
        many = getattr(sink, "deliver_many", None)
        receipts = await many(results) if many is not None else [await sink.deliver(r) for r in results]
        receipts = [_checked(receipt, r) for receipt, r in zip(receipts, results)]
        for r, receipt in zip(results, receipts):
            key = r.target.key
            await self.engine.note_delivered(key, receipt.sink, receipt.detail, unconfirmed=not r.confirmed)
            if sink.name in self._tripped:
                self._tripped.pop(sink.name, None)
                self.engine.release(sink.name)
            await self.settle(key)
        return receipts


    # ------------------------------------------------------------------ verification

    def _schedule_verify(self, result: RotationResult) -> None:
        """Verify a confirmed password in the background (never awaited by delivery)."""
        key = result.target.key
        if self.verifier is None or not result.confirmed:
            return
        if self.engine.states.get(key) not in (ROTATED, DELIVERED):
            return
        if key in self._verifying or self._verified_for.get(key) == result.password:
            return  # already being verified, or verified, for this very password
        settled = self.verifier.settled(result.target)
        if settled is not None:
            # Nothing to log in to (no endpoint, no PostgreSQL here): the verdict is known now and a cancel
            # arriving before a task could run must not turn it into "cancelled". Journaled in the background.
            self._record_now(key, settled, result.password)
            self._verifying[key] = asyncio.create_task(self._journal_settled(key, settled),
                                                       name=f"verified {result.target.label}")
            return
        if self._verify_stopped:
            self._record_now(key, Verification.not_verified(NOT_VERIFIED_CANCELLED), result.password)
            return
        self._verifying[key] = asyncio.create_task(self._verify(result), name=f"verify {result.target.label}")

    async def _verify(self, result: RotationResult) -> None:
        t = result.target
        key = t.key
        assert self.verifier is not None
        try:
            conn = result.primary
            uris: list[tuple[str, Secret]] = []
            if conn is not None:
                uris.append(("direct", conn.direct))
                if conn.pooled is not None:
                    uris.append(("pooled", conn.pooled))
            verdict = await self.verifier.verify(t, uris, self._old_for(key), database=conn.database if conn else None,
                                                 old_missing=self._old_missing(t))
            self._record_now(key, verdict, result.password)
            await self._journal_verdict(key, verdict)
        except asyncio.CancelledError:
            if self._verified_for.get(key) != result.password:
                self._record_now(key, Verification.not_verified(NOT_VERIFIED_CANCELLED), result.password)
            raise
        except Exception as e:  # never let a verification's surprise touch the run
            self._record_now(key, Verification.not_verified(f"verification error ({type(e).__name__})"),
                             result.password)
        finally:
            if self._verifying.get(key) is asyncio.current_task():
                del self._verifying[key]
            if self._out is not None:
                self._out.put_nowait(_WAKE)

    async def _journal_settled(self, key: TargetKey, verdict: Verification) -> None:
        try:
            await self._journal_verdict(key, verdict)  # a journal that cannot be written trips the engine's breaker
        finally:
            if self._verifying.get(key) is asyncio.current_task():
                del self._verifying[key]
            if self._out is not None:
                self._out.put_nowait(_WAKE)

    def _old_for(self, key: TargetKey) -> list[Secret]:
        out = list(self.engine.old_passwords.get(key, ()))
        for pw in self.old.for_target(key):
            if pw not in out:
                out.append(pw)
        return out

    def _old_missing(self, t: Target) -> str:
        why = self.engine.old_unread.get(t.key)
        if why is not None:
            return f"old password unknown: {why}, and none was given"
        if not t.store_passwords:
            return "old password unknown: the project does not store passwords, and none was given"
        return "old password unknown: not read before the reset (an earlier process sent it), and none was given"

    def _record_now(self, key: TargetKey, verdict: Verification, password: Secret | None) -> None:
        """In memory and announced at once (no await): a cancel right after cannot lose it."""
        self.verifications[key] = verdict
        if password is not None:
            self._verified_for[key] = password
        else:
            self._verified_for.pop(key, None)
        self.engine.record(key).verified = verdict.to_json()
        if self._out is not None:
            self._out.put_nowait(TargetVerified(self.engine.target(key), verdict))

    async def _journal_verdict(self, key: TargetKey, verdict: Verification) -> None:
        await self.engine.note("verified", target=list(key), verification=verdict.to_json())

    def _stop_verifying(self) -> None:
        self._verify_stopped = True
        for task in list(self._verifying.values()):
            task.cancel()

    def _verify_again(self) -> None:
        """A new run: verify what a cancel interrupted (its password still in hand)."""
        for key, result in list(self.engine.results.items()):
            v = self.verifications.get(key)
            if v is not None and v.new_reason == NOT_VERIFIED_CANCELLED:
                self._verified_for.pop(key, None)
                self._schedule_verify(result)

    async def _verify_leftovers(self) -> None:
        """The engine is done: say why the rotated targets without a verdict were not verified (or check
        the old passwords of resumed ones whose new password this process does not hold)."""
        if self.verifier is None:
            return
        for t in self.plan.targets:
            key = t.key
            state = self.engine.states.get(key)
            if key in self.verifications or key in self._verifying:
                continue
            if state == UNCONFIRMED:
                verdict = Verification.not_verified(NOT_VERIFIED_UNCONFIRMED)
            elif state in (ROTATED, DELIVERED) and key not in self.engine.results:
                olds = self._old_for(key)
                if (olds or t.store_passwords) and not self._verify_stopped:
                    self._verifying[key] = asyncio.create_task(self._verify_old_only(t, olds))
                    continue
                verdict = Verification.not_verified(NOT_VERIFIED_NOT_HELD)
            else:
                continue
            self._record_now(key, verdict, None)
            await self._journal_verdict(key, verdict)

    async def _revealed_uris(self, t: Target) -> list[tuple[str, Secret]] | None:
        """A resumed target's current password, where the project stores it: read for this verification
        only (memory), so the new password is proven too and an old one's refusal means something."""
        ep, dbs = t.connect_endpoint, t.connection_databases()
        if not t.store_passwords or ep is None or not dbs or self.verifier is None or self.verifier.unavailable:
            return None
        try:
            pw = await self.engine.client.reveal_role_password(t.project_id, t.branch_id, t.role_name)
        except NeonError:
            return None
        db = dbs[0].name
        return [("direct", connection_uri(t.role_name, pw, ep.host, db)),
                ("pooled", connection_uri(t.role_name, pw, ep.pooler_host, db))]

    async def _verify_old_only(self, t: Target, olds: list[Secret]) -> None:
        key = t.key
        assert self.verifier is not None
        try:
            uris = await self._revealed_uris(t)
            if uris is None and not olds:
                verdict = Verification.not_verified(NOT_VERIFIED_NOT_HELD)
            else:
                verdict = await self.verifier.verify(t, uris, olds, new_skipped=NOT_VERIFIED_NOT_HELD,
                                                     old_missing=self._old_missing(t))
            self._record_now(key, verdict, None)
            await self._journal_verdict(key, verdict)
        except asyncio.CancelledError:
            if key not in self.verifications:
                self._record_now(key, Verification.not_verified(NOT_VERIFIED_CANCELLED), None)
            raise
        except Exception as e:
            self._record_now(key, Verification.not_verified(f"verification error ({type(e).__name__})"), None)
        finally:
            if self._verifying.get(key) is asyncio.current_task():
                del self._verifying[key]
            if self._out is not None:
                self._out.put_nowait(_WAKE)


def _checked(receipt: Receipt, result: RotationResult) -> Receipt:
    """A receipt goes to the journal: refuse one that quotes the secret."""
    if result.password.reveal() and result.password.reveal() in receipt.detail:
        raise SinkError("the sink's receipt quoted the secret; not recorded")
    return receipt


def _why(sink: Sink, e: BaseException) -> str:
    # Our own errors say why in words made to be shown; anything else only by its type, since a
    # foreign exception's text could quote what it was handed.
    if isinstance(e, SinkError) or hasattr(e, "title"):
        return str(e)
    return type(e).__name__
