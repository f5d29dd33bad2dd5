"""The only module that touches the OS keyring. There is never a plaintext fallback.

Only backends known to encrypt at rest are used (ENCRYPTING_BACKENDS); the user may allow another by its
fully qualified class name with `[keyring] allow_backends = ["module.Class"]` in config.toml, which callers
pass here as `allow=settings.keyring_allow`. Backends known to keep secrets in plain text or nowhere are
refused even then.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import quote

from neon_tui.neon.secret import Secret

SERVICE = "neon-tui"
API_KEY_USER = "NEON_API_KEY"
# Backends of keyring 25.7 that keep secrets encrypted at rest (OS keychains), by "module.Class".
ENCRYPTING_BACKENDS = frozenset({
    "keyring.backends.SecretService.Keyring",      # GNOME Keyring, KeePassXC, ... over D-Bus
    "keyring.backends.libsecret.Keyring",          # the same store through libsecret
    "keyring.backends.kwallet.DBusKeyring",        # KWallet 5/6
    "keyring.backends.kwallet.DBusKeyringKWallet4",
    "keyring.backends.macOS.Keyring",              # macOS Keychain
    "keyring.backends.Windows.WinVaultKeyring",    # Windows Credential Manager
})
# Never used, even if allowed: they store in plain text or nowhere (nor is any class with "plaintext" in its
# name, e.g. keyrings.alt.file.PlaintextKeyring). A lone fail backend gets its own "no keyring" message.
_NEVER = frozenset({"keyring.backends.null.Keyring", "keyring.backends.fail.Keyring"})
_NEVER_HINT = "plaintext"
_ALLOW_KEY = '[keyring] allow_backends = ["{}"]'
# An existing keyring that no one unlocked (an SSH login, a desktop without PAM unlock) fails with KeyringLocked.
_LOCKED = ("the keyring is locked and could not be unlocked (no unlock prompt here): unlock it, e.g. by logging in "
           "to the desktop session or with `gnome-keyring-daemon --unlock`, then try again")


class KeyringUnavailable(RuntimeError):
    """No usable, safe keyring: the message says why and what to do."""

    title = "Keyring unavailable"


def connection_entry(project_id: str, branch_id: str, role: str, database: str, pooled: bool) -> tuple[str, str]:
    """(service, username) for one connection string.

    service  = neon-tui/<project_id>/<branch_id>
    username = <role>@<database>            (direct)
               <role>@<database>#pooled     (pooled)
    with role and database percent-encoded, so names with spaces, '@' or '/' stay unambiguous.
    """
    user = f"{quote(role, safe='')}@{quote(database, safe='')}"
    return f"{SERVICE}/{project_id}/{branch_id}", user + ("#pooled" if pooled else "")


def class_name(backend: object) -> str:
    """A backend's fully qualified class name, as written in allow_backends: "module.Class"."""
    return f"{type(backend).__module__}.{type(backend).__qualname__}"


def _settings_file() -> str:
    try:
        from neon_tui.paths import config_file

        return str(config_file())
    except Exception:
        return "config.toml"


def _refuse_unless_allowed(b: object, allowed: frozenset[str]) -> None:
    name = class_name(b)
    if name in _NEVER or _NEVER_HINT in name.lower():
        raise KeyringUnavailable(
            f"the keyring backend {name} stores secrets in plain text or nowhere; neon-tui refuses it even if "
            "allowed. Pick a real backend (PYTHON_KEYRING_BACKEND) or remove the package that provides it."
        )
    if name not in allowed:
        raise KeyringUnavailable(
            f"the keyring backend {name} is not one neon-tui knows to encrypt secrets at rest, so it is refused "
            "(nothing was written to or read from it). If you trust it, allow it by adding "
            f"{_ALLOW_KEY.format(name)} to {_settings_file()}; or pick a known backend "
            "(Secret Service, KWallet, macOS Keychain, Windows Credential Manager) with PYTHON_KEYRING_BACKEND."
        )


def _backend(allow: Iterable[str] = ()):
    """The keyring backend to use, or raise KeyringUnavailable: every backend it would use must be allowed."""
    import keyring
    from keyring.backends import chainer, fail

    if allow is None:
        allow = ()
    elif isinstance(allow, str):  # a lone "module.Class" would otherwise be read as its characters
        allow = (allow,)
    allowed = ENCRYPTING_BACKENDS | {a.strip() for a in allow if isinstance(a, str)}
    kr = keyring.get_keyring()
    if isinstance(kr, chainer.ChainerBackend):
        # The chainer reads from every backend in its chain and writes to the first that takes it: all must pass.
        # A subclass could change that, so it must be allowed itself as well.
        if type(kr) is not chainer.ChainerBackend:
            _refuse_unless_allowed(kr, allowed)
        backends = list(kr.backends)
    else:
        backends = [kr]
    if not backends or all(isinstance(b, fail.Keyring) for b in backends):
        raise KeyringUnavailable(
            "no keyring backend is available (no Secret Service, KWallet or macOS Keychain found). "
            "Start one (e.g. gnome-keyring) or deliver another way; neon-tui never stores secrets in plain text."
        )
    for b in backends:
        _refuse_unless_allowed(b, allowed)
    return kr


def backend_name(*, allow: Iterable[str] = ()) -> str:
    """The keyring backend in use, or raise KeyringUnavailable."""
    kr = _backend(allow)
    return type(kr).__name__


def _call(fn, *args):
    import keyring.errors

    try:
        return fn(*args)
    except keyring.errors.KeyringLocked:
        raise KeyringUnavailable(_LOCKED) from None
    except keyring.errors.InitError as e:
        raise KeyringUnavailable(f"the keyring could not be opened (is it locked?): {type(e).__name__}") from None
    except keyring.errors.KeyringError as e:
        raise KeyringUnavailable(f"the keyring refused: {type(e).__name__}") from None


def check_usable(*, allow: Iterable[str] = ()) -> str:
    """Prove the keyring works before anything is rotated: write, read back and delete a probe entry.

    `allow`: extra backend class names ("module.Class") to accept, i.e. settings.keyring_allow.
    """
    kr = _backend(allow)
    probe = "probe-" + SERVICE
    _call(kr.set_password, SERVICE, probe, "ok")
    try:
        if _call(kr.get_password, SERVICE, probe) != "ok":
            raise KeyringUnavailable("the keyring did not return what was stored in it")
    finally:
        try:
            _call(kr.delete_password, SERVICE, probe)
        except Exception:
            pass
    return getattr(kr, "name", type(kr).__name__)


def store(service: str, username: str, value: Secret, *, allow: Iterable[str] = ()) -> None:
    kr = _backend(allow)
    _call(kr.set_password, service, username, value.reveal())


def load(service: str, username: str, *, allow: Iterable[str] = ()) -> Secret | None:
    kr = _backend(allow)
    value = _call(kr.get_password, service, username)
    return None if value is None else Secret(value)


def delete(service: str, username: str, *, allow: Iterable[str] = ()) -> None:
    import keyring.errors

    kr = _backend(allow)
    try:
        kr.delete_password(service, username)
    except keyring.errors.PasswordDeleteError:
        pass
    except keyring.errors.KeyringLocked:
        raise KeyringUnavailable(_LOCKED) from None
    except keyring.errors.KeyringError as e:
        raise KeyringUnavailable(f"the keyring refused: {type(e).__name__}") from None


def store_api_key(key: Secret, *, allow: Iterable[str] = ()) -> None:
    store(SERVICE, API_KEY_USER, key, allow=allow)


def load_api_key(*, allow: Iterable[str] = ()) -> Secret | None:
    """The saved API key, or None (also when the keyring is unavailable or refused: the app asks then)."""
    try:
        return load(SERVICE, API_KEY_USER, allow=allow)
    except KeyringUnavailable:
        return None


def load_token(name: str, *, allow: Iterable[str] = ()) -> Secret | None:
    """A platform token saved in the keyring as service "neon-tui", user `name` (e.g. GITHUB_TOKEN), or None.

    Raises KeyringUnavailable when no safe keyring is usable (the caller says where else a token may come from).
    """
    return load(SERVICE, name, allow=allow)
