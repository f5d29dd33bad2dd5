"""The header says where the app is pointed (host, organization, key kind, SIMULATED, read-only), within 80 columns."""

from __future__ import annotations

from textual.widgets._header import HeaderTitle
from ui_helpers import NOW, make_app, make_sim, settle

from neon_tui.app import NeonApp
from neon_tui.neon import NeonClient, RetryPolicy
from neon_tui.screens.main import MainScreen

FAST = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.02)


def shown_title(app) -> tuple[str, int]:
    """The header's text as rendered, and the width it has."""
    title = app.screen.query_one(HeaderTitle)
    return str(title.render()), title.region.width


async def test_demo_header_fits_80_columns(tmp_path):
    app = make_app(make_sim(), tmp_path, read_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert app.sub_title == "SIMULATED · 3 orgs · personal key · read-only"
        text, width = shown_title(app)
        assert text == "neon-tui — SIMULATED · 3 orgs · personal key · read-only" and len(text) <= width
    app = make_app(make_sim(), tmp_path)
    async with app.run_test(size=(120, 24)) as pilot:
        await settle(app, pilot)
        assert app.sub_title == "SIMULATED · 3 organizations · personal key"  # room for the long forms


async def test_org_key_on_another_host_names_host_org_and_kind(tmp_path):
    sim = make_sim()
    org = sim.inspect.project_by_name("acme-prod").org_id
    app = NeonApp(client_factory=lambda key: NeonClient(key, host="https://neon-proxy.corp.example/api/v2",
                                                        transport=sim.transport(), retry=FAST),
                  env={"NEON_API_KEY": sim.org_api_key(org)}, now=lambda: NOW, offer_resume=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert type(app.screen) is MainScreen
        parts = app.sub_title.split(" · ")
        assert parts[0] == "neon-proxy.corp.example" and parts[-1] == "org key"
        orgs = app.inventory.organizations
        assert len(parts) == 3 and [o.id for o in orgs] == [org] and parts[1] == orgs[0].name
        text, width = shown_title(app)
        assert len(text) <= width


async def test_default_host_is_not_shown_and_long_names_are_cut_not_spilled(tmp_path):
    sim = make_sim()
    long_host = "https://neon-api-gateway.eu-central-1.internal.example-corporation.com/api/v2"
    app = NeonApp(client=NeonClient(sim.api_key, host=long_host, transport=sim.transport(), retry=FAST),
                  read_only=True, now=lambda: NOW, offer_resume=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        sub = app.sub_title
        assert sub.startswith("neon-api-gateway") and "…" in sub.split(" · ")[0]
        assert sub.endswith(" · read-only") and "personal" in sub
        text, width = shown_title(app)
        assert len(text) <= width
    app = NeonApp(client=NeonClient(sim.api_key, host="https://console.neon.tech/api/v2",
                                    transport=sim.transport(), retry=FAST), now=lambda: NOW, offer_resume=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert app.sub_title == "3 organizations · personal key"
