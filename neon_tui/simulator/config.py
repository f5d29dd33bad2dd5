"""Configuration and request-log records for the simulated Neon account."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

# "502_applied": a gateway error after the reset WAS applied; "drop_reset_late": the connection drops and the
# reset lands a moment later (still in flight when a client first looks). Only when listed explicitly.
ALL_FAULT_KINDS = ("500", "503", "429", "reset", "drop_reset", "423", "op_failed", "502_applied", "drop_reset_late")
DEFAULT_FAULT_KINDS = ("500", "503", "429", "reset", "drop_reset", "423")


@dataclass(frozen=True)
class SimConfig:
    """Knobs of a simulated account; None sizes mean the curated demo account."""

    seed: int = 7
    projects: int | None = None
    branches: int | None = None
    roles: int | None = None
    latency_ms: float = 0.0
    op_seconds: float = 2.0
    rate_limit: str = "off"
    fault_rate: float = 0.0
    faults: tuple[str, ...] = DEFAULT_FAULT_KINDS
    api_key: str | None = None
    # Wall-clock instant that simulated clock zero maps to; None means "now" at
    # construction. Fix it when byte-identical timestamps matter across runs.
    epoch: dt.datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "faults", tuple(self.faults))
        if self.rate_limit not in ("off", "neon"):
            raise ValueError(f"rate_limit must be 'off' or 'neon', not {self.rate_limit!r}")
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ValueError("fault_rate must be within 0..1")
        unknown = [k for k in self.faults if k not in ALL_FAULT_KINDS]
        if unknown:
            raise ValueError(f"unknown fault kinds: {unknown}")
        for name in ("projects", "branches", "roles"):
            value = getattr(self, name)
            if value is not None and value < (0 if name == "roles" else 1):
                raise ValueError(f"{name} is too small: {value}")
        if self.op_seconds < 0 or self.latency_ms < 0:
            raise ValueError("op_seconds and latency_ms must not be negative")


@dataclass
class RequestRecord:
    """One request as the simulator saw it; status None means the connection was dropped."""

    method: str
    path: str
    route: str | None
    status: int | None
    t: float
    fault: str | None = None
    key_id: int | None = None
    request_id: str = ""
    extra: dict = field(default_factory=dict)
