"""Running guests fill their thin-provisioned disks: storage knows at once, and xapi's
records learn it when the SR's driver next reads its VHDs (SR.scan, SR.update)."""

from __future__ import annotations

from typing import Any

from xsctl.sim import Simulator
from xsctl.sim.handlers.disks import FILL_RATE
from xsctl.sim.handlers.sr import fill_tick


def _attached_disks(x: Any, sr: str, running: bool) -> list[str]:
    out = []
    for vdi in x.xenapi.SR.get_VDIs(sr):
        for vbd in x.xenapi.VDI.get_VBDs(vdi):
            vm = x.xenapi.VBD.get_VM(vbd)
            if (x.xenapi.VBD.get_currently_attached(vbd)
                    and x.xenapi.VBD.get_mode(vbd) == "RW") == running \
                    and (x.xenapi.VM.get_power_state(vm) == "Running") == running:
                out.append(vdi)
    return out


def _used(x: Any, ref: str, cls: str = "VDI") -> int:
    return int(getattr(x.xenapi, cls).get_physical_utilisation(ref))


def test_a_running_guest_fills_its_thin_disk_and_a_scan_shows_it(sim: Simulator,
                                                                  xapi: Any) -> None:
    nfs = xapi.xenapi.SR.get_by_name_label("NFS storage")[0]
    busy = _attached_disks(xapi, nfs, running=True)[0]
    idle = _attached_disks(xapi, nfs, running=False)[0]
    before = {v: _used(xapi, v) for v in (busy, idle)}
    sr_before = _used(xapi, nfs, "SR")
    fill_tick(sim, 10.0)
    # storage knows; the records wait for the driver to read the VHDs
    assert _used(xapi, busy) == before[busy] and _used(xapi, nfs, "SR") == sr_before
    xapi.xenapi.SR.scan(nfs)
    grown = _used(xapi, busy) - before[busy]
    assert grown == 10 * FILL_RATE
    assert _used(xapi, idle) == before[idle]
    assert _used(xapi, nfs, "SR") - sr_before >= grown
    assert _used(xapi, nfs, "SR") == sum(_used(xapi, v) for v in xapi.xenapi.SR.get_VDIs(nfs))
    fill_tick(sim, 5.0)
    xapi.xenapi.SR.update(nfs)
    assert _used(xapi, busy) - before[busy] == 15 * FILL_RATE


def test_thick_disks_take_their_size_at_once_and_do_not_grow(sim: Simulator,
                                                               xapi: Any) -> None:
    host = next(h for h in xapi.xenapi.host.get_all()
                if xapi.xenapi.host.get_name_label(h) == "xcp-ng-01")
    local = next(s for s in xapi.xenapi.SR.get_by_name_label("Local storage")
                 if xapi.xenapi.PBD.get_host(xapi.xenapi.SR.get_PBDs(s)[0]) == host)
    busy = _attached_disks(xapi, local, running=True)
    assert busy
    before = {v: _used(xapi, v) for v in busy}
    fill_tick(sim, 60.0)
    xapi.xenapi.SR.scan(local)
    assert {v: _used(xapi, v) for v in busy} == before


def test_a_thin_disk_stops_at_its_virtual_size_and_at_the_srs_free_space(
        sim: Simulator, xapi: Any) -> None:
    nfs = xapi.xenapi.SR.get_by_name_label("NFS storage")[0]
    busy = _attached_disks(xapi, nfs, running=True)
    size = int(xapi.xenapi.SR.get_physical_size(nfs))
    fill_tick(sim, 10.0**9)  # far more than every disk holds or the SR has
    xapi.xenapi.SR.scan(nfs)
    for v in busy:
        assert _used(xapi, v) <= int(xapi.xenapi.VDI.get_virtual_size(v)) * 1.01
    assert _used(xapi, nfs, "SR") <= size
