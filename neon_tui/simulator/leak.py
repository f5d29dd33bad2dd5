"""The demo's sample leak: what an attacker found in a deploy target's `.env`, for the exposure drill.

It quotes passwords of the simulated account as they are when it is written (the demo's, never a real one):
- `DATABASE_URL` is acme-analytics' `café_rw` on `main`, a password its child branches `dev/carol` and
  `backfill-2025` inherited: the scan must find all three, not just the branch named in the string;
- `BILLING_DB_PASSWORD` is `o'brien` on acme-legacy-billing, a project that does not store passwords:
  only a login probe can tell where it still works;
- the rest is ordinary configuration that must not count as a finding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    from .core import Simulator


def demo_leaked_at(sim: "Simulator"):
    """When the demo's leak happened (UTC): DEMO_LEAK_HOURS before the simulated account's start."""
    import datetime as dt

    from .account import DEMO_LEAK_HOURS

    return sim.account.wall(sim.account.t0) - dt.timedelta(hours=DEMO_LEAK_HOURS)


def sample_leak(sim: "Simulator") -> str:
    ins = sim.inspect
    analytics = ins.project_by_name("acme-analytics")
    main = ins.branch_by_name(analytics.id, "main")
    endpoint = analytics.rw_endpoint(main.id)
    café = ins.password(analytics.id, main.id, "café_rw")
    billing = ins.project_by_name("acme-legacy-billing")
    billing_main = ins.branch_by_name(billing.id, "main")
    obrien = ins.password(billing.id, billing_main.id, "o'brien")
    url = (f"postgresql://{quote('café_rw', safe='')}:{quote(café, safe='')}@{endpoint.host}/warehouse"
           "?sslmode=require&channel_binding=require")
    return ("# production .env copied from the compromised deploy host\n"
            "NODE_ENV=production\n"
            "LOG_LEVEL=info\n"
            f'DATABASE_URL="{url}"\n'
            f"export BILLING_DB_PASSWORD='{obrien}'\n"
            "SENTRY_DSN=https://examplePublicKey@o0.ingest.sentry.io/0\n")
