"""Derive the simulator's request rules from Neon's official OpenAPI spec (never written by hand).

`spec_rules.json` next to this file holds, for every route the simulator serves, the spec's path and query
parameter schemas and its request body schema, with every `$ref` inlined and the prose dropped. The runtime
simulator validates requests against it (validate.py) without needing the 700 kB spec. Regenerate after the
spec or the route table changes:

    python -m neon_tui.simulator.specgen tests/simulator/spec/openapi.json

tests/simulator/test_validation.py fails when the file differs from what this derives from the vendored spec.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

RULES_PATH = Path(__file__).with_name("spec_rules.json")
# Keys that carry no rule a validator checks.
_PROSE = frozenset({"description", "example", "examples", "summary", "title", "deprecated", "externalDocs",
                    "readOnly", "writeOnly", "x-sensitive", "x-tags"})


def _resolve(spec: dict, node: Any, stack: tuple[str, ...] = ()) -> Any:
    if isinstance(node, list):
        return [_resolve(spec, n, stack) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        ref = node["$ref"]
        if ref in stack:  # a recursive schema: accept anything below this point
            return {}
        target: Any = spec
        for part in ref.lstrip("#/").split("/"):
            target = target[part]
        return _resolve(spec, target, stack + (ref,))
    return {k: _resolve(spec, v, stack) for k, v in node.items() if k not in _PROSE}


def derive(spec: dict, route_names: list[str]) -> dict:
    """{"METHOD /template": {"path": {...}, "query": {...}, "required_query": [...], "body": schema|None,
    "body_required": bool}} for each route name; a route the spec lacks raises KeyError."""
    rules: dict[str, Any] = {}
    for name in route_names:
        method, template = name.split(" ", 1)
        item = spec["paths"][template]
        op = item[method.lower()]
        path: dict[str, Any] = {}
        query: dict[str, Any] = {}
        required: list[str] = []
        for param in item.get("parameters", []) + op.get("parameters", []):
            param = _resolve(spec, param)
            if param["in"] == "path":
                path[param["name"]] = param.get("schema", {})
            elif param["in"] == "query":
                query[param["name"]] = param.get("schema", {})
                if param.get("required"):
                    required.append(param["name"])
        body = op.get("requestBody")
        schema = None
        if body is not None:
            schema = _resolve(spec, body["content"]["application/json"]["schema"])
        rules[name] = {"path": path, "query": query, "required_query": sorted(required), "body": schema,
                       "body_required": bool(body and body.get("required"))}
    return rules


def served_routes() -> list[str]:
    from .api import Api
    from .account import build_account
    from .config import SimConfig
    import datetime as dt

    api = Api(build_account(SimConfig(projects=1, branches=1, roles=0), dt.datetime(2026, 1, 1,
                                                                                    tzinfo=dt.timezone.utc), 0.0))
    return [r.name for r in api.routes]


def render(rules: dict) -> str:
    return json.dumps(rules, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m neon_tui.simulator.specgen PATH/TO/openapi.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(args[0]).read_text())
    RULES_PATH.write_text(render(derive(spec, served_routes())))
    print(f"wrote {RULES_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
