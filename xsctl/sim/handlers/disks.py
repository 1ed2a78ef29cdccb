"""Storage primitives shared by the VM and storage behaviour: VDIs with their SR's
accounting kept true (physical_utilisation, virtual_allocation, SR_FULL).

xapi's SR fields: physical_size is the capacity, physical_utilisation what VDIs really
occupy (thick LVM: the whole virtual size; thin VHD on file SRs: what was written),
virtual_allocation the sum of virtual sizes.
"""

from __future__ import annotations

from typing import Any

from xsctl.sim.errors import XapiFailure
from xsctl.sim.store import Store, now_datetime
from xsctl.sim.wire import NULL_REF

MiB = 1024**2
THICK_TYPES = frozenset({"lvm", "lvmoiscsi", "lvmohba"})
VHD_OVERHEAD = 8 * MiB


def is_thick(store: Store, sr: str) -> bool:
    row = store.get(sr, "SR")
    return row["type"] in THICK_TYPES and row["sm_config"].get("allocation", "thick") == "thick"


def physical_for(store: Store, sr: str, virtual_size: int, fill: float = 0.0) -> int:
    """What a new VDI of ``virtual_size`` occupies on ``sr`` (``fill``: fraction written)."""
    if is_thick(store, sr):
        return virtual_size + VHD_OVERHEAD
    return int(virtual_size * fill) + (VHD_OVERHEAD if store.get(sr, "SR")["type"] != "iso" else 0)


def free_space(store: Store, sr: str) -> int:
    row = store.get(sr, "SR")
    return int(row["physical_size"]) - int(row["physical_utilisation"])


def check_space(store: Store, sr: str, needed: int) -> None:
    """SR_FULL [requested, maximum] when ``needed`` more bytes do not fit."""
    row = store.get(sr, "SR")
    if row["content_type"] == "iso" or row["type"] == "udev":
        return
    if needed > free_space(store, sr):
        raise XapiFailure("SR_FULL", needed, free_space(store, sr))


def account(store: Store, sr: str, physical: int, virtual: int) -> None:
    """Add (or, with negative numbers, remove) usage on ``sr``."""
    if sr == NULL_REF or not store.exists(sr, "SR"):
        return
    row = store.get(sr, "SR")
    store.update(
        sr,
        {
            "physical_utilisation": max(0, int(row["physical_utilisation"]) + physical),
            "virtual_allocation": max(0, int(row["virtual_allocation"]) + virtual),
        },
    )


def create_vdi(store: Store, sr: str, name_label: str, virtual_size: int, **fields: Any) -> str:
    """A new managed VDI on ``sr`` with usage accounted; SR_FULL if it does not fit.
    Call with the store lock held."""
    fill = float(fields.pop("fill", 0.0))
    physical = int(fields.pop("physical_utilisation", physical_for(store, sr, virtual_size, fill)))
    check_space(store, sr, physical)
    rec: dict[str, Any] = {
        "name_label": name_label,
        "name_description": "",
        "SR": sr,
        "virtual_size": virtual_size,
        "physical_utilisation": physical,
        "type": "user",
        "sharable": False,
        "read_only": False,
        "managed": True,
        "location": store.new_uuid(),
        "sm_config": {"vdi_type": "vhd"},
        "other_config": {},
        "on_boot": "persist",
    }
    rec.update(fields)
    ref = store.create("VDI", rec)
    account(store, sr, physical, virtual_size)
    return ref


def clone_vdi(store: Store, vdi: str, name_label: str | None = None, **fields: Any) -> str:
    """VDI.clone: a copy-on-write child on the same SR (only new blocks use space)."""
    src = store.get(vdi, "VDI")
    return create_vdi(
        store, src["SR"], name_label if name_label is not None else src["name_label"],
        int(src["virtual_size"]),
        physical_utilisation=physical_for(store, src["SR"], int(src["virtual_size"]), 0.0),
        name_description=src["name_description"], type=src["type"],
        sharable=src["sharable"], read_only=False, other_config=dict(src["other_config"]),
        sm_config=dict(src["sm_config"]), **fields,
    )


def snapshot_vdi(store: Store, vdi: str, **fields: Any) -> str:
    """VDI.snapshot: a read-only point-in-time child marked is_a_snapshot."""
    return clone_vdi(
        store, vdi, is_a_snapshot=True, snapshot_of=vdi, snapshot_time=now_datetime(), **fields
    )


def copy_vdi(store: Store, vdi: str, sr: str, name_label: str | None = None, **fields: Any) -> str:
    """VDI.copy: a full copy onto ``sr`` (uses as much space as the source does)."""
    src = store.get(vdi, "VDI")
    used = int(src["physical_utilisation"])
    if is_thick(store, sr):
        used = int(src["virtual_size"]) + VHD_OVERHEAD
    elif is_thick(store, src["SR"]):
        used = int(int(src["virtual_size"]) * 0.5)
    return create_vdi(
        store, sr, name_label if name_label is not None else src["name_label"],
        int(src["virtual_size"]), physical_utilisation=used,
        name_description=src["name_description"], type=src["type"], sharable=src["sharable"],
        other_config=dict(src["other_config"]), **fields,
    )


def destroy_vdi(store: Store, vdi: str) -> None:
    """Remove a VDI and give its space back. The caller checks VDI_IN_USE first."""
    row = store.get(vdi, "VDI")
    store.destroy(vdi)
    account(store, row["SR"], -int(row["physical_utilisation"]), -int(row["virtual_size"]))


def resize_vdi(store: Store, vdi: str, new_size: int) -> None:
    row = store.get(vdi, "VDI")
    old = int(row["virtual_size"])
    if new_size < old:
        raise XapiFailure("VDI_TOO_SMALL", vdi, old)
    grow_phys = new_size - old if is_thick(store, row["SR"]) else 0
    check_space(store, row["SR"], grow_phys)
    store.update(vdi, {"virtual_size": new_size,
                       "physical_utilisation": int(row["physical_utilisation"]) + grow_phys})
    account(store, row["SR"], grow_phys, new_size - old)


def vdi_in_use(store: Store, vdi: str) -> bool:
    """Attached to a running domain through any of its VBDs."""
    for vbd in store.get(vdi, "VDI")["VBDs"]:
        row = store.find(vbd)
        if row is not None and row["currently_attached"]:
            return True
    return False
