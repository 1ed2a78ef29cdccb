"""Passwords, through the OS keyring only. Nothing here ever writes a password
anywhere else; where no keyring backend exists, callers ask each time."""

from __future__ import annotations

import logging

import keyring
import keyring.errors

SERVICE = "xsctl"
log = logging.getLogger(__name__)


def _key(user: str, url: str) -> str:
    return f"{user}@{url}"


def available() -> bool:
    """A real backend is configured (not keyring's fail/null backends)."""
    try:
        kr = keyring.get_keyring()
    except Exception:
        return False
    name = type(kr).__module__ + "." + type(kr).__name__
    if "fail" in name.lower() or "null" in name.lower():
        return False
    priority = getattr(kr, "priority", 1)
    try:
        return float(priority) > 0
    except (TypeError, ValueError):
        return True


def get_password(user: str, url: str) -> str | None:
    try:
        return keyring.get_password(SERVICE, _key(user, url))
    except keyring.errors.KeyringError as e:
        log.info("keyring unavailable: %s", type(e).__name__)
        return None
    except Exception as e:  # a broken backend must not stop a login
        log.info("keyring failed: %s", type(e).__name__)
        return None


def set_password(user: str, url: str, password: str) -> str | None:
    """Store the password; None when stored, else why not, in words for the user
    (never the backend's own message: it could quote what it was given)."""
    try:
        keyring.set_password(SERVICE, _key(user, url), password)
        return None
    except keyring.errors.NoKeyringError:
        why = "there is no keyring on this system"
    except keyring.errors.KeyringLocked:
        why = "the keyring is locked"
    except Exception as e:
        why = f"the keyring refused it ({type(e).__name__})"
    log.info("password not saved: %s", why)
    return why


def delete_password(user: str, url: str) -> bool:
    try:
        keyring.delete_password(SERVICE, _key(user, url))
        return True
    except Exception:
        return False
