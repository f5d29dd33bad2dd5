"""secrets: only keyring backends known to encrypt at rest are used, unless the user allows another by name."""

from __future__ import annotations

import importlib

import keyring
import keyring.backend
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import SecretService, chainer, fail, null

from neon_tui import secrets
from neon_tui.neon.secret import Secret

VALUE = "postgresql://app:pw-sEcReT-1@ep-x-1.eu.neon.tech/neondb"


class SafeStore(KeyringBackend):
    """A plaintext store with an innocent name: a dict anyone could read (what a file backend would be)."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}
        self.calls: list[str] = []

    def set_password(self, service, username, password):
        self.calls.append("set")
        self.entries[(service, username)] = password

    def get_password(self, service, username):
        self.calls.append("get")
        return self.entries.get((service, username))

    def delete_password(self, service, username):
        self.calls.append("delete")
        self.entries.pop((service, username), None)


class VaultStore(SafeStore):
    """Another test backend, standing for one the user trusts."""


class PlaintextKeyring(SafeStore):
    """Named like keyrings.alt's file backend: refused even when allowed."""


class SneakySecretService(SecretService.Keyring):
    """A subclass of a known backend may change what it does: it is not the known backend."""


SAFE = f"{__name__}.SafeStore"
VAULT = f"{__name__}.VaultStore"


@pytest.fixture
def use():
    """Install a keyring backend for one test and restore the previous one after."""
    previous = keyring.get_keyring()

    def install(kr):
        keyring.set_keyring(kr)
        return kr

    try:
        yield install
    finally:
        keyring.set_keyring(previous)


def chain_of(monkeypatch, *members) -> chainer.ChainerBackend:
    """A real ChainerBackend over exactly these backends (as if they were the viable ones installed)."""
    monkeypatch.setattr(keyring.backend, "get_all_keyring", lambda: list(members))
    monkeypatch.setattr(keyring.backend, "_limit", None)
    kr = chainer.ChainerBackend()
    assert list(kr.backends) == sorted(members, key=keyring.backend.by_priority, reverse=True)
    return kr


def test_class_name_is_what_allow_backends_takes():
    assert secrets.class_name(SafeStore()) == SAFE
    assert SAFE == "test_secrets.SafeStore"


def test_known_backends_name_real_classes_of_the_installed_keyring():
    for name in secrets.ENCRYPTING_BACKENDS:
        module, _, cls = name.rpartition(".")
        klass = getattr(importlib.import_module(module), cls)
        assert issubclass(klass, KeyringBackend)
        assert f"{klass.__module__}.{klass.__qualname__}" == name


def test_plaintext_backend_with_an_innocent_name_is_refused_before_anything_is_written(use, monkeypatch,
                                                                                        tmp_path):
    settings_file = tmp_path / "cfg" / "config.toml"
    monkeypatch.setenv("NEON_TUI_CONFIG", str(settings_file))
    kr = use(SafeStore())
    calls = [
        secrets.check_usable,
        secrets.backend_name,
        lambda: secrets.store("neon-tui/p/b", "app@neondb", Secret(VALUE)),
        lambda: secrets.load("neon-tui/p/b", "app@neondb"),
        lambda: secrets.delete("neon-tui/p/b", "app@neondb"),
        lambda: secrets.store_api_key(Secret(VALUE)),
    ]
    for call in calls:
        with pytest.raises(secrets.KeyringUnavailable) as e:
            call()
        msg = str(e.value)
        assert SAFE in msg
        assert f'[keyring] allow_backends = ["{SAFE}"]' in msg
        assert str(settings_file) in msg
        assert "encrypt" in msg
        assert VALUE not in msg and "sEcReT" not in msg
        assert e.value.title == "Keyring unavailable"
    # Nothing was written, read or deleted: the refusal comes before the backend is touched.
    assert kr.calls == [] and kr.entries == {}
    # The app asks for the key when the keyring is refused, as when there is none.
    assert secrets.load_api_key() is None
    assert kr.calls == []


def test_another_allowed_name_does_not_allow_it(use):
    kr = use(SafeStore())
    with pytest.raises(secrets.KeyringUnavailable, match="SafeStore"):
        secrets.store("s", "u", Secret(VALUE), allow=[VAULT, "SafeStore", "safestore"])
    assert kr.calls == []


def test_the_same_backend_allowed_by_name_works(use):
    kr = use(SafeStore())
    allow = (SAFE,)
    assert secrets.check_usable(allow=allow) == kr.name  # "test secrets SafeStore"
    assert kr.entries == {}  # the probe is gone
    assert secrets.backend_name(allow=allow) == "SafeStore"
    entry = secrets.connection_entry("proj-1", "br-2", "app", "neondb", pooled=True)
    secrets.store(*entry, Secret(VALUE), allow=allow)
    assert kr.entries == {entry: VALUE}
    got = secrets.load(*entry, allow=allow)
    assert got is not None and got.reveal() == VALUE
    secrets.delete(*entry, allow=allow)
    assert kr.entries == {}
    assert secrets.load(*entry, allow=allow) is None
    secrets.delete(*entry, allow=allow)  # deleting what is gone is not an error
    secrets.store_api_key(Secret("napi_x"), allow=allow)
    key = secrets.load_api_key(allow=allow)
    assert key is not None and key.reveal() == "napi_x"


def test_allow_takes_any_iterable_or_a_lone_name(use):
    kr = use(SafeStore())
    secrets.store("s", "u", Secret(VALUE), allow=iter([f" {SAFE} "]))
    secrets.store("s", "u2", Secret(VALUE), allow=SAFE)
    assert set(kr.entries) == {("s", "u"), ("s", "u2")}


def test_a_chain_with_a_refused_backend_is_refused(use, monkeypatch):
    vault, safe = VaultStore(), SafeStore()
    use(chain_of(monkeypatch, vault, safe))
    # The chainer writes to the first backend only, but reads from all: every one must be allowed.
    with pytest.raises(secrets.KeyringUnavailable) as e:
        secrets.check_usable(allow=(VAULT,))
    assert SAFE in str(e.value) and "allow_backends" in str(e.value)
    with pytest.raises(secrets.KeyringUnavailable):
        secrets.load("s", "u", allow=(VAULT,))
    assert vault.calls == [] and safe.calls == []


def test_a_chain_of_allowed_backends_works(use, monkeypatch):
    vault, safe = VaultStore(), SafeStore()
    use(chain_of(monkeypatch, vault, safe))
    allow = (VAULT, SAFE)
    assert secrets.check_usable(allow=allow)
    secrets.store("s", "u", Secret(VALUE), allow=allow)
    got = secrets.load("s", "u", allow=allow)
    assert got is not None and got.reveal() == VALUE


def test_an_empty_chain_is_no_keyring(use, monkeypatch):
    use(chain_of(monkeypatch))
    with pytest.raises(secrets.KeyringUnavailable, match="no keyring backend"):
        secrets.check_usable()


def test_fail_backend_gives_the_no_keyring_message(use):
    use(fail.Keyring())
    for call in (secrets.check_usable, secrets.backend_name, lambda: secrets.store("s", "u", Secret(VALUE))):
        with pytest.raises(secrets.KeyringUnavailable) as e:
            call()
        assert "no keyring backend" in str(e.value) and "plain text" in str(e.value)
    assert secrets.load_api_key() is None


@pytest.mark.parametrize("backend", [null.Keyring(), PlaintextKeyring()], ids=["null", "PlaintextKeyring"])
def test_plaintext_or_nowhere_backends_are_refused_even_if_allowed(use, backend):
    use(backend)
    name = secrets.class_name(backend)
    with pytest.raises(secrets.KeyringUnavailable) as e:
        secrets.store("s", "u", Secret(VALUE), allow=(name,))
    assert name in str(e.value) and "plain text or nowhere" in str(e.value)
    assert getattr(backend, "calls", []) == []


def test_a_subclass_of_a_known_backend_must_be_allowed_itself(use):
    use(SneakySecretService())
    with pytest.raises(secrets.KeyringUnavailable, match="SneakySecretService"):
        secrets.backend_name()


def test_a_chainer_subclass_must_be_allowed_itself(use, monkeypatch):
    class MyChainer(chainer.ChainerBackend):
        pass

    vault = VaultStore()
    monkeypatch.setattr(keyring.backend, "get_all_keyring", lambda: [vault])
    monkeypatch.setattr(keyring.backend, "_limit", None)
    use(MyChainer())
    with pytest.raises(secrets.KeyringUnavailable, match="MyChainer"):
        secrets.backend_name(allow=(VAULT,))
