"""session.*: login, logout, local (dom0 Unix socket) login.

xapi_session.ml: bad credentials sleep then raise SESSION_AUTHENTICATION_FAILED
[uname, msg] (documented with no params, raised with two); a login on a pool member
raises HOST_IS_SLAVE [master address]; over the Unix socket root is pre-authenticated.
"""

from __future__ import annotations

import hmac
import time
from typing import TYPE_CHECKING, Any

from xsctl.sim.dispatch import Context, api
from xsctl.sim.errors import XapiFailure
from xsctl.sim.handlers.event import forget_session
from xsctl.sim.store import now_datetime
from xsctl.sim.wire import NULL_REF

if TYPE_CHECKING:
    from xsctl.sim.simulator import Simulator


def _create_session(ctx: Context, uname: str, originator: str, local: bool) -> str:
    sim = ctx.sim
    now = now_datetime()
    ref = ctx.store.create(
        "session",
        {
            "this_host": sim.master_ref(),
            "this_user": NULL_REF,
            "last_active": now,
            "validation_time": now,
            "pool": False,
            "is_local_superuser": True,
            "subject": NULL_REF,
            "auth_user_sid": "",
            "auth_user_name": uname,
            "rbac_permissions": [],
            "originator": originator,
            "parent": NULL_REF,
            "other_config": {},
            "client_certificate": False,
        },
    )
    sim.runtime.session_used[ref] = time.monotonic()
    return ref


def _login(ctx: Context, uname: str, pwd: str, originator: str) -> str:
    sim = ctx.sim
    if ctx.conn.unix:
        return _create_session(ctx, uname, originator, local=True)
    if ctx.conn.host != sim.master_ref():
        raise XapiFailure("HOST_IS_SLAVE", sim.master_address())
    ok_user = hmac.compare_digest(uname.encode(), sim.user.encode())
    ok_pwd = hmac.compare_digest(pwd.encode(), sim.password.encode())
    if not (ok_user and ok_pwd):
        if sim.auth_fail_delay > 0:
            time.sleep(sim.auth_fail_delay)
        raise XapiFailure("SESSION_AUTHENTICATION_FAILED", uname, "Authentication failure")
    return _create_session(ctx, uname, originator, local=False)


@api("session.login_with_password")
def login_with_password(
    ctx: Context, uname: str, pwd: str, version: str = "1.1", originator: str = ""
) -> str:
    return _login(ctx, uname, pwd, originator)


@api("session.slave_local_login_with_password")
def slave_local_login_with_password(ctx: Context, uname: str, pwd: str) -> str:
    # emergency mode on a member: authenticates locally, whatever the master
    sim = ctx.sim
    if not ctx.conn.unix and not (uname == sim.user and pwd == sim.password):
        raise XapiFailure("SESSION_AUTHENTICATION_FAILED", uname, "Authentication failure")
    return _create_session(ctx, uname, "", local=True)


def destroy_session(sim: Simulator, session: str) -> None:
    """Xapi_session.destroy_db_session (logout, and the session timeout): the
    session's event registration and the session go."""
    forget_session(sim, session)
    with sim.store.lock:
        sim.runtime.session_used.pop(session, None)
        if sim.store.exists(session, "session"):
            sim.store.destroy(session)


def _logout(ctx: Context) -> None:
    assert ctx.session is not None
    destroy_session(ctx.sim, ctx.session)


@api("session.logout")
def logout(ctx: Context) -> None:
    _logout(ctx)


@api("session.local_logout")
def local_logout(ctx: Context) -> None:
    _logout(ctx)


@api("session.change_password")
def change_password(ctx: Context, old_pwd: str, new_pwd: str) -> None:
    sim = ctx.sim
    if old_pwd != sim.password:
        raise XapiFailure("SESSION_AUTHENTICATION_FAILED", sim.user, "Authentication failure")
    sim.password = new_pwd


@api("session.get_all_subject_identifiers")
def get_all_subject_identifiers(ctx: Context) -> list[Any]:
    return []
