"""Neon-style identifier, password and key generators driven by a seeded RNG."""

from __future__ import annotations

import random
import string
import uuid

ADJECTIVES = (
    "late", "round", "solitary", "winter", "shiny", "noisy", "aged", "bold", "bitter", "floral",
    "raspy", "icy", "little", "shrill", "jolly", "coral", "misty", "quiet", "proud", "small",
    "young", "steep", "wild", "frosty", "ancient", "billowing", "calm", "damp", "divine", "dry",
    "empty", "falling", "fancy", "flat", "gentle", "green", "hidden", "holy", "lively", "long",
    "lucky", "muddy", "old", "patient", "polished", "purple", "rapid", "red", "restless", "rough",
    "snowy", "sparkling", "spring", "still", "summer", "sweet", "twilight", "wandering", "weathered",
)
NOUNS = (
    "rice", "unit", "thunder", "smoke", "wind", "sunset", "salad", "cloud", "meadow", "sound",
    "king", "hill", "dream", "mountain", "pine", "frost", "tide", "bread", "field", "river",
    "forest", "lake", "leaf", "moon", "night", "paper", "rain", "resonance", "sea", "shadow",
    "shape", "silence", "sky", "snow", "star", "sun", "surf", "violet", "water", "wave",
    "wildflower", "bird", "breeze", "brook", "bush", "butterfly", "dawn", "dew", "dust", "feather",
    "fire", "firefly", "flower", "fog", "glade", "glitter", "grass", "haze", "heart", "math",
)
_LOWER_ALNUM = string.ascii_lowercase + string.digits
_ALNUM = string.ascii_letters + string.digits


class IdFactory:
    """Hands out unique, realistic ids; one instance per account keeps them collision-free."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self._seen: set[str] = set()
        self._next_int = rng.randint(20_000_000, 40_000_000)

    def _unique(self, make) -> str:
        while True:
            value = make()
            if value not in self._seen:
                self._seen.add(value)
                return value

    def _words(self) -> str:
        return f"{self.rng.choice(ADJECTIVES)}-{self.rng.choice(NOUNS)}"

    def _suffix(self, n: int) -> str:
        return "".join(self.rng.choice(_LOWER_ALNUM) for _ in range(n))

    def project(self) -> str:
        return self._unique(lambda: f"{self._words()}-{self.rng.randint(10_000_000, 99_999_999)}")

    def org(self) -> str:
        return self._unique(lambda: f"org-{self._words()}-{self.rng.randint(10_000_000, 99_999_999)}")

    def branch(self) -> str:
        # Real branch ids end in a region letter plus 7 characters, e.g. br-late-rice-a5cf06kb.
        return self._unique(lambda: f"br-{self._words()}-a{self._suffix(7)}")

    def endpoint(self) -> str:
        return self._unique(lambda: f"ep-{self._words()}-a{self._suffix(7)}")

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def int_id(self) -> int:
        self._next_int += self.rng.randint(1, 977)
        return self._next_int

    def password(self) -> str:
        return "npg_" + "".join(self.rng.choice(_ALNUM) for _ in range(12))

    def api_key(self) -> str:
        return self._unique(lambda: "napi_" + self._suffix(60))
