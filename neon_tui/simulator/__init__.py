"""A stateful simulated Neon account serving the Neon API v2 for demos and tests."""

# Loaded on first use (PEP 562): `neon-tui rotate` builds its argument parser, which includes
# `simulator serve`'s options, without paying for Starlette and the simulated account (~0.1 s).
_EXPORTS = {"RequestRecord": ".config", "SimConfig": ".config", "SimulatedDrop": ".core", "Simulator": ".core"}


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = ["RequestRecord", "SimConfig", "SimulatedDrop", "Simulator"]
