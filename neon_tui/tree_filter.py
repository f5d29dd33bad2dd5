"""The tree's filter: plain text (a substring of any name or id, as always) or prefixed terms.

    role:app              every branch holding a role named app, in every organization and project
    project:acme-* branch:main role:'etl loader'
    org:ORG  project:P  branch:B  role:R   (ids or names; shell-style globs as `neon-tui rotate` takes)

A prefixed term matches a whole name or id with the globs of `neon-tui rotate`'s selectors (`*`, `?`,
`[...]`; case-sensitive, as Postgres role names are); quote a value holding spaces ('etl loader' or
"etl loader"). Every term must match (AND); a term of the same prefix given twice matches either (OR).
Words without a prefix, next to prefixed terms, must each be a substring (any case) of some name or id on
the role's path. Plain text alone keeps the old behaviour: a substring of any org, project, branch or role.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

PREFIXES = ("org", "project", "branch", "role")


class FilterError(ValueError):
    """A filter that cannot be read (unbalanced quotes, an empty term)."""


@dataclass(frozen=True, slots=True)
class TreeFilter:
    text: str = ""
    terms: dict[str, tuple[str, ...]] = field(default_factory=dict)  # prefix -> globs (any of them)
    words: tuple[str, ...] = ()  # plain words next to prefixed terms (casefolded)

    @property
    def structured(self) -> bool:
        return bool(self.terms)

    @property
    def active(self) -> bool:
        return bool(self.text)

    @classmethod
    def parse(cls, text: str) -> TreeFilter:
        """Parse a filter; FilterError for a malformed structured filter. Plain text never fails."""
        text = text.strip()
        if not any(f"{p}:" in text for p in PREFIXES):
            return cls(text)
        try:
            tokens = shlex.split(text)
        except ValueError as e:
            raise FilterError(f"cannot read the filter ({e}): close the quote") from None
        terms: dict[str, list[str]] = {}
        words: list[str] = []
        for tok in tokens:
            prefix, sep, value = tok.partition(":")
            if sep and prefix in PREFIXES:
                if not value:
                    raise FilterError(f"{prefix}: needs a name, id or glob, e.g. {prefix}:app or {prefix}:'*'")
                terms.setdefault(prefix, []).append(value)
            else:
                words.append(tok.casefold())
        if not terms:
            return cls(text)
        return cls(text, {k: tuple(v) for k, v in terms.items()}, tuple(words))

    # ------------------------------------------------------------- plain text

    def plain_match(self, *values: str | None) -> bool:
        f = self.text.casefold()
        return not f or any(v is not None and f in v.casefold() for v in values)

    # ------------------------------------------------------------- prefixed terms

    def term_ok(self, prefix: str, *values: str | None) -> bool:
        """Does this level match its term (True when there is none)?"""
        globs = self.terms.get(prefix)
        if not globs:
            return True
        return any(v is not None and fnmatchcase(v, g) for g in globs for v in values)

    def words_left(self, *values: str | None) -> tuple[str, ...]:
        """The plain words none of these names or ids contains."""
        return tuple(w for w in self.words if not any(v is not None and w in v.casefold() for v in values))

    def deeper(self, level: str) -> bool:
        """Does a term look below this level ("org", "project", "branch")?"""
        below = PREFIXES[PREFIXES.index(level) + 1:]
        return any(p in self.terms for p in below)
