"""Sinks for new connection strings: the OS keyring, or a callback the CLI prints from."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from neon_tui import secrets
from neon_tui.rotation.events import RotationResult


class KeyringSink:
    """Stores each direct and pooled connection string under the scheme in `secrets.connection_entry`."""

    name = "keyring"

    def __init__(self) -> None:
        # Fail before anything is rotated, not after: a rotated password with nowhere to go is an outage.
        self.backend = secrets.check_usable()

    async def deliver(self, result: RotationResult) -> None:
        t = result.target
        for c in result.connections:
            for pooled, value in ((False, c.direct), (True, c.pooled)):
                if value is None:
                    continue
                service, user = secrets.connection_entry(t.project_id, t.branch_id, t.role_name, c.database, pooled)
                # keyring backends block (D-Bus round trips); keep the event loop free.
                await asyncio.to_thread(secrets.store, service, user, value)


class CallbackSink:
    """Hands results to a function (the CLI prints them when the user chose --deliver stdout)."""

    def __init__(self, name: str, fn: Callable[[RotationResult], None]) -> None:
        self.name = name
        self._fn = fn

    async def deliver(self, result: RotationResult) -> None:
        self._fn(result)


def dotenv_block(results: list[RotationResult]) -> str:
    """DATABASE_URL and DATABASE_URL_UNPOOLED per target, as a .env block (contains passwords)."""
    lines = []
    for r in results:
        c = r.primary
        if c is None:
            continue
        t = r.target
        lines.append(f"# {t.project_name} / {t.branch_name} / {t.role_name} ({c.database})")
        lines.append(f"DATABASE_URL={(c.pooled or c.direct).reveal()}")
        lines.append(f"DATABASE_URL_UNPOOLED={c.direct.reveal()}")
    return "\n".join(lines) + ("\n" if lines else "")
