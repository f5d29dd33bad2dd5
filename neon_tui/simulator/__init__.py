"""A stateful simulated Neon account serving the Neon API v2 for demos and tests."""

from .config import RequestRecord, SimConfig
from .core import Simulator, SimulatedDrop

__all__ = ["RequestRecord", "SimConfig", "SimulatedDrop", "Simulator"]
