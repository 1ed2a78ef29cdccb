"""The New VM wizard, the Templates view and the snapshot tree, driven with keys on
the simulator: every install-media kind, the refusals each page gives (and that
nothing is sent), a failure half way with its clean-up or with what was made kept."""

from __future__ import annotations

from typing import Any

from textual.widgets import Input, OptionList, SelectionList, Static

from tests.cli.test_cli_install import KEPT, inventory
from tests.ui.dialogs import answer_text, confirm_plan
from tests.ui.harness import Ui, running
from xsctl.sim import Simulator
from xsctl.ui.modals.confirm import ConfirmTyped
from xsctl.ui.views.snapshots import SnapshotsView
from xsctl.ui.views.templates import TemplatesView
from xsctl.ui.views.vms import VmDetail
from xsctl.ui.wizard import NewVmWizard
from xsctl.xapi.client import Client

GiB = 1024**3
ISO = "debian-12.7.0-amd64-netinst.iso"


def template_ref(sim: Simulator, name: str) -> str:
    return next(r for r, v in sim.store.all("VM").items()
                if v["name_label"] == name and v["is_a_template"] and not v["is_a_snapshot"])


def made(sim: Simulator, name: str) -> list[dict[str, Any]]:
    return [v for v in sim.store.all("VM").values()
            if v["name_label"] == name and not v["is_a_template"]]


async def open_wizard(ui: Ui, template: str) -> NewVmWizard:
    """Templates view (6), the cursor on ``template``, i: the wizard on its name page."""
    await ui.press("6")
    view = ui.main.query_one(TemplatesView)
    assert ui.main.current_view == "templates"
    assert view.show_object(template_ref(ui.sim, template))
    await ui.press("i")
    wiz: NewVmWizard = await ui.modal(NewVmWizard)
    assert wiz.step == 1
    # each page takes the keys at once: its first field has the focus
    assert ui.app.focused is wiz.query_one("#w-name")
    return wiz


def options(wiz: NewVmWizard, widget: str) -> str:
    ol = wiz.query_one(widget, OptionList)
    return "\n".join(str(ol.get_option_at_index(i).prompt) for i in range(ol.option_count))


def shown_by(widget: Static) -> str:
    """All a Static says, also what its size hides (a pane of a tab not shown)."""
    return str(widget.render())


def error_of(wiz: NewVmWizard) -> str:
    return shown_by(wiz.query_one("#w-error", Static)).strip()


async def replace_text(ui: Ui, wiz: NewVmWizard, widget: str, text: str) -> None:
    wiz.query_one(widget, Input).focus()
    await ui.handled()
    await ui.press("end", "ctrl+u")
    await ui.type(text)


async def choose(ui: Ui, wiz: NewVmWizard, widget: str, starts: str) -> None:
    """Arrow keys to the option whose text starts with ``starts``, then enter."""
    ol = wiz.query_one(widget, OptionList)
    ol.focus()
    texts = [str(ol.get_option_at_index(i).prompt) for i in range(ol.option_count)]
    want = next(i for i, t in enumerate(texts) if t.startswith(starts))
    for _ in range(ol.option_count * 2):
        if ol.highlighted == want:
            break
        await ui.press("down" if (ol.highlighted or 0) < want else "up")
    assert ol.highlighted == want
    await ui.press("enter")


async def next_page(ui: Ui, wiz: NewVmWizard) -> None:
    await ui.press("ctrl+n")


async def to_review(ui: Ui, wiz: NewVmWizard) -> str:
    while wiz.step < 8:
        step = wiz.step
        await next_page(ui, wiz)
        assert wiz.step == step + 1, error_of(wiz)
    return shown_by(wiz.query_one("#w-review", Static))


async def create(ui: Ui, wiz: NewVmWizard) -> str:
    await next_page(ui, wiz)  # Create
    await ui.until(lambda: wiz.step == 9 and not wiz.running, timeout=15, what="the plan's end")
    return shown_by(wiz.query_one("#w-steps", Static)) + "\n" + error_of(wiz)


async def test_new_vm_from_an_iso_with_two_disks_started(sim: Simulator,
                                                         client: Client) -> None:
    before = inventory(sim)
    async with running(sim, client) as ui:
        wiz = await open_wizard(ui, "Debian Bookworm 12")
        await replace_text(ui, wiz, "#w-name", "deb-wizard")
        await ui.press("enter")
        assert wiz.step == 2
        await choose(ui, wiz, "#w-media", f"ISO: {ISO}")
        assert wiz.step == 3
        await choose(ui, wiz, "#w-home", "None")
        assert wiz.step == 4
        await replace_text(ui, wiz, "#w-vcpus", "2")
        await replace_text(ui, wiz, "#w-memory", "4GiB")
        await ui.press("enter")
        assert wiz.step == 5, error_of(wiz)
        assert ui.app.focused is wiz.query_one("#w-disk-size")
        # the template's 10 GiB disk on the default SR, and one more of 5 GiB
        assert "10 GiB on NFS storage" in options(wiz, "#w-disks")
        await replace_text(ui, wiz, "#w-disk-size", "5G")
        await ui.press("enter")
        assert "5 GiB on NFS storage" in options(wiz, "#w-disks")
        await next_page(ui, wiz)
        assert wiz.step == 6
        nets = wiz.query_one("#w-networks", SelectionList)
        assert len(nets.selected) == 1  # the first guest network, as offered
        await next_page(ui, wiz)
        assert wiz.step == 7
        await ui.press("space")  # "Start the VM when it is made"
        await next_page(ui, wiz)
        assert wiz.step == 8
        review = shown_by(wiz.query_one("#w-review", Static))
        assert "Install media ISO " + ISO in review
        assert "Async.VM.clone(Debian Bookworm 12, 'deb-wizard')" in review
        assert "Async.VM.provision(<result of step 1>)" in review
        assert "Async.VM.start(<result of step 1>, false, false)" in review
        assert "vm=$(xe vm-install template=" in review and "xe vm-cd-add" in review
        assert "If a step fails, what was made is removed" in review
        assert inventory(sim) == before  # the review sends nothing
        shown = await create(ui, wiz)
        assert "deb-wizard is made and started." in shown
        await next_page(ui, wiz)  # Close
        await ui.back_to_main()
        await ui.until_said("New VM deb-wizard made")
    [vm] = made(sim, "deb-wizard")
    assert vm["power_state"] == "Running" and int(vm["VCPUs_max"]) == 2
    assert int(vm["memory_static_max"]) == 4 * GiB
    kinds = sorted((sim.store.get(b, "VBD")["userdevice"], sim.store.get(b, "VBD")["type"])
                   for b in vm["VBDs"])
    assert kinds == [("0", "Disk"), ("1", "Disk"), ("3", "CD")]
    after = inventory(sim)
    for cls in KEPT:
        assert before[cls] <= after[cls]


async def test_network_install_and_no_media(sim: Simulator, client: Client) -> None:
    async with running(sim, client) as ui:
        wiz = await open_wizard(ui, "Rocky Linux 9")
        await replace_text(ui, wiz, "#w-name", "rocky-wiz")
        await ui.press("enter")
        await replace_text(ui, wiz, "#w-url", "http://dl.rockylinux.org/pub/rocky/9/")
        await choose(ui, wiz, "#w-media", "Network install from a URL")
        assert wiz.step == 3, error_of(wiz)
        review = await to_review(ui, wiz)
        assert "network install from http://dl.rockylinux.org/pub/rocky/9/" in review
        assert "install-repository" in review
        await create(ui, wiz)
        await next_page(ui, wiz)  # Close
        await ui.back_to_main()
        # a custom template: no media, its own disk copied
        wiz = await open_wizard(ui, "web-base (Debian 12)")
        await replace_text(ui, wiz, "#w-name", "web-wiz")
        await ui.press("enter")
        media = wiz.query_one("#w-media", OptionList)
        texts = {str(media.get_option_at_index(i).prompt): media.get_option_at_index(i).disabled
                 for i in range(media.option_count)}
        iso_entry = next(t for t in texts if ISO in t)
        assert texts[iso_entry] and "has a CD drive of its own" in iso_entry
        assert "this template has no network install" in next(t for t in texts if "URL" in t)
        await choose(ui, wiz, "#w-media", "None")
        review = await to_review(ui, wiz)
        assert "Install media none" in review and "Disks         the template's own" in review
        await create(ui, wiz)
    [rocky] = made(sim, "rocky-wiz")
    assert rocky["other_config"]["install-repository"] == "http://dl.rockylinux.org/pub/rocky/9/"
    [web] = made(sim, "web-wiz")
    assert web["power_state"] == "Halted" and len(web["VBDs"]) == 2  # its disk and CD drive


async def test_every_page_refuses_what_cannot_be(sim: Simulator, client: Client) -> None:
    before = inventory(sim)
    async with running(sim, client) as ui:
        wiz = await open_wizard(ui, "Windows 11")
        await replace_text(ui, wiz, "#w-name", " ")
        await ui.press("enter")
        assert wiz.step == 1 and "needs a name" in error_of(wiz)
        await replace_text(ui, wiz, "#w-name", "win-wiz")
        await ui.press("enter")
        # Windows installs from a CD only
        media = wiz.query_one("#w-media", OptionList)
        url = next(i for i in range(media.option_count)
                   if "URL" in str(media.get_option_at_index(i).prompt))
        assert media.get_option_at_index(url).disabled
        await choose(ui, wiz, "#w-media", "None")
        await choose(ui, wiz, "#w-home", "None")
        assert wiz.step == 4
        for vcpus, memory, says in (("2", "1GiB", "below Windows 11's least"),
                                    ("2", "2000G", "above Windows 11's limit"),
                                    ("33", "4GiB", "out of Windows 11's range"),
                                    ("0", "4GiB", "out of Windows 11's range (1 to 32)"),
                                    ("2", "lots", "lots")):
            await replace_text(ui, wiz, "#w-vcpus", vcpus)
            await replace_text(ui, wiz, "#w-memory", memory)
            await ui.press("enter")
            assert wiz.step == 4 and says in error_of(wiz), (vcpus, memory, error_of(wiz))
        await replace_text(ui, wiz, "#w-vcpus", "2")
        await replace_text(ui, wiz, "#w-memory", "4GiB")
        await ui.press("enter")
        assert wiz.step == 5
        # a disk too big for the SR's free space, one on an SR that takes none
        await replace_text(ui, wiz, "#w-disk-size", "3000G")
        await ui.press("enter")
        assert "more than a disk on NFS storage can hold" in error_of(wiz)
        sr_list = wiz.query_one("#w-disk-sr", OptionList)
        assert all("ISO" not in str(sr_list.get_option_at_index(i).prompt)
                   for i in range(sr_list.option_count))
        # the hosts' internal network cannot be marked
        await next_page(ui, wiz)
        nets = wiz.query_one("#w-networks", SelectionList)
        internal = [nets.get_option_at_index(i) for i in range(nets.option_count)
                    if "internal" in str(nets.get_option_at_index(i).prompt)]
        assert internal and all(o.disabled for o in internal)
        await ui.press("escape")
        await ui.back_to_main()
    assert inventory(sim) == before


async def test_a_failure_half_way_is_cleaned_up_or_kept(sim: Simulator,
                                                        client: Client) -> None:
    before = inventory(sim)
    async with running(sim, client) as ui:
        wiz = await open_wizard(ui, "Debian Bookworm 12")
        await replace_text(ui, wiz, "#w-name", "half-wiz")
        await ui.press("enter")
        await choose(ui, wiz, "#w-media", f"ISO: {ISO}")
        await to_review(ui, wiz)
        sim.faults.fail_next("VIF.create")
        shown = await create(ui, wiz)
        assert "failed: xapi internal error" in shown and "injected fault" in shown, shown
        assert "Removed: the new VM 'half-wiz' and its disks." in shown
        assert not made(sim, "half-wiz")
        assert inventory(sim) == before
        await next_page(ui, wiz)  # Close
        await ui.back_to_main()
        # again, keeping what was made
        wiz = await open_wizard(ui, "Debian Bookworm 12")
        await replace_text(ui, wiz, "#w-name", "kept-wiz")
        await ui.press("enter")
        await choose(ui, wiz, "#w-media", f"ISO: {ISO}")
        while wiz.step < 7:
            await next_page(ui, wiz)
        await ui.handled()
        assert ui.app.focused is wiz.query_one("#w-start")
        await ui.press("tab", "space")  # "keep what was made"
        review = await to_review(ui, wiz)
        assert "If a step fails, what was made is kept." in review
        sim.faults.fail_next("VIF.create")
        shown = await create(ui, wiz)
        assert "Left behind (kept as asked): the new VM 'kept-wiz' and its disks." in shown
    [vm] = made(sim, "kept-wiz")
    assert len(vm["VBDs"]) == 2 and not vm["VIFs"]


async def test_templates_view_deletes_only_custom_ones(sim: Simulator,
                                                       client: Client) -> None:
    async with running(sim, client) as ui:
        await ui.press("6")
        view = ui.main.query_one(TemplatesView)
        assert view.show_object(template_ref(sim, "Debian Bookworm 12"))
        await ui.handled()
        detail = shown_by(view.query_one("#template-detail", Static))
        assert "built-in (cannot be deleted)" in detail
        assert "Install from: cdrom, nfs, http, ftp" in detail
        await ui.press("delete")
        await ui.until_said("built-in template", "error")
        assert template_ref(sim, "Debian Bookworm 12")
        # a custom one: the typed confirmation, then it is gone with its disk
        ref = template_ref(sim, "win2022-golden")
        assert view.show_object(ref)
        await ui.press("delete")
        dlg: ConfirmTyped = await ui.modal(ConfirmTyped)
        await ui.type("win2022-golden")
        await ui.press("enter")
        await ui.until(lambda: ref not in sim.store.all("VM"), what="the template gone")
        await ui.until(lambda: ref not in view.table.rows, what="its row gone")
        assert dlg is not None
        # a halted VM converted into a template shows up here
        await ui.open_vms()
        halted = next(v["name_label"] for v in sim.store.all("VM").values()
                      if v["power_state"] == "Halted" and not v["is_a_template"]
                      and not v["is_control_domain"])
        await ui.act("M", on=halted)
        shown = await confirm_plan(ui)
        assert "VM.set_is_a_template" in shown and "is-a-template=true" in shown
        await ui.until(lambda: halted not in ui.names(), what="the VM gone from the table")
        await ui.press("6")
        await ui.until(lambda: any(r.cells[0][0] == halted for r in view.table.rows.values()),
                       what="the new template's row")


async def test_snapshot_tree_with_a_checkpoint(sim: Simulator, client: Client) -> None:
    async with running(sim, client) as ui:
        await ui.open_vms()
        await ui.act("N", on="db-01")
        await answer_text(ui, "with-memory")
        await ui.until_said("with its memory as 'with-memory': done", timeout=10)
        # the VM's detail: the tree, "Now" under the checkpoint
        detail = ui.vms_view.query_one(VmDetail)
        await ui.press("d")
        await ui.until(lambda: "with-memory" in shown_by(detail.query_one("#detail-snapshots", Static)),
                       what="the checkpoint in the detail")
        tree = shown_by(detail.query_one("#detail-snapshots", Static))
        lines = [ln for ln in tree.splitlines() if ln.strip()]
        assert lines[0].startswith("before-upgrade")
        assert lines[1].startswith("└─ nightly 2026-11-24")
        assert lines[2].startswith("   └─ with-memory") and "with memory" in lines[2]
        assert lines[3].startswith("      └─ ▶ Now")
        # the Snapshots view: the same tree, where the VM is marked, what each holds
        await ui.press("escape", "7")
        view = ui.main.query_one(SnapshotsView)
        assert ui.main.current_view == "snapshots"
        rows = {r.cells[0][0]: r for r in view.table.rows.values()}
        cp = next(k for k in rows if "with-memory" in k)
        assert cp.endswith("◀ now") and rows[cp].cells[3][0] == "disks+memory"
        # revert to the checkpoint: confirmed with what happens to the running VM
        snap = next(r for r, v in sim.store.all("VM").items() if v["name_label"] == "with-memory")
        assert view.show_object(snap)
        await ui.press("v")
        shown = await confirm_plan(ui)
        assert "resumed from the checkpoint's memory" in " ".join(shown.split())
        await ui.until(lambda: ui.vm("db-01")["power_state"] == "Running"
                       and not ui.vm("db-01")["current_operations"], timeout=10,
                       what="db-01 running again")
        # a new VM from the older snapshot
        older = next(r for r, v in sim.store.all("VM").items() if v["name_label"] == "before-upgrade")
        assert view.show_object(older)
        await ui.press("i")
        await answer_text(ui, "db-restored")
        await ui.until(lambda: made(sim, "db-restored"), timeout=10, what="the new VM")
        assert "before-upgrade" in {v["name_label"] for v in sim.store.all("VM").values()}


async def test_templates_and_snapshots_follow_what_concerns_them_when_shown(
        sim: Simulator, client: Client) -> None:
    """Both views are built when shown, and a change made meanwhile is there when they
    are; a change to a VM with no snapshot and from no template builds nothing."""
    async with running(sim, client) as ui:
        templates = ui.main.query_one(TemplatesView)
        snapshots = ui.main.query_one(SnapshotsView)
        builds: list[str] = []
        for view in (templates, snapshots):
            original = view.rebuild

            def counted(original: Any = original, view: Any = view) -> None:
                builds.append(view.ID)
                original()

            view.rebuild = counted  # type: ignore[method-assign]
        await ui.press("7")
        await ui.until(lambda: "snapshots" in builds, what="the Snapshots view built")
        before = len(snapshots.table.rows)
        x = ui.sim
        vm = next(r for r, v in x.store.all("VM").items()
                  if v["name_label"] == "web-02" and not v["is_a_template"])
        await ui.press("6")
        await ui.until(lambda: "templates" in builds, what="the Templates view built")
        count = templates.table.rows[template_ref(sim, "Debian Bookworm 12")].cells[-1][0]
        # hidden: a snapshot taken elsewhere, a VM installed from a template
        client.conn.call("VM.snapshot", vm, "taken elsewhere")
        new = client.conn.call("VM.clone", template_ref(sim, "Debian Bookworm 12"), "from-tpl")
        client.conn.call("VM.set_is_a_template", new, False)
        await ui.until(lambda: snapshots.stale, what="the hidden view marked stale")
        await ui.press("7")
        await ui.until(lambda: len(snapshots.table.rows) == before + 1,
                       what="the new snapshot shown")
        await ui.press("6")
        await ui.until(lambda: templates.table.rows[template_ref(sim, "Debian Bookworm 12")]
                       .cells[-1][0] == str(int(count) + 1), what="the count grown")
        # a VM with no snapshot, made from no listed template: nothing is built again
        builds.clear()
        lone = next(r for r, v in x.store.all("VM").items()
                    if v["name_label"] == "proxy-01" and not v["is_a_template"])
        client.conn.call("VM.set_name_description", lone, "changed elsewhere")
        await ui.until(lambda: (client.cache.get("vm", lone) or {}).get("name_description")
                       == "changed elsewhere", what="the change in the cache")
        await ui.settle()
        assert builds == []
