"""The only module that touches the OS keyring. There is never a plaintext fallback."""

from __future__ import annotations

from urllib.parse import quote

from neon_tui.neon.secret import Secret

SERVICE = "neon-tui"
API_KEY_USER = "NEON_API_KEY"
_PLAINTEXT_HINTS = ("keyrings.alt", "plaintext", "null")
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


def _backend():
    import keyring
    from keyring.backends import chainer, fail

    kr = keyring.get_keyring()
    backends = list(kr.backends) if isinstance(kr, chainer.ChainerBackend) else [kr]
    if not backends or all(isinstance(b, fail.Keyring) for b in backends):
        raise KeyringUnavailable(
            "no keyring backend is available (no Secret Service, KWallet or macOS Keychain found). "
            "Start one (e.g. gnome-keyring) or deliver another way; neon-tui never stores secrets in plain text."
        )
    for b in backends:
        name = f"{type(b).__module__}.{type(b).__name__}".lower()
        if any(h in name for h in _PLAINTEXT_HINTS):
            raise KeyringUnavailable(
                f"the keyring backend {type(b).__module__}.{type(b).__name__} stores secrets in plain text or "
                "nowhere; refusing to use it. Remove keyrings.alt or pick a real backend (PYTHON_KEYRING_BACKEND)."
            )
    return kr


def backend_name() -> str:
    """The keyring backend in use, or raise KeyringUnavailable."""
    kr = _backend()
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


def check_usable() -> str:
    """Prove the keyring works before anything is rotated: write, read back and delete a probe entry."""
    kr = _backend()
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


def store(service: str, username: str, value: Secret) -> None:
    kr = _backend()
    _call(kr.set_password, service, username, value.reveal())


def load(service: str, username: str) -> Secret | None:
    kr = _backend()
    value = _call(kr.get_password, service, username)
    return None if value is None else Secret(value)


def delete(service: str, username: str) -> None:
    import keyring.errors

    kr = _backend()
    try:
        kr.delete_password(service, username)
    except keyring.errors.PasswordDeleteError:
        pass
    except keyring.errors.KeyringLocked:
        raise KeyringUnavailable(_LOCKED) from None
    except keyring.errors.KeyringError as e:
        raise KeyringUnavailable(f"the keyring refused: {type(e).__name__}") from None


def store_api_key(key: Secret) -> None:
    store(SERVICE, API_KEY_USER, key)


def load_api_key() -> Secret | None:
    try:
        return load(SERVICE, API_KEY_USER)
    except KeyringUnavailable:
        return None
