"""neon-tui: rotate leaked Neon Postgres role passwords on every branch."""

__version__ = "0.1.0"
