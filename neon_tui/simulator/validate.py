"""Request validation against the rules specgen.py derives from Neon's OpenAPI spec.

Covers the JSON Schema keywords those rules use (type, enum, pattern, minimum/maximum, minLength/maxLength,
properties/required/additionalProperties/maxProperties, items, allOf, format int32/int64/uuid/date-time).
Messages follow Neon's observed wording: ``invalid request: decode application/json: invalid: role.no_login
(boolean expected)``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from functools import lru_cache
from typing import Any

from .specgen import RULES_PATH

_INT_RANGES = {"int32": (-2**31, 2**31 - 1), "int64": (-2**63, 2**63 - 1)}


@lru_cache(maxsize=1)
def rules() -> dict:
    return json.loads(RULES_PATH.read_text())


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern:
    return re.compile(pattern)


def _type_ok(value: Any, kind: str) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        return isinstance(value, list)
    return True


def check(schema: dict, value: Any, where: str) -> str | None:
    """Why `value` breaks `schema` (one line naming the field), or None."""
    for sub in schema.get("allOf", ()):
        why = check(sub, value, where)
        if why:
            return why
    kind = schema.get("type")
    if kind is not None and not _type_ok(value, kind):
        return f"{where} ({kind} expected)"
    if "enum" in schema and value not in schema["enum"]:
        return f"{where} (must be one of {', '.join(map(str, schema['enum']))})"
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            return f"{where} (at least {schema['minLength']} characters)"
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return f"{where} (at most {schema['maxLength']} characters)"
        if "pattern" in schema and not _regex(schema["pattern"]).search(value):
            return f"{where} (does not match pattern {schema['pattern']})"
        fmt = schema.get("format")
        if fmt == "uuid":
            try:
                uuid.UUID(value)
            except ValueError:
                return f"{where} (uuid expected)"
        elif fmt == "date-time":
            try:
                dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                return f"{where} (date-time expected)"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            return f"{where} (must be at least {schema['minimum']})"
        if "maximum" in schema and value > schema["maximum"]:
            return f"{where} (must be at most {schema['maximum']})"
        lo_hi = _INT_RANGES.get(schema.get("format", ""))
        if lo_hi and not lo_hi[0] <= value <= lo_hi[1]:
            return f"{where} (out of {schema['format']} range)"
    if isinstance(value, dict):
        for name in schema.get("required", ()):
            if name not in value:
                return f"{_join(where, name)} (field required)"
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            return f"{where} (at most {schema['maxProperties']} properties)"
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for name, item in value.items():
            if name in props:
                why = check(props[name], item, _join(where, name))
            elif isinstance(extra, dict):
                why = check(extra, item, _join(where, name))
            else:
                why = None
            if why:
                return why
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for n, item in enumerate(value):
            why = check(schema["items"], item, f"{where}[{n}]")
            if why:
                return why
    return None


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _coerce(schema: dict, raw: str) -> Any:
    """A query or path string as the type its schema declares; the string itself when it does not parse."""
    kind = schema.get("type")
    if kind == "integer":
        try:
            return int(raw)
        except ValueError:
            return raw
    if kind == "number":
        try:
            return float(raw)
        except ValueError:
            return raw
    if kind == "boolean":
        return {"true": True, "false": False}.get(raw.lower(), raw)
    return raw


def check_request(route: str, path_params: dict[str, str], query, body: Any, has_body: bool) -> str | None:
    """Why a request to `route` ("METHOD /template") breaks the spec, as Neon's 400 message, or None."""
    rule = rules().get(route)
    if rule is None:
        return None
    for name, schema in rule["path"].items():
        if name in path_params:
            why = check(schema, _coerce(schema, path_params[name]), name)
            if why:
                return f"invalid request: decode params: path: {why}"
    for name in rule["required_query"]:
        if query.get(name) is None:
            return f"invalid request: decode params: query: {name} (field required)"
    for name, schema in rule["query"].items():
        raw = query.get(name)
        if raw is not None:
            why = check(schema, _coerce(schema, raw), name)
            if why:
                return f"invalid request: decode params: query: {why}"
    if rule["body"] is None:
        return None
    if not has_body:
        return "invalid request: decode application/json: request body is required" if rule["body_required"] else None
    why = check(rule["body"], body, "")
    if why and why.startswith(" ("):
        why = "request body" + why  # the body itself (e.g. JSON null), not one of its fields
    if why:
        return f"invalid request: decode application/json: invalid: {why}"
    return None
