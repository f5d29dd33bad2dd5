"""Checks a [keymap] against every binding of the app: unknown binding ids and keys taken from another binding."""

from __future__ import annotations

import difflib
import importlib
import inspect
import pkgutil

from textual.binding import Binding
from textual.dom import DOMNode


def binding_classes() -> list[type[DOMNode]]:
    """The app, and every screen, modal and widget of neon_tui that declares bindings."""
    import neon_tui.screens
    import neon_tui.widgets
    from neon_tui.app import NeonApp

    found: list[type[DOMNode]] = [NeonApp]
    for package in (neon_tui.screens, neon_tui.widgets):
        for info in pkgutil.iter_modules(package.__path__):
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            for _, cls in inspect.getmembers(module, inspect.isclass):
                if (issubclass(cls, DOMNode) and cls.__module__ == module.__name__
                        and cls.__dict__.get("BINDINGS")):
                    found.append(cls)
    return found


def _bindings(cls: type[DOMNode]) -> list[Binding]:
    return [b for _, b in cls._merge_bindings()]


def _keys(keymap_value: str) -> list[str]:
    return [k.strip() for k in keymap_value.split(",") if k.strip()]


def _who(binding: Binding, cls: type[DOMNode]) -> str:
    name = binding.id or binding.action
    return f"{name} ({binding.description or binding.action}, {cls.__name__})"


def keymap_problems(keymap: dict[str, str], where: str = "keymap") -> list[str]:
    """One line per problem: an id no binding has (with the closest ids), or a key the keymap gives a
    binding that another binding already uses where both are active (the same screen or widget, or the
    app's bindings, which every screen shares)."""
    if not keymap:
        return []
    from textual.app import App

    written = keymap
    keymap = App._normalize_keymap(keymap)  # as set_keymap reads it: "?" is question_mark
    classes = binding_classes()
    per_class = {cls: _bindings(cls) for cls in classes}
    ids = sorted({b.id for bs in per_class.values() for b in bs if b.id})
    problems: list[str] = []
    for bid in keymap:
        if bid not in ids:
            close = difflib.get_close_matches(bid, ids, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else "; press ? in the app for the ids"
            problems.append(f"{where}.{bid}: no binding has this id{hint}")
    app_cls = classes[0]
    seen: set[tuple[str, str, str]] = set()

    def effective(bs: list[Binding]) -> dict[str, list[Binding]]:
        """key -> bindings after the keymap (Textual's own rule: a remapped binding leaves its old keys)."""
        out: dict[str, list[Binding]] = {}
        for b in bs:
            keys = _keys(keymap[b.id]) if b.id in keymap else [b.key]
            for k in keys:
                out.setdefault(k, []).append(b)
        return out

    app_keys = effective(per_class[app_cls])
    for cls in classes:
        own = effective(per_class[cls])
        scopes = [own] if cls is app_cls else [own, app_keys]
        for key, holders in own.items():
            remapped = [b for b in holders if b.id in keymap]
            if not remapped:
                continue
            others = {(b.id or b.action): b for scope in scopes for b in scope.get(key, [])}
            for b in remapped:
                for oid, other in others.items():
                    if oid == b.id or (other.action == b.action and other.id == b.id):
                        continue
                    mark = (b.id, key, oid)
                    if mark in seen:
                        continue
                    seen.add(mark)
                    owner = app_cls if other in per_class[app_cls] else cls
                    problems.append(f'{where}.{b.id} = "{written[b.id]}": {key} is already {_who(other, owner)}; '
                                    "one of them will not work there")
        if cls is app_cls:
            continue
        # The other way round: an app binding remapped onto a key this screen or widget uses for something else.
        for key, holders in app_keys.items():
            for b in holders:
                if b.id not in keymap:
                    continue
                for other in own.get(key, []):
                    oid = other.id or other.action
                    mark = (b.id, key, oid)
                    if oid == b.id or mark in seen:
                        continue
                    seen.add(mark)
                    problems.append(f'{where}.{b.id} = "{written[b.id]}": {key} is already {_who(other, cls)}; '
                                    "one of them will not work there")
    return problems

