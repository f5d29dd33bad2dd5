"""Helpers for the simulator suite: fake clock, spec validator, client and path builders."""

from __future__ import annotations

import datetime as dt
import os
from collections import Counter
from pathlib import Path

import httpx
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

from neon_tui.simulator import SimConfig, Simulator

# A vendored, unmodified copy of Neon's v2 spec (see spec/SOURCE.md); override to test another copy.
SPEC_PATH = Path(os.environ.get("NEON_OPENAPI_SPEC", Path(__file__).parent / "spec" / "openapi.json"))
SPEC_HOST = "https://console.neon.tech"  # + /api/v2 from the raw request path = the spec's server URL
EPOCH = dt.datetime(2026, 6, 15, 9, 0, 0, tzinfo=dt.timezone.utc)


class FakeClock:
    """Monotonic seconds that only move when a test says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class SpecValidator:
    """Validates each simulator response against the spec and counts what it checked."""

    def __init__(self, spec: OpenAPI) -> None:
        self.spec = spec
        self.seen: Counter[tuple[str, str, int]] = Counter()

    def check(self, request: httpx.Request, response: httpx.Response) -> None:
        raw_path = request.url.raw_path.decode().split("?", 1)[0]
        mock_request = MockRequest(SPEC_HOST, request.method.lower(), raw_path,
                                   args=dict(request.url.params.multi_items()))
        content_type = response.headers.get("content-type", "application/json")
        mock_response = MockResponse(response.content, response.status_code, headers=dict(response.headers),
                                     content_type=content_type)
        try:
            self.spec.validate_response(mock_request, mock_response)
        except Exception as exc:
            detail = getattr(exc, "__cause__", None) or exc
            raise AssertionError(f"{request.method} {raw_path} -> {response.status_code} violates the spec: "
                                 f"{detail!r}\nbody: {response.text[:2000]}") from exc
        if response.status_code != 204:
            assert content_type == "application/json; charset=utf-8", content_type
        assert response.headers.get("x-neon-ret-request-id"), "missing x-neon-ret-request-id"
        route = next((r.route for r in reversed(self._sim.inspect.requests)
                      if r.request_id == response.headers["x-neon-ret-request-id"]), None)
        self.seen[(request.method, route or raw_path, response.status_code)] += 1

    _sim: Simulator


def make_sim(clock: FakeClock, **overrides) -> Simulator:
    overrides.setdefault("epoch", EPOCH)
    return Simulator(SimConfig(**overrides), clock=clock)


def client_for(sim: Simulator, key: str | None = None, validator: SpecValidator | None = None,
               **kwargs) -> httpx.AsyncClient:
    hooks = {}
    if validator is not None:
        validator._sim = sim

        async def validate(response: httpx.Response) -> None:
            await response.aread()
            validator.check(response.request, response)

        hooks["response"] = [validate]
    headers = {"Authorization": f"Bearer {key or sim.api_key}"}
    return httpx.AsyncClient(transport=sim.transport(), base_url=sim.base_url, headers=headers,
                             event_hooks=hooks, **kwargs)


def role_path(project_id: str, branch_id: str, role_name: str, suffix: str = "") -> str:
    from urllib.parse import quote

    return f"/projects/{project_id}/branches/{branch_id}/roles/{quote(role_name, safe='')}{suffix}"
