"""A string wrapper whose repr, str and format never show the value, so secrets survive tracebacks with locals."""

from __future__ import annotations


class Secret:
    """Holds an API key, a password or a connection string with a password in it.

    Tracebacks that print local variables (Textual's do), f-strings, logging and reprs all see
    a mask; only `reveal()` gives the value, and code calls it at the one place a sink needs it.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if isinstance(value, Secret):
            value = value.reveal()
        if not isinstance(value, str):
            raise TypeError("Secret holds a str")
        self._value = value

    def reveal(self) -> str:
        """The plaintext; call only where a sink the user chose needs it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    def __str__(self) -> str:
        return "********"

    def __format__(self, spec: str) -> str:
        return "********"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            return self._value == other._value
        return NotImplemented

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __len__(self) -> int:
        return len(self._value)

    def __reduce__(self):  # pickling would write the value somewhere we did not choose
        raise TypeError("Secret cannot be pickled")
