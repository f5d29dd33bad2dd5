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
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neon_tui.neon import NeonClient
from neon_tui.rotation.engine import RotationEngine
from neon_tui.rotation.events import Event, RotationResult
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
from neon_tui.rotation.plan import Plan, Target, TargetKey
from neon_tui.rotation.sinks import Receipt, Sink, SinkError

BY_HAND = "hand"  # the requirement of a run without automatic sinks: the user copies or stores each password


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
        selectors: Sequence[str] = (),
        delivery_attempts: int = 3,
        delivery_backoff: float = 0.5,
        engine_options: dict[str, Any] | None = None,
    ) -> None:
        self.client = client
        self.plan = plan
        # stdout last: a JSON line then says truthfully where else the password went.
        self.sinks: list[Sink] = sorted(sinks, key=lambda s: s.name == "stdout")
        self.by_hand = by_hand and not self.sinks
        self.resume_state = resume
        self.journal_factory = journal_factory or Journal.create
        self.account = account
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
                          self.engine.results.get(key), jt.attempts)

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
            header = {"account": self.account, "sinks": self.required}
            await self.engine.prepare(self.plan, resume=self.resume_state, selectors=self.selectors, header=header)
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
        try:
            async for ev in self.engine.run(self.plan, resume=self.resume_state if self._runs == 1 else None,
                                            retry_failed=retry_failed, selectors=self.selectors, only=only):
                yield ev
        finally:
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

    def abort(self) -> None:
        self.engine.abort()

    def stop(self) -> None:
        """Answer to the breaker: start nothing more; the run stays resumable."""
        self.stopped = True
        self.engine.cancel()

    async def close(self) -> None:
        """The process is about to end: passwords that will be gone with it are journaled as failed
        (their projects do not store passwords), so --resume --retry-failed resets them again."""
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
            try:
                receipt = await self._deliver(sink, result)
            except Exception as e:
                reason = _why(sink, e)
                # Trip first (no await in between): the gate must not open while the failure is journaled.
                self._tripped[sink.name] = reason
                self.engine.halt(sink.name, f"delivery to {sink.name} failed: {reason}")
                await self.engine.note_delivery_failed(key, sink.name, reason)
                continue
            await self.engine.note_delivered(key, sink.name, receipt.detail, unconfirmed=not result.confirmed)
        await self.settle(key)
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
