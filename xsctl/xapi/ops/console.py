"""Consoles: a VM's, or a host's (its control domain's, where xsconsole runs), text
(vt100) or graphical (rfb, for a VNC viewer). Each is a plan of one
:class:`~xsctl.xapi.ops.base.Console` step, which the CLI (``xsctl console``) or the
app opens: nothing is sent before that.

Which consoles there are is xapi's: a running domain has an RFB console, a PV or
PVH guest a VT100 one too, a control domain both (xapi_xenops.ml, create_misc.ml);
a halted or suspended VM has none."""

from __future__ import annotations

from typing import Any

from xsctl.xapi import console
from xsctl.xapi.cache import Cache
from xsctl.xapi.errors import XsctlError
from xsctl.xapi.ops.base import Console, Plan, xe
from xsctl.xapi.ops.catalogue import Operation, Param, ParamKind, Refused, declare
from xsctl.xapi.ops.host import HOST
from xsctl.xapi.ops.vm import VM

PROTOCOLS = {"vt100": "Text console", "rfb": "Graphical console"}

# The keys: L (a login on the text console) and V (VNC). o and O sort the tables
# (the table has the focus, so its keys win over a view's).

_PORT = Param(
    "port", ParamKind.COUNT, "Local port", ("--port",),
    "the local port the VNC viewer connects to, on 127.0.0.1 only (default: a free one)",
    required=False, minimum=1, maximum=65535, metavar="N",
)


def control_domain(cache: Cache, host: str) -> str | None:
    """The host's control domain (host.control_domain; else the control domain
    resident on it, for a record that lacks the field)."""
    row = cache.get("host", host) or {}
    dom0 = str(row.get("control_domain") or console.NULL)
    if dom0 != console.NULL and cache.find(dom0) is not None:
        return dom0
    for ref, r in cache.snapshot("vm"):
        if r.get("is_control_domain") and r.get("resident_on") == host:
            return ref
    return None


def _host_why(protocol: str) -> Any:
    def why(cache: Cache, host: Any) -> str | None:
        dom0 = control_domain(cache, host.ref)
        if dom0 is None:
            return "its control domain is not known to the pool"
        return console.why_not(cache, dom0, protocol)
    return why


def _vm_why(protocol: str) -> Any:
    def why(cache: Cache, vm: Any) -> str | None:
        return console.why_not(cache, vm.ref, protocol)
    return why


def console_plan(cache: Cache, vm: str, name: str, protocol: str, target: str,
                 op_id: str, port: int | None = None, *, of_host: bool = False) -> Plan:
    """The plan that opens the ``protocol`` console of ``vm`` (named ``name``; a
    host's control domain when ``of_host``)."""
    try:
        info = console.pick(cache, vm, protocol)
    except XsctlError as e:
        raise Refused(f"{name}: {e}") from e
    row = cache.get("vm", vm) or {}
    uuid = str(row.get("uuid", ""))
    what = PROTOCOLS[protocol]
    if protocol == "vt100":
        line = xe("console", uuid=uuid)
        notes = (f"{console.ESCAPE_NAME} ends the console and brings xsctl back.",)
    else:
        line = xe("console-list", vm_uuid=uuid, protocol="RFB")
        notes = ("The tunnel listens on 127.0.0.1 only; each VNC connection to it is a "
                 "connection to xapi's /console.",)
    return Plan(
        title=f"{what} of {name}", action=op_id, targets=(target,),
        calls=(Console(info.ref, protocol, vm, info.address, port),),
        xe=(line,), names={vm: name, target: name, info.ref: f"{name} ({protocol})"},
        notes=notes,
    )


def _plan_vm_text(cache: Cache, vm: Any) -> Plan:
    return console_plan(cache, vm.ref, vm.name_label, "vt100", vm.ref, "vm.console")


def _plan_vm_vnc(cache: Cache, vm: Any, port: int | None) -> Plan:
    return console_plan(cache, vm.ref, vm.name_label, "rfb", vm.ref, "vm.vnc", port)


def _host_plan(cache: Cache, host: Any, protocol: str, op_id: str, port: int | None) -> Plan:
    name = HOST.name(host)
    dom0 = control_domain(cache, host.ref)
    if dom0 is None:
        raise Refused(f"{name}: its control domain is not known to the pool")
    return console_plan(cache, dom0, name, protocol, host.ref, op_id, port, of_host=True)


def _plan_host_text(cache: Cache, host: Any) -> Plan:
    return _host_plan(cache, host, "vt100", "host.console", None)


def _plan_host_vnc(cache: Cache, host: Any, port: int | None) -> Plan:
    return _host_plan(cache, host, "rfb", "host.vnc", port)


_TEXT_HELP = (f"Open the text console, the terminal handed over raw; {console.ESCAPE_NAME} "
              "ends it")
_VNC_HELP = ("Open the graphical console: a local port on loopback, tunnelled to xapi, "
             "and your VNC viewer on it")

CONSOLE_OPS = (
    Operation(
        id="vm.console", kind=VM, label="Open text console", key="L", verb="console", xe="console",
        done="console closed", help=_TEXT_HELP, plan=_plan_vm_text, when=_vm_why("vt100"),
    ),
    Operation(
        id="vm.vnc", kind=VM, label="Open graphical console", key="V", verb="console",
        xe="console-list", done="console tunnel closed", help=_VNC_HELP, plan=_plan_vm_vnc,
        when=_vm_why("rfb"), flag="--vnc", params=(_PORT,),
    ),
    Operation(
        id="host.console", kind=HOST, label="Open text console", key="L", verb="console",
        xe="console", done="console closed",
        help=_TEXT_HELP.replace("the text console", "the control domain's text console"),
        plan=_plan_host_text, when=_host_why("vt100"),
    ),
    Operation(
        id="host.vnc", kind=HOST, label="Open graphical console", key="V", verb="console",
        xe="console-list", done="console tunnel closed",
        help=_VNC_HELP.replace("the graphical console", "the control domain's graphical console"),
        plan=_plan_host_vnc, when=_host_why("rfb"), flag="--vnc", params=(_PORT,),
    ),
)

declare(*CONSOLE_OPS)


def is_console(op: Operation | str) -> bool:
    """Whether the operation opens a console (the CLI and the app open it themselves)."""
    op_id = op if isinstance(op, str) else op.id
    return op_id in {o.id for o in CONSOLE_OPS}


def console_step(plan: Plan) -> Console | None:
    step = plan.calls[0] if len(plan.calls) == 1 else None
    return step if isinstance(step, Console) else None
