"""What a run tells its front ends (the TUI, the CLI): one event per change, in the past tense."""

from __future__ import annotations

from dataclasses import dataclass, field

from neon_tui.neon.models import Operation
from neon_tui.neon.secret import Secret
from neon_tui.rotation.journal import TargetState
from neon_tui.rotation.plan import Target, TargetKey
from neon_tui.rotation.verify import Verification


@dataclass(frozen=True, slots=True)
class Connection:
    """One database's new connection strings; both hold the password, so both are Secrets."""

    database: str
    direct: Secret
    pooled: Secret | None
    host: str


@dataclass(frozen=True, slots=True)
class RotationResult:
    """A new password in hand, and the connection strings built from it.

    `confirmed` is False while the reset's operations have not been seen to finish: the password is
    handed over marked "unconfirmed" rather than thrown away. `connections` is empty on a branch
    without compute: the password itself is what a sink receives then ("no endpoint yet").
    """

    target: Target
    password: Secret
    connections: tuple[Connection, ...]
    confirmed: bool = True

    @property
    def primary(self) -> Connection | None:
        return self.connections[0] if self.connections else None

    @property
    def has_endpoint(self) -> bool:
        return bool(self.connections)

    @property
    def databases(self) -> list[str]:
        return [d.name for d in self.target.connection_databases()]

    def connection(self, database: str | None) -> Connection | None:
        """The strings of one database (None: the first, the role's own database if it has one)."""
        if database is None:
            return self.primary
        return next((c for c in self.connections if c.database == database), None)


@dataclass(frozen=True, slots=True)
class RunStarted:
    run_id: str
    journal: str
    total: int
    resumed: bool = False


@dataclass(frozen=True, slots=True)
class TargetChanged:
    target: Target
    state: TargetState
    reason: str | None = None
    operations: tuple[Operation, ...] = ()
    result: RotationResult | None = field(default=None, compare=False)
    attempt: int = 0
    delivered: tuple[str, ...] = ()

    @property
    def key(self) -> TargetKey:
        return self.target.key


@dataclass(frozen=True, slots=True)
class DeliveryFailed:
    """A sink refused one target's password (the reason never holds the secret)."""

    key: TargetKey
    sink: str
    reason: str


@dataclass(frozen=True, slots=True)
class Halted:
    """No new reset starts anywhere until the front end decides (circuit breaker), e.g. a sink failed.

    `source` is the sink's name, or "journal" when the journal could not be written.
    """

    source: str
    reason: str
    held: int  # passwords in hand that did not reach every chosen sink


@dataclass(frozen=True, slots=True)
class Released:
    """The breaker closed again (the sink works, or was replaced): resets continue."""

    source: str


@dataclass(frozen=True, slots=True)
class TargetVerified:
    """A rotated target was logged in to: the new password's and the old ones' verdicts (no secret)."""

    target: Target
    verification: Verification

    @property
    def key(self) -> TargetKey:
        return self.target.key

    @property
    def alarm(self) -> bool:
        return self.verification.alarm


@dataclass(frozen=True, slots=True)
class RunFinished:
    run_id: str
    counts: dict[str, int]
    cancelled: bool
    elapsed: float
    requests: int
    complete: bool = False  # every password rotated reached every chosen sink: nothing left to resume
    verification: dict[str, int] = field(default_factory=dict)  # verify.summarize() of the run's targets


Event = RunStarted | TargetChanged | TargetVerified | DeliveryFailed | Halted | Released | RunFinished
