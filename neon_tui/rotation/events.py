"""What the engine tells its consumers (the TUI, the CLI): one event per change, in the past tense."""

from __future__ import annotations

from dataclasses import dataclass, field

from neon_tui.neon.models import Operation
from neon_tui.neon.secret import Secret
from neon_tui.rotation.plan import Target, TargetKey


@dataclass(frozen=True, slots=True)
class Connection:
    """One database's new connection strings; both hold the password, so both are Secrets."""

    database: str
    direct: Secret
    pooled: Secret | None
    host: str


@dataclass(frozen=True, slots=True)
class RotationResult:
    target: Target
    password: Secret
    connections: tuple[Connection, ...]

    @property
    def primary(self) -> Connection | None:
        return self.connections[0] if self.connections else None


@dataclass(frozen=True, slots=True)
class RunStarted:
    run_id: str
    journal: str
    total: int
    resumed: bool = False


@dataclass(frozen=True, slots=True)
class TargetChanged:
    target: Target
    state: str
    reason: str | None = None
    operations: tuple[Operation, ...] = ()
    result: RotationResult | None = field(default=None, compare=False)
    attempt: int = 0

    @property
    def key(self) -> TargetKey:
        return self.target.key


@dataclass(frozen=True, slots=True)
class RunFinished:
    run_id: str
    counts: dict[str, int]
    cancelled: bool
    elapsed: float
    requests: int
