"""Sinks from `--deliver` specs, for every front end (the CLI's --deliver, the TUI's "More sinks" field).

`build_sinks` turns specs into sinks (parse_deliver, plus the config.toml command sinks `rules` and
`sink:NAME`); `plan_problems` says, before any reset, what the chosen sinks cannot take for a plan (env
sinks are bound to its targets here; a one-value sink with several targets; a command sink's rules).
Both raise or return plain words; nothing here touches Neon.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from neon_tui.rotation.plan import Plan


class SpecError(ValueError):
    """A --deliver spec that cannot be used, in one line."""


def command_sink(spec: str, settings):
    """--deliver rules (every [[rules]] entry) or sink:NAME (one [sinks.NAME], every target). Raises SpecError."""
    from neon_tui.rotation.command_sink import RulesSink

    if settings.sink_error:
        raise SpecError(f"--deliver {spec}: {settings.sink_error}")
    config = settings.sink_config
    if spec == "rules":
        if config is None or not config.rules:
            raise SpecError("--deliver rules: config.toml has no [[rules]] (see [sinks.NAME] and [[rules]])")
        return RulesSink(config)
    name = spec[5:]
    sink = config.sinks.get(name) if config is not None else None
    if sink is None:
        known = ", ".join(config.sinks) if config is not None and config.sinks else "none configured"
        raise SpecError(f"--deliver {spec}: no [sinks.{name}] in config.toml ({known})")
    if not sink.var:
        raise SpecError(f"--deliver {spec}: [sinks.{name}] has no var (the variable name to set)")
    sink.name = spec
    return sink


def sink_problems(sinks: Sequence, plan: Plan) -> list[str]:
    """What a chosen sink cannot take, found before any reset (a command sink's rules and fields)."""
    out: list[str] = []
    for sink in sinks:
        if hasattr(sink, "problems"):
            out += sink.problems(plan.targets)
        elif hasattr(sink, "problem"):
            out += [p for p in (sink.problem(t) for t in plan.targets) if p]
    return out


def build_sinks(specs: Iterable[str], settings, *, appendable: Iterable[str] = (),
                taken: Iterable[str] = ()) -> list:
    """A sink per spec (`none` is the caller's business). `taken`: names of sinks already chosen elsewhere.
    Raises SpecError (unknown spec, a bad path, a spec given twice)."""
    from neon_tui.rotation.sinks import parse_deliver

    appendable = list(appendable)
    names = set(taken)
    sinks = []
    for spec in specs:
        try:
            if spec == "rules" or spec.startswith("sink:"):
                sink = command_sink(spec, settings)
            else:
                sink = parse_deliver(spec, appendable=appendable, keyring_allow=settings.keyring_allow)
        except SpecError:
            raise
        except ValueError as e:
            raise SpecError(str(e)) from None
        if sink.name in names:
            raise SpecError(f"--deliver {spec} given twice")
        names.add(sink.name)
        sinks.append(sink)
    return sinks


def plan_problems(sinks: Sequence, plan: Plan) -> list[str]:
    """Bind env sinks to the plan's targets, then every reason the plan cannot go to these sinks."""
    for s in sinks:
        if hasattr(s, "bind"):  # env:PATH sinks look for the plan's targets
            s.bind(plan.targets)
    single = [s.name for s in sinks if getattr(s, "one_target", False)]
    if single and len(plan.targets) > 1:
        return [f"{single[0]} holds one value, and {len(plan.targets)} targets matched: name one target "
                "(PROJECT/BRANCH/ROLE) per run, or deliver the others elsewhere"]
    return sink_problems(sinks, plan)
