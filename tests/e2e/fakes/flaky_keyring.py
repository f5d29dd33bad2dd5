"""A keyring backend that works for N writes and then fails, like a Secret Service whose session dies mid-run.

Selected in a child process with PYTHON_KEYRING_BACKEND=flaky_keyring.FlakyKeyring and allowed by name in the
child's config.toml. It keeps entries in a JSON file (tests only) so the parent can see what arrived.
FLAKY_KEYRING_OK: writes that succeed; FLAKY_KEYRING_STORE: the file; the monotonic time of the first
failure is written to FLAKY_KEYRING_STORE + ".failed".
"""

from __future__ import annotations

import json
import os
import threading
import time

from keyring.backend import KeyringBackend
from keyring.errors import PasswordSetError


_LOCK = threading.Lock()  # neon-tui stores from worker threads; the file is read-modify-write


class FlakyKeyring(KeyringBackend):
    priority = 1  # type: ignore[assignment]

    def _load(self) -> dict:
        try:
            with open(os.environ["FLAKY_KEYRING_STORE"]) as fh:
                return json.load(fh)
        except FileNotFoundError:
            return {"writes": 0, "entries": {}}

    def _save(self, data: dict) -> None:
        tmp = os.environ["FLAKY_KEYRING_STORE"] + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(data, fh)
        os.replace(tmp, os.environ["FLAKY_KEYRING_STORE"])

    def set_password(self, service, username, password):
        with _LOCK:
            self._set(service, username, password)

    def _set(self, service, username, password):
        data = self._load()
        if data["writes"] >= int(os.environ.get("FLAKY_KEYRING_OK", "1000000")):
            marker = os.environ["FLAKY_KEYRING_STORE"] + ".failed"
            if not os.path.exists(marker):
                with open(marker, "w") as fh:
                    fh.write(repr(time.monotonic()))
            raise PasswordSetError("the keyring daemon went away")
        data["writes"] += 1
        data["entries"][f"{service}|{username}"] = password
        self._save(data)

    def get_password(self, service, username):
        with _LOCK:
            return self._load()["entries"].get(f"{service}|{username}")

    def delete_password(self, service, username):
        with _LOCK:
            data = self._load()
            data["entries"].pop(f"{service}|{username}", None)
            self._save(data)
