"""The deterministic demo pool: three XCP-ng hosts, local LVM, shared NFS, an ISO
library and the tools SR, about 25 VMs in every power state with guest metrics and
several disks, default and custom templates, snapshots, networks and alerts.
``vms=N`` grows (or shrinks) the VM count; the same seed always gives the same pool.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from xsctl.sim.console import control_domain_consoles
from xsctl.sim.handlers.vm_devices import create_consoles
from xsctl.sim.store import Store, datetime_of
from xsctl.sim.wire import NULL_REF

if TYPE_CHECKING:
    from xsctl.sim.simulator import Simulator

KiB = 1024
MiB = 1024**2
GiB = 1024**3
TiB = 1024**4

SOFTWARE_VERSION = {
    "product_version": "8.3.0",
    "product_version_text": "8.3",
    "product_version_text_short": "8.3",
    "platform_name": "XCP",
    "platform_version": "3.4.0",
    "product_brand": "XCP-ng",
    "build_number": "cloud",
    "git_id": "0",
    "hostname": "localhost",
    "date": "2024-09-30",
    "dbv": "2024.0930",
    "xapi": "24.19",
    "xapi_build": "24.19.2",
    "xen": "4.17.5-3",
    "linux": "4.19.0+1",
    "xencenter_min": "2.21",
    "xencenter_max": "2.21",
    "network_backend": "openvswitch",
    "db_schema": "5.780",
}

CPU_FLAGS = (
    "fpu de tsc msr pae mce cx8 apic sep mca cmov pat clflush acpi mmx fxsr sse sse2 ss ht "
    "syscall nx lm constant_tsc rep_good nopl nonstop_tsc cpuid pni pclmulqdq monitor est "
    "ssse3 fma cx16 sse4_1 sse4_2 movbe popcnt aes xsave avx f16c rdrand hypervisor lahf_lm "
    "abm 3dnowprefetch fsgsbase bmi1 avx2 bmi2 erms rtm avx512f avx512dq rdseed adx "
    "avx512cd avx512bw avx512vl xsaveopt xsavec xgetbv1"
)

PROVISION_10G = (
    '<provision><disk device="0" size="10737418240" sr="" bootable="true" type="system"/>'
    "</provision>"
)
PROVISION_32G = (
    '<provision><disk device="0" size="34359738368" sr="" bootable="true" type="system"/>'
    "</provision>"
)


@dataclass(frozen=True)
class OsSpec:
    template: str
    distro: str
    name: str
    uname: str
    major: str
    minor: str
    windows: bool = False

    @property
    def agent_other(self) -> dict[str, str]:
        """What its guest agent states in xenstore's control/ (VM_guest_metrics.other,
        xapi_guest_agent.ml). The Windows management agent also takes a static IP
        address for a VIF (feature-static-ip-setting, read by xapi_vif.ml
        configure_ipv4); xe-guest-utilities for Linux does not."""
        other = {"feature-suspend": "1", "feature-poweroff": "1", "feature-reboot": "1",
                 "feature-vcpu-hotplug": "1", "has-vendor-device": "1" if self.windows else "0",
                 "platform-feature-multiprocessor-suspend": "1"}
        if self.windows:
            other["feature-static-ip-setting"] = "1"
        return other


OSES = [
    OsSpec("Debian Bookworm 12", "debian", "Debian GNU/Linux 12 (bookworm)", "6.1.0-25-amd64", "12", "7"),
    OsSpec("Ubuntu Noble Numbat 24.04", "ubuntu", "Ubuntu 24.04.1 LTS", "6.8.0-45-generic", "24", "04"),
    OsSpec("Ubuntu Jammy Jellyfish 22.04", "ubuntu", "Ubuntu 22.04.5 LTS", "5.15.0-122-generic", "22", "04"),
    OsSpec("Rocky Linux 9", "rocky", "Rocky Linux 9.4 (Blue Onyx)", "5.14.0-427.el9.x86_64", "9", "4"),
    OsSpec("CentOS Stream 9", "centos", "CentOS Stream 9", "5.14.0-503.el9.x86_64", "9", ""),
    OsSpec("AlmaLinux 9", "almalinux", "AlmaLinux 9.4 (Seafoam Ocelot)", "5.14.0-427.el9.x86_64", "9", "4"),
    OsSpec("Windows Server 2022 (64-bit)", "windows", "Microsoft Windows Server 2022 Standard|C:\\Windows|\\Device\\Harddisk0\\Partition2", "", "10", "0", True),
    OsSpec("Windows Server 2019 (64-bit)", "windows", "Microsoft Windows Server 2019 Datacenter|C:\\Windows|\\Device\\Harddisk0\\Partition2", "", "10", "0", True),
    OsSpec("Windows 10 (64-bit)", "windows", "Microsoft Windows 10 Pro|C:\\Windows|\\Device\\Harddisk0\\Partition2", "", "10", "0", True),
]
OS_BY_TEMPLATE = {o.template: o for o in OSES}

DEFAULT_TEMPLATES: list[tuple[str, int, int, str, bool]] = [
    # name, static max memory, vCPUs, provision xml, windows
    ("Debian Bookworm 12", 2 * GiB, 1, PROVISION_10G, False),
    ("Debian Trixie 13", 2 * GiB, 1, PROVISION_10G, False),
    ("Ubuntu Noble Numbat 24.04", 2 * GiB, 1, PROVISION_10G, False),
    ("Ubuntu Jammy Jellyfish 22.04", 2 * GiB, 1, PROVISION_10G, False),
    ("Rocky Linux 9", 2 * GiB, 1, PROVISION_10G, False),
    ("Rocky Linux 8", 2 * GiB, 1, PROVISION_10G, False),
    ("CentOS Stream 9", 2 * GiB, 1, PROVISION_10G, False),
    ("AlmaLinux 9", 2 * GiB, 1, PROVISION_10G, False),
    ("Red Hat Enterprise Linux 9", 2 * GiB, 1, PROVISION_10G, False),
    ("Windows Server 2022 (64-bit)", 4 * GiB, 2, PROVISION_32G, True),
    ("Windows Server 2019 (64-bit)", 4 * GiB, 2, PROVISION_32G, True),
    ("Windows 11", 4 * GiB, 2, PROVISION_32G, True),
    ("Windows 10 (64-bit)", 4 * GiB, 2, PROVISION_32G, True),
    ("Generic Linux UEFI", 2 * GiB, 1, PROVISION_10G, False),
    ("Generic Linux BIOS", 2 * GiB, 1, PROVISION_10G, False),
    ("Other install media", 1 * GiB, 1, "", False),
]

ISOS = [
    ("debian-12.7.0-amd64-netinst.iso", 661 * MiB),
    ("ubuntu-24.04.1-live-server-amd64.iso", 2694 * MiB),
    ("ubuntu-22.04.5-live-server-amd64.iso", 2086 * MiB),
    ("Rocky-9.4-x86_64-minimal.iso", 1799 * MiB),
    ("CentOS-Stream-9-latest-x86_64-dvd1.iso", 11264 * MiB),
    ("AlmaLinux-9.4-x86_64-boot.iso", 973 * MiB),
    ("alpine-virt-3.20.3-x86_64.iso", 63 * MiB),
    ("SERVER_EVAL_x64FRE_en-us.iso", 4933 * MiB),
    ("Win10_22H2_English_x64v1.iso", 5979 * MiB),
    ("systemrescue-11.02-amd64.iso", 853 * MiB),
]

# name, power state, template, memory GiB, vCPUs, disks GiB, tags, local disk
DEMO_VMS: list[tuple[str, str, str, float, int, list[int], list[str], bool]] = [
    ("web-01", "Running", "Debian Bookworm 12", 2, 2, [20], ["prod", "web"], False),
    ("web-02", "Running", "Debian Bookworm 12", 2, 2, [20], ["prod", "web"], False),
    ("web-03", "Running", "Debian Bookworm 12", 2, 2, [20], ["prod", "web"], False),
    ("web-staging", "Halted", "Debian Bookworm 12", 2, 2, [20], ["staging", "web"], False),
    ("db-01", "Running", "Rocky Linux 9", 16, 8, [40, 200], ["prod", "db"], False),
    ("db-02", "Running", "Rocky Linux 9", 16, 8, [40, 200], ["prod", "db"], False),
    ("cache-01", "Running", "Ubuntu Noble Numbat 24.04", 4, 2, [20], ["prod", "cache"], False),
    ("mail-01", "Running", "Debian Bookworm 12", 4, 2, [30, 100], ["prod", "mail"], False),
    ("dns-01", "Running", "AlmaLinux 9", 1, 1, [10], ["prod", "infra"], True),
    ("dns-02", "Running", "AlmaLinux 9", 1, 1, [10], ["prod", "infra"], True),
    ("proxy-01", "Running", "Ubuntu Jammy Jellyfish 22.04", 2, 2, [16], ["prod", "edge"], False),
    ("monitor-01", "Running", "Debian Bookworm 12", 4, 2, [20, 50], ["infra"], False),
    ("backup-01", "Halted", "Debian Bookworm 12", 4, 2, [20, 500], ["infra", "backup"], False),
    ("ci-runner-01", "Running", "Ubuntu Noble Numbat 24.04", 8, 4, [60], ["ci"], True),
    ("ci-runner-02", "Paused", "Ubuntu Noble Numbat 24.04", 8, 4, [60], ["ci"], True),
    ("ci-runner-03", "Halted", "Ubuntu Noble Numbat 24.04", 8, 4, [60], ["ci"], False),
    ("k8s-node-01", "Running", "Ubuntu Jammy Jellyfish 22.04", 8, 4, [40], ["prod", "k8s"], False),
    ("k8s-node-02", "Running", "Ubuntu Jammy Jellyfish 22.04", 8, 4, [40], ["prod", "k8s"], False),
    ("k8s-node-03", "Suspended", "Ubuntu Jammy Jellyfish 22.04", 8, 4, [40], ["prod", "k8s"], False),
    ("win-ad-01", "Running", "Windows Server 2022 (64-bit)", 4, 2, [64], ["prod", "windows"], False),
    ("win-rds-01", "Running", "Windows Server 2019 (64-bit)", 8, 4, [80], ["prod", "windows"], False),
    ("win-build-01", "Halted", "Windows 10 (64-bit)", 8, 4, [120], ["ci", "windows"], False),
    ("legacy-erp", "Suspended", "CentOS Stream 9", 6, 2, [50, 100], ["legacy"], False),
    ("dev-sandbox", "Halted", "Debian Bookworm 12", 2, 1, [20], ["dev"], True),
    ("[lab] test-vm", "Halted", "Other install media", 1, 1, [8], ["lab"], False),
]


PVH_VMS = frozenset({"k8s-node-01", "k8s-node-02", "k8s-node-03"})


def _mac(rng: random.Random) -> str:
    octets = [(rng.randrange(256) & 0xFC) | 0x02, *(rng.randrange(256) for _ in range(5))]
    return ":".join(f"{b:02x}" for b in octets)


class Builder:
    def __init__(self, sim: Simulator, hosts: int, vms: int | None) -> None:
        self.sim = sim
        self.store: Store = sim.store
        self.rng = random.Random(sim.seed)
        self.n_hosts = max(1, hosts)
        self.n_vms = len(DEMO_VMS) if vms is None else max(0, vms)
        self.now = sim.epoch
        self.hosts: list[str] = []
        self.host_names: dict[str, str] = {}
        self.local_sr: dict[str, str] = {}
        self.pifs: dict[tuple[str, str], str] = {}
        self.domid: dict[str, int] = {}
        self.templates: dict[str, str] = {}
        self.domains: list[tuple[str, str]] = []  # (VM, host) of each running domain

    def c(self, _cls: str, **fields: Any) -> str:
        return self.store.create(_cls, fields)

    def ago(self, seconds: float) -> Any:
        return datetime_of(self.now - seconds)

    # ------------------------------------------------------------ build

    def build(self) -> None:
        store = self.store
        store.bulk = True
        try:
            self.sms()
            self.pool_and_hosts()
            self.networks()
            self.storage()
            self.default_templates()
            self.vms()
            self.custom_templates()
            self.messages()
            self.orphans()
            self.finish()
            self.consoles()
        finally:
            store.bulk = False
        store.refresh_allowed()

    def sms(self) -> None:
        specs = [
            ("lvm", "Local LVM", "SR plugin which represents disks as VHD or raw on Logical Volumes within a locally-attached Volume Group", {"device": "local device path (required) (e.g. /dev/sda3)"}),
            ("ext", "Local EXT3 VHD", "SR plugin which represents disks as VHD files stored on a local EXT3 filesystem, created inside an LVM volume", {"device": "local device path (required) (e.g. /dev/sda3)"}),
            ("nfs", "NFS VHD", "SR plugin which stores disks as VHD files on a remote NFS filesystem", {"server": "hostname or IP address of NFS server (required)", "serverpath": "path on remote server (required)", "nfsversion": "for type=nfs, NFS protocol version - 3, 4, 4.0, 4.1 (optional)"}),
            ("iso", "ISO", "Handles CD images stored as files in iso format", {"location": "path to mount (required)", "type": "cifs or nfs_iso"}),
            ("lvmoiscsi", "LVM over iSCSI", "SR plugin which represents disks as Logical Volumes within a Volume Group created on an iSCSI LUN", {"target": "IP address or hostname of the iSCSI target (required)", "targetIQN": "The IQN of the target LUN group to be attached (required)", "SCSIid": "The scsi_id of the destination LUN"}),
            ("lvmohba", "LVM over FC", "SR plugin which represents disks as VHDs on Logical Volumes within a Volume Group created on an HBA LUN", {"SCSIid": "The scsi_id of the destination LUN"}),
            ("smb", "SMB VHD", "SR plugin which stores disks as VHD files on a remote SMB filesystem", {"server": "the server path to connect to (required)", "username": "username", "password": "password"}),
            ("udev", "Local Device", "SR plugin which represents removable devices", {"location": "path to mount (required)"}),
            ("file", "Local Path VHD", "SR plugin which represents disks as VHD files stored on a local path", {"location": "local path (required)"}),
        ]
        caps = ["SR_PROBE", "SR_UPDATE", "VDI_CREATE", "VDI_DELETE", "VDI_ATTACH", "VDI_DETACH",
                "VDI_RESIZE", "VDI_CLONE", "VDI_SNAPSHOT", "VDI_MIRROR", "VDI_GENERATE_CONFIG"]
        # each driver's CAPABILITIES (xapi-project/sm libs/sm/drivers/*.py); storage
        # behaviour reads them as xapi does (Xapi_sr_operations.features_of_sr)
        vhd = ["SR_PROBE", "SR_UPDATE", "VDI_CREATE", "VDI_DELETE", "VDI_ATTACH", "VDI_DETACH",
               "VDI_UPDATE", "VDI_CLONE", "VDI_SNAPSHOT", "VDI_RESIZE", "VDI_MIRROR",
               "VDI_GENERATE_CONFIG", "VDI_RESET_ON_BOOT/2", "ATOMIC_PAUSE", "VDI_CONFIG_CBT",
               "VDI_ACTIVATE", "VDI_DEACTIVATE"]
        real = {
            "lvm": [*vhd, "SR_TRIM"], "ext": [*vhd, "SR_SUPPORTS_LOCAL_CACHING", "THIN_PROVISIONING"],
            "nfs": [*vhd, "SR_CACHING", "THIN_PROVISIONING"], "smb": [*vhd, "SR_CACHING", "THIN_PROVISIONING"],
            "lvmoiscsi": [*vhd, "SR_METADATA", "SR_TRIM", "SR_CACHING"],
            "lvmohba": [*vhd, "SR_METADATA", "SR_TRIM", "SR_CACHING"],
            "iso": ["VDI_CREATE", "VDI_DELETE", "VDI_ATTACH", "VDI_DETACH", "SR_SCAN", "SR_ATTACH", "SR_DETACH"],
            "udev": ["VDI_INTRODUCE", "VDI_ATTACH", "VDI_DETACH", "VDI_UPDATE", "SR_UPDATE"],
            "file": [x for x in vhd if x not in ("VDI_UPDATE", "VDI_RESET_ON_BOOT/2")] + ["THIN_PROVISIONING"],
        }
        for typ, label, desc, config in specs:
            c = real.get(typ, caps)
            self.c(
                "SM", name_label=label, name_description=desc, type=typ, vendor="Citrix Systems Inc",
                copyright="(C) 2008 Citrix Systems Inc", version="1.0", required_api_version="1.0",
                configuration=config, capabilities=c,
                features={x.split("/")[0]: int(x.split("/")[1]) if "/" in x else 1 for x in c},
                driver_filename=f"/opt/xensource/sm/{typ.upper()}SR", required_cluster_stack=[],
            )

    def pool_and_hosts(self) -> None:
        sim = self.sim
        pool = self.c(
            "pool", name_label="Demo pool", name_description="Simulated XCP-ng pool",
            cpu_info={"cpu_count": str(16 * self.n_hosts), "socket_count": str(self.n_hosts),
                      "vendor": "GenuineIntel", "features_pv": "1fc9cbf5-f6f83203-2991cbf5-00000123-00000007-219c07a9-00000000-00000000-00001000-ac000000-00000000-00000000-00000000-00000000-00000000-00000000-00000000-00000000",
                      "features_hvm": "1fcbfbff-f7fa3223-2d93fbff-00000523-00000001-219c07ab-00000000-00000000-00001000-bc000400-00000000-00000000-00000000-00000000-00000000-00000000-00000000-00000000"},
            other_config={"auto_poweron": "false", "memory-ratio-hvm": "0.25", "memory-ratio-pv": "0.25"},
            restrictions={"restrict_dmc": "false", "restrict_vlan": "false", "restrict_pool_size": "false",
                          # XCP-ng restricts nothing (Features.keys_of_features)
                          "restrict_vif_locking": "false", "restrict_guest_ip_setting": "false"},
            tags=["demo"], migration_compression=False, tls_verification_enabled=True,
        )
        self.pool = pool
        scale = max(1.0, self.n_vms / len(DEMO_VMS))
        for i in range(self.n_hosts):
            name = f"xcp-ng-{i + 1:02d}"
            total = int((256 if i == 0 else 128) * GiB * scale)
            metrics = self.c("host_metrics", memory_total=total, memory_free=total, live=True,
                             last_updated=self.ago(3), other_config={})
            cpu_info = {
                "cpu_count": "16", "socket_count": "1", "threads_per_core": "2",
                "vendor": "GenuineIntel", "speed": "2194.842",
                "modelname": "Intel(R) Xeon(R) Silver 4214 CPU @ 2.20GHz",
                "family": "6", "model": "85", "stepping": "7", "flags": CPU_FLAGS,
                "features_pv": "1fc9cbf5-f6f83203-2991cbf5-00000123",
                "features_hvm": "1fcbfbff-f7fa3223-2d93fbff-00000523",
            }
            sv = dict(SOFTWARE_VERSION, hostname=name)
            host = self.c(
                "host", name_label=name, name_description="Default install", hostname=name,
                address=sim.addresses[i], enabled=True, software_version=sv,
                API_version_major=2, API_version_minor=21, API_version_vendor="XenSource",
                memory_overhead=int(1.2 * GiB), metrics=metrics, cpu_info=cpu_info,
                capabilities=["xen-3.0-x86_64", "hvm-3.0-x86_32", "hvm-3.0-x86_64"],
                sched_policy="credit", supported_bootloaders=["pygrub", "eliloader"],
                edition="xcp-ng", license_params={"sku_type": "xcp-ng", "expiry": "30001231T23:00:00Z"},
                bios_strings={"bios-vendor": "American Megatrends Inc.", "system-manufacturer": "Supermicro", "system-product-name": "SYS-1029P-WTR"},
                other_config={"agent_start_time": f"{self.now - 86400 * (12 + i):.0f}.",
                              "boot_time": f"{self.now - 86400 * (12 + i):.0f}.",
                              "iscsi_iqn": f"iqn.2024-09.com.example:{name}"},
                iscsi_iqn=f"iqn.2024-09.com.example:{name}",
                https_only=False, tls_verification_enabled=True, multipathing=False,
                power_on_mode="", display="enabled", virtual_hardware_platform_versions=[0, 1, 2],
                chipset_info={"iommu": "true"}, uefi_certificates="",
                last_software_update=self.ago(86400 * 40),
            )
            self.hosts.append(host)
            self.host_names[host] = name
            self.domid[host] = 1
            for n in range(16):
                self.c("host_cpu", host=host, number=n, vendor="GenuineIntel", speed=2194,
                       modelname=cpu_info["modelname"], family=6, model=85, stepping="7",
                       flags=CPU_FLAGS, features="", utilisation=0.05 + 0.3 * self.rng.random(),
                       other_config={})
            dom0_metrics = self.c("VM_metrics", memory_actual=4 * GiB, VCPUs_number=16,
                                  VCPUs_utilisation={}, VCPUs_CPU={}, VCPUs_params={}, VCPUs_flags={},
                                  state=[], start_time=self.ago(86400 * (12 + i)), install_time=self.ago(86400 * 100),
                                  last_updated=self.ago(5), other_config={}, hvm=False, nested_virt=False,
                                  nomigrate=False, current_domain_type="pv")
            dom0 = self.c(
                "VM", name_label=f"Control domain on host: {name}", name_description="The domain which manages physical devices and manages other domains",
                power_state="Running", is_control_domain=True, resident_on=host, domid=0,
                memory_static_min=4 * GiB, memory_static_max=4 * GiB, memory_dynamic_min=4 * GiB,
                memory_dynamic_max=4 * GiB, memory_target=4 * GiB, memory_overhead=0,
                VCPUs_max=16, VCPUs_at_startup=16, metrics=dom0_metrics, domain_type="pv",
                domarch="x64", other_config={"storage_driver_domain": "OpaqueRef:NULL", "is_system_domain": "true"},
                user_version=1, actions_after_shutdown="destroy", actions_after_reboot="restart",
                actions_after_crash="restart",
            )
            self.store.update(host, {"control_domain": dom0})
            self.domains.append((dom0, host))
        self.c_pool_master()

    def c_pool_master(self) -> None:
        self.store.update(self.pool, {"master": self.hosts[0]})

    def networks(self) -> None:
        nets = [
            ("Pool-wide network associated with eth0", "xenbr0", "eth0", {}, ""),
            ("Pool-wide network associated with eth1", "xenbr1", "eth1", {}, ""),
            ("DMZ (VLAN 100)", "xapi1", "eth0", {}, "100"),
            ("Host internal management network", "xenapi", "", {"is_guest_installer_network": "true", "is_host_internal_management_network": "true", "ip_begin": "169.254.0.1", "ip_end": "169.254.255.254", "netmask": "255.255.0.0"}, ""),
        ]
        self.network_refs: dict[str, str] = {}
        for label, bridge, dev, oc, vlan in nets:
            net = self.c("network", name_label=label, name_description="", bridge=bridge, MTU=1500,
                         other_config=oc, managed=True, default_locking_mode="unlocked",
                         purpose=[], tags=[], blobs={}, assigned_ips={})
            self.network_refs[bridge] = net
            if not dev:
                continue
            for i, host in enumerate(self.hosts):
                is_mgmt = bridge == "xenbr0"
                metrics = self.c("PIF_metrics", io_read_kbs=0.0, io_write_kbs=0.0, carrier=True,
                                 vendor_id="8086", vendor_name="Intel Corporation", device_id="1572",
                                 device_name="Ethernet Controller X710 for 10GbE SFP+", speed=10000,
                                 duplex=True, pci_bus_path=f"0000:3b:00.{0 if dev == 'eth0' else 1}",
                                 last_updated=self.ago(5), other_config={})
                pif = self.c(
                    "PIF", device=dev, network=net, host=host, MAC=_mac(self.rng), MTU=1500,
                    VLAN=int(vlan) if vlan else -1, metrics=metrics, physical=not vlan,
                    currently_attached=True,
                    ip_configuration_mode="Static" if is_mgmt else "None",
                    IP=f"10.0.0.{11 + i}" if is_mgmt else "",
                    netmask="255.255.255.0" if is_mgmt else "",
                    gateway="10.0.0.1" if is_mgmt else "", DNS="10.0.0.1" if is_mgmt else "",
                    management=is_mgmt, other_config={}, disallow_unplug=is_mgmt,
                    ipv6_configuration_mode="None", IPv6=[], primary_address_type="IPv4",
                    managed=True, properties={"gro": "on"}, capabilities=["fcoe"] if not vlan else [],
                    igmp_snooping_status="disabled",
                )
                self.pifs[(host, bridge)] = pif
                if vlan:
                    tagged = self.pifs[(host, "xenbr0")]
                    vlan_ref = self.c("VLAN", tagged_PIF=tagged, untagged_PIF=pif, tag=int(vlan),
                                      other_config={})
                    # xapi_vlan.ml: the untagged PIF names its VLAN
                    self.store.update(pif, {"VLAN_master_of": vlan_ref})

    def storage(self) -> None:
        c = self.c
        scale = max(1.0, self.n_vms / len(DEMO_VMS))
        self.nfs = c("SR", name_label="NFS storage", name_description="NFS SR [10.0.0.5:/export/xen]",
                     type="nfs", content_type="user", shared=True, physical_size=int(4 * TiB * scale),
                     other_config={"auto-scan": "false"}, sm_config={}, tags=["shared"],
                     introduced_by=NULL_REF, clustered=False, is_tools_sr=False, blobs={},
                     local_cache_enabled=False)
        self.isos = c("SR", name_label="ISO library", name_description="NFS ISO Library [10.0.0.5:/export/iso]",
                      type="iso", content_type="iso", shared=True, physical_size=500 * GiB,
                      other_config={"auto-scan": "true"}, sm_config={"iso_type": "nfs_iso"}, tags=[])
        self.tools = c("SR", name_label="XCP-ng Tools", name_description="XCP-ng Tools ISOs",
                       type="iso", content_type="iso", shared=True, physical_size=0,
                       other_config={"xensource_internal": "true", "i18n-key": "xenserver-tools"},
                       sm_config={}, is_tools_sr=True)
        for host in self.hosts:
            c("PBD", host=host, SR=self.nfs, currently_attached=True, other_config={},
              device_config={"server": "10.0.0.5", "serverpath": "/export/xen", "nfsversion": "4.1"})
            c("PBD", host=host, SR=self.isos, currently_attached=True, other_config={},
              device_config={"location": "10.0.0.5:/export/iso", "type": "nfs_iso"})
            c("PBD", host=host, SR=self.tools, currently_attached=True, other_config={},
              device_config={"location": "/opt/xensource/packages/iso", "legacy_mode": "true"})
            name = self.host_names[host]
            local = c("SR", name_label="Local storage", name_description=f"Local storage on {name}",
                      type="lvm", content_type="user", shared=False,
                      physical_size=int(900 * GiB * scale), other_config={"i18n-key": "local-storage"},
                      sm_config={"allocation": "thick", "use_vhd": "true", "devserial": "scsi-3600508b1001c3c8e"})
            c("PBD", host=host, SR=local, currently_attached=True, other_config={},
              device_config={"device": "/dev/disk/by-id/scsi-3600508b1001c3c8e-part3"})
            self.local_sr[host] = local
            dvd = c("SR", name_label="DVD drives", name_description="Physical DVD drives",
                    type="udev", content_type="iso", shared=False, physical_size=0,
                    other_config={"i18n-key": "local-hotplug-cd"}, sm_config={"type": "cd"})
            c("PBD", host=host, SR=dvd, currently_attached=True, other_config={},
              device_config={"location": "/dev/xapi/cd"})
            c("VDI", name_label="DVD drive 0", SR=dvd, virtual_size=0, physical_utilisation=0,
              type="user", sharable=False, read_only=True, location="/dev/xapi/cd/sr0",
              managed=True, sm_config={"hotplugged_at": str(self.ago(86400 * 12))}, other_config={})
            usb = c("SR", name_label="Removable storage", name_description="", type="udev",
                    content_type="disk", shared=False, physical_size=0,
                    other_config={"i18n-key": "local-hotplug-disk"}, sm_config={"type": "block"})
            c("PBD", host=host, SR=usb, currently_attached=True, other_config={},
              device_config={"location": "/dev/xapi/block"})
        self.iso_vdis: list[str] = []
        for name, size in ISOS:
            self.iso_vdis.append(c(
                "VDI", name_label=name, name_description="", SR=self.isos, virtual_size=size,
                physical_utilisation=size, type="user", sharable=False, read_only=True,
                location=name, managed=True, other_config={}, sm_config={}))
        self.tools_iso = c(
            "VDI", name_label="guest-tools.iso", name_description="XCP-ng VM Tools ISO",
            SR=self.tools, virtual_size=62 * MiB, physical_utilisation=62 * MiB, type="user",
            sharable=False, read_only=True, location="guest-tools.iso", managed=True,
            is_tools_iso=True, other_config={}, sm_config={})
        self.store.update(self.pool, {"default_SR": self.nfs, "suspend_image_SR": self.nfs,
                                      "crash_dump_SR": self.nfs})

    # ------------------------------------------------------------ templates and VMs

    def vm_base(self, name: str, mem: int, vcpus: int, windows: bool) -> dict[str, Any]:
        return {
            "name_label": name,
            "memory_static_min": min(mem, 512 * MiB) if not windows else min(mem, 2 * GiB),
            "memory_static_max": mem, "memory_dynamic_min": mem, "memory_dynamic_max": mem,
            "memory_target": mem, "memory_overhead": int(mem / 128) + 8 * MiB,
            "VCPUs_max": vcpus, "VCPUs_at_startup": vcpus, "VCPUs_params": {},
            "actions_after_shutdown": "destroy", "actions_after_reboot": "restart",
            "actions_after_crash": "restart", "actions_after_softreboot": "soft_reboot",
            "HVM_boot_policy": "BIOS order", "HVM_boot_params": {"order": "cdn", "firmware": "uefi" if windows else "bios"},
            "HVM_shadow_multiplier": 1.0, "domain_type": "hvm",
            "platform": {"timeoffset": "0", "device-model": "qemu-upstream-uefi" if windows else "qemu-upstream-compat",
                         "viridian": "true" if windows else "false", "acpi": "1", "apic": "true",
                         "pae": "true", "nx": "true", "vga": "std", "videoram": "8", "cores-per-socket": str(vcpus)},
            "user_version": 1, "domid": -1, "domarch": "", "ha_restart_priority": "",
            "has_vendor_device": windows, "hardware_platform_version": 2, "NVRAM": {},
            "generation_id": "0:0" if not windows else f"{self.rng.getrandbits(60)}:{self.rng.getrandbits(60)}",
        }

    def default_templates(self) -> None:
        for name, mem, vcpus, disks, windows in DEFAULT_TEMPLATES:
            rec = self.vm_base(name, mem, vcpus, windows)
            oc = {"default_template": "true", "install-methods": "cdrom" if windows else "cdrom,nfs,http,ftp"}
            if disks:
                oc["disks"] = disks
            if not windows:
                oc["linux_template"] = "true"
            rec.update(
                is_a_template=True, is_default_template=True, other_config=oc,
                name_description=f"Template which allows VM installation from install media. {name}",
                recommendations='<restrictions><restriction field="memory-static-max" max="1649267441664"/>'
                '<restriction field="vcpus-max" max="32"/><restriction property="number-of-vbds" max="255"/>'
                '<restriction property="number-of-vifs" max="7"/></restrictions>',
                tags=[], blocked_operations={},
            )
            metrics = self.vm_metrics(halted=True, mem=mem, vcpus=vcpus)
            rec["metrics"] = metrics
            self.templates[name] = self.c("VM", **rec)

    def vm_metrics(self, halted: bool, mem: int, vcpus: int, start_ago: float = 0, hvm: bool = True,
                   dtype: str = "hvm") -> str:
        return self.c(
            "VM_metrics", memory_actual=0 if halted else mem,
            VCPUs_number=0 if halted else vcpus,
            VCPUs_utilisation={} if halted else {str(i): round(self.rng.random() * 0.4, 3) for i in range(vcpus)},
            VCPUs_CPU={} if halted else {str(i): self.rng.randrange(16) for i in range(vcpus)},
            VCPUs_params={}, VCPUs_flags={}, state=[],
            start_time=self.ago(start_ago) if not halted else datetime_of(0),
            install_time=self.ago(86400 * self.rng.randint(30, 400)), last_updated=self.ago(5),
            other_config={}, hvm=hvm and not halted, nested_virt=False, nomigrate=False,
            current_domain_type="unspecified" if halted else dtype,
        )

    def disk(self, vm_name: str, idx: int, size_gib: float, sr: str, system: bool) -> str:
        size = int(size_gib * GiB)
        thick = sr in self.local_sr.values()
        used = size + 8 * MiB if thick else int(size * (0.15 + 0.6 * self.rng.random()))
        return self.c(
            "VDI", name_label=f"{vm_name} {idx}", name_description="",
            SR=sr, virtual_size=size, physical_utilisation=used, type="system" if system else "user",
            sharable=False, read_only=False, managed=True, location=self.store.new_uuid(),
            sm_config={"vdi_type": "vhd"}, other_config={}, on_boot="persist",
        )

    def vbd(self, vm: str, vdi: str, userdevice: int, attached: bool, cd: bool = False,
            bootable: bool = False) -> str:
        return self.c(
            "VBD", VM=vm, VDI=vdi, userdevice=str(userdevice),
            device=("xvd" + "abcdefghijklmnop"[userdevice]) if attached else "",
            bootable=bootable, mode="RO" if cd else "RW", type="CD" if cd else "Disk",
            unpluggable=not cd, empty=cd and vdi == NULL_REF, other_config={},
            currently_attached=attached, qos_algorithm_type="", qos_algorithm_params={},
            qos_supported_algorithms=[], storage_lock=False, status_code=0, status_detail="",
        )

    def guest_metrics(self, os: OsSpec, ips: list[str]) -> str:
        nets: dict[str, str] = {}
        for i, ip in enumerate(ips):
            nets[f"{i}/ip"] = ip
            nets[f"{i}/ipv4/0"] = ip
            nets[f"{i}/ipv6/0"] = "fe80::" + ":".join(
                f"{self.rng.randrange(65536):x}" for _ in range(4))
        osv = {"name": os.name, "distro": os.distro, "major": os.major, "minor": os.minor}
        if os.uname:
            osv["uname"] = os.uname
        return self.c(
            "VM_guest_metrics", os_version=osv,
            PV_drivers_version={"major": "9", "minor": "3", "micro": "3", "build": "1"} if os.windows
            else {"major": "8", "minor": "3", "micro": "3", "build": "1"},
            PV_drivers_up_to_date=True, PV_drivers_detected=True, memory={}, disks={},
            networks=nets, other=os.agent_other,
            last_updated=self.ago(30), other_config={}, live=True,
            can_use_hotplug_vbd="yes", can_use_hotplug_vif="yes",
        )

    def pick_host(self, i: int) -> str:
        return self.hosts[i % len(self.hosts)]

    def vms(self) -> None:
        specs = list(DEMO_VMS[: self.n_vms])
        states = ["Running"] * 6 + ["Halted"] * 3 + ["Suspended", "Paused"]
        tmpl_names = [o.template for o in OSES]
        for n in range(len(specs), self.n_vms):
            specs.append((
                f"vm-{n + 1:05d}", states[n % len(states)], tmpl_names[n % len(tmpl_names)],
                [0.5, 1, 2][n % 3], 1 + n % 4, [10 + (n % 5) * 10], [["prod", "dev", "test"][n % 3]], False,
            ))
        ip_n = 20
        for i, (name, state, tmpl, mem_gib, vcpus, disks, tags, local) in enumerate(specs):
            os = OS_BY_TEMPLATE.get(tmpl, OSES[0])
            mem = int(mem_gib * GiB)
            host = self.pick_host(i)
            sr = self.local_sr[host] if local else self.nfs
            running = state in ("Running", "Paused")
            rec = self.vm_base(name, mem, vcpus, os.windows)
            rec.update(
                name_description=f"{tmpl} VM" if i < len(DEMO_VMS) else "",
                power_state=state, is_a_template=False, tags=list(tags),
                other_config={"base_template_name": tmpl, "install-methods": "cdrom", "mac_seed": self.store.new_uuid(),
                              "import_task": "OpaqueRef:NULL"} if not os.windows else
                {"base_template_name": tmpl, "mac_seed": self.store.new_uuid()},
                affinity=host if local else NULL_REF,
                blocked_operations={},
            )
            if running:
                rec.update(resident_on=host, domid=self.domid[host], domarch="x64")
                self.domid[host] += 1
                if state == "Paused":
                    rec["power_state"] = "Paused"
            if name in PVH_VMS:
                # Linux guests booted PVH (no emulated devices: a read-only disk and
                # hot-plugged drives are fine there)
                rec.update(domain_type="pvh", HVM_boot_policy="", PV_bootloader="pygrub")
            uptime = 3600 * self.rng.randint(2, 24 * 60)
            rec["metrics"] = self.vm_metrics(not running, mem, vcpus, start_ago=uptime,
                                             dtype=rec["domain_type"])
            if state == "Suspended":
                rec["suspend_SR"] = self.nfs
                rec["suspend_VDI"] = self.c(
                    "VDI", name_label=f"Suspend image for {name}", SR=self.nfs,
                    virtual_size=mem + 8 * MiB, physical_utilisation=mem + 8 * MiB, type="suspend",
                    sharable=False, read_only=False, managed=True, location=self.store.new_uuid(),
                    other_config={}, sm_config={"vdi_type": "vhd"})
                rec["last_booted_record"] = ""
            vm = self.c("VM", **rec)
            if running:
                self.domains.append((vm, host))
            for d, size in enumerate(disks):
                vdi = self.disk(name, d, size, sr, system=(d == 0))
                # monitor-01's archive disk is deactivated (unplugged) while it runs
                live = running and not (name == "monitor-01" and d == 1)
                self.vbd(vm, vdi, d, live, bootable=(d == 0))
            cd_vdi = self.iso_vdis[i % len(self.iso_vdis)] if i % 4 == 0 else NULL_REF
            if i < len(DEMO_VMS) or i % 10 == 0:
                self.vbd(vm, cd_vdi, 3, running, cd=True)
            ips = [f"10.0.{1 + ip_n // 250}.{ip_n % 250 + 2}"]
            ip_n += 1
            nets = ["xenbr0"] if not name.startswith("db-") else ["xenbr0", "xenbr1"]
            if name.startswith("proxy"):
                nets = ["xenbr0", "xapi1"]
            for dev, bridge in enumerate(nets):
                self.c("VIF", device=str(dev), network=self.network_refs[bridge], VM=vm, MAC=_mac(self.rng),
                       MTU=1500, other_config={}, currently_attached=running,
                       qos_algorithm_type="", qos_algorithm_params={}, qos_supported_algorithms=[],
                       MAC_autogenerated=True, locking_mode="network_default",
                       ipv4_configuration_mode="None", ipv6_configuration_mode="None")
                if dev:
                    ips.append(f"192.168.{10 + dev}.{ip_n % 250 + 2}")
            if name == "monitor-01":
                # its probe interface on the second network is deactivated (unplugged)
                # while it runs; a fixed MAC keeps the pool's random draws as they were
                self.c("VIF", device="1", network=self.network_refs["xenbr1"], VM=vm,
                       MAC="02:4d:4f:4e:00:01", MTU=1500, other_config={},
                       currently_attached=False, qos_algorithm_type="",
                       qos_algorithm_params={}, qos_supported_algorithms=[],
                       MAC_autogenerated=False, locking_mode="network_default",
                       ipv4_configuration_mode="None", ipv6_configuration_mode="None")
            if running or state == "Suspended":
                gm = self.guest_metrics(os, ips)
                self.store.update(vm, {"guest_metrics": gm})
            if i < len(DEMO_VMS):
                self.snapshots(vm, name, i)

    def snapshots(self, vm: str, name: str, i: int) -> None:
        plan = {"db-01": ["before-upgrade", "nightly 2026-11-24"], "web-01": ["pre-deploy"],
                "legacy-erp": ["last known good"]}
        made = [self.snapshot_of(vm, label) for label in plan.get(name, [])]
        # xapi_vm_clone.ml: each snapshot's parent is the VM's parent then, and the
        # VM's parent becomes the snapshot (taken one after the other, by time)
        made.sort(key=lambda s: self.store.get(s, "VM")["snapshot_time"])
        parent = NULL_REF
        for snap in made:
            self.store.update(snap, {"parent": parent})
            parent = snap
        if made:
            self.store.update(vm, {"parent": parent})

    def snapshot_of(self, vm: str, label: str) -> str:
        store = self.store
        src = store.get(vm, "VM")
        rec = {k: v for k, v in src.items() if k in (
            "memory_static_min", "memory_static_max", "memory_dynamic_min", "memory_dynamic_max",
            "memory_target", "memory_overhead", "VCPUs_max", "VCPUs_at_startup", "platform",
            "HVM_boot_policy", "HVM_boot_params", "domain_type", "other_config", "tags",
            "actions_after_shutdown", "actions_after_reboot", "actions_after_crash",
            "HVM_shadow_multiplier", "hardware_platform_version", "has_vendor_device")}
        taken = self.rng.randint(1, 30) * 86400
        rec.update(
            name_label=label, name_description="", is_a_template=True, is_a_snapshot=True,
            snapshot_of=vm, snapshot_time=self.ago(taken), power_state="Halted",
            metrics=self.vm_metrics(True, src["memory_static_max"], src["VCPUs_max"]),
            user_version=1, domid=-1,
        )
        snap = self.c("VM", **rec)
        for vbd in src["VBDs"]:
            vb = store.get(vbd, "VBD")
            if vb["type"] != "Disk":
                continue
            vdi = store.get(vb["VDI"], "VDI")
            snap_vdi = self.c(
                "VDI", name_label=vdi["name_label"], name_description=vdi["name_description"],
                SR=vdi["SR"], virtual_size=vdi["virtual_size"],
                physical_utilisation=int(vdi["virtual_size"] * 0.05), type=vdi["type"],
                sharable=False, read_only=False, managed=True, location=self.store.new_uuid(),
                is_a_snapshot=True, snapshot_of=vb["VDI"], snapshot_time=self.ago(taken),
                sm_config={"vdi_type": "vhd"}, other_config={})
            self.vbd(snap, snap_vdi, int(vb["userdevice"]), False, bootable=vb["bootable"])
        return snap

    def custom_templates(self) -> None:
        for name, base, mem, disks in [
            ("web-base (Debian 12)", "Debian Bookworm 12", 2 * GiB, [20]),
            ("k8s-node-template", "Ubuntu Jammy Jellyfish 22.04", 8 * GiB, [40]),
            ("win2022-golden", "Windows Server 2022 (64-bit)", 4 * GiB, [64]),
        ]:
            windows = base.startswith("Win")
            rec = self.vm_base(name, mem, 2, windows)
            rec.update(is_a_template=True, is_default_template=False, name_description=f"Custom template from {base}",
                       other_config={"base_template_name": base, "instant": "true"}, tags=["template"],
                       metrics=self.vm_metrics(True, mem, 2))
            t = self.c("VM", **rec)
            for d, size in enumerate(disks):
                vdi = self.disk(name, d, size, self.nfs, system=(d == 0))
                self.vbd(t, vdi, d, False, bootable=(d == 0))
            self.vbd(t, NULL_REF, 3, False, cd=True)

    def messages(self) -> None:
        h = [self.store.get(x, "host") for x in self.hosts]
        uuid_of: dict[str, str] = {
            str(r["name_label"]): str(r["uuid"]) for r in self.store.all("VM").values()
        }
        msgs = [
            ("ALARM", 1, "Host", h[0]["uuid"], 1800,
             'value: 0.934000\nconfig:\n<variable>\n\t<name value="cpu_usage"/>\n\t<alarm_trigger_level value="0.9"/>\n</variable>\n'),
            ("HOST_CLOCK_SKEW_DETECTED", 3, "Host", h[-1]["uuid"], 7200,
             f"The clock on server '{h[-1]['name_label']}' may not be synchronized with the other servers in the pool."),
            ("VM_CRASHED", 2, "VM", uuid_of.get("legacy-erp", ""), 86400 * 2,
             "VM 'legacy-erp' crashed and was restarted."),
            ("VM_STARTED", 5, "VM", uuid_of.get("web-01", ""), 600, "VM 'web-01' started."),
            ("VM_SNAPSHOTTED", 5, "VM", uuid_of.get("db-01", ""), 3600 * 20, "VM 'db-01' snapshotted."),
            ("ALARM", 3, "SR", self.store.get(self.nfs, "SR")["uuid"], 5400,
             'value: 0.812000\nconfig:\n<variable>\n\t<name value="physical_utilisation"/>\n\t<alarm_trigger_level value="0.8"/>\n</variable>\n'),
            # a realistic mix of the rest, as a pool's day leaves them (bodies in
            # xapi's words: ocaml/xapi/xapi_vm_lifecycle.ml, xapi_pif.ml, ...)
            ("VM_SHUTDOWN", 5, "VM", uuid_of.get("web-staging", ""), 3600 * 5,
             "VM 'web-staging' shutdown."),
            ("VM_REBOOTED", 5, "VM", uuid_of.get("win-rds-01", ""), 3600 * 9,
             "VM 'win-rds-01' rebooted."),
            ("VM_SUSPENDED", 5, "VM", uuid_of.get("k8s-node-03", ""), 3600 * 26,
             "VM 'k8s-node-03' suspended."),
            ("VM_PAUSED", 5, "VM", uuid_of.get("ci-runner-02", ""), 3600 * 30,
             "VM 'ci-runner-02' paused."),
            ("BOND_STATUS_CHANGED", 3, "Host", h[1]["uuid"], 86400 * 3,
             "The status of the eth0+eth1 bond changed: 1/2 up"),
            ("MULTIPATH_PERIODIC_ALERT", 3, "Host", h[-1]["uuid"], 86400 * 4,
             f"Unhealthy paths:\n[20261129T08:02:11Z] host={h[-1]['uuid']}; "
             f"host-name={h[-1]['name_label']}; pbd=8a1c0d3e; scsi_id=3600a0980383030; "
             "current=1; max=2"),
            ("POOL_MASTER_TRANSITION", 4, "Host", h[0]["uuid"], 86400 * 6,
             f"The host '{h[0]['name_label']}' is now the pool master."),
        ]
        for name, prio, cls, uuid, ago, body in msgs:
            if uuid:
                self.c("message", name=name, priority=prio, cls=cls, obj_uuid=uuid,
                       timestamp=self.ago(ago), body=body)

    def orphans(self) -> None:
        """An archive SR no running VM uses, left unplugged on the last host (the
        Storage view warns about it; repair plugs it), and disks no VM uses any more
        (a VM deleted with its disks kept), for the orphan filter."""
        c = self.c
        archive = c("SR", name_label="Archive", name_description="NFS SR [10.0.0.6:/export]",
                    type="nfs", content_type="user", shared=True, physical_size=2 * TiB,
                    other_config={"auto-scan": "false"}, sm_config={}, tags=[])
        for i, host in enumerate(self.hosts):
            c("PBD", host=host, SR=archive, currently_attached=i < len(self.hosts) - 1,
              other_config={}, device_config={"server": "10.0.0.6", "serverpath": "/export",
                                              "nfsversion": "4.1"})
        local = self.local_sr[self.hosts[0]]
        for name, size, sr in (("old-web 0", 16 * GiB, archive), ("scratch", 4 * GiB, local)):
            used = size + 8 * MiB if sr == local else size // 4
            c("VDI", name_label=name, name_description="no VM uses this disk", SR=sr,
              virtual_size=size, physical_utilisation=used, type="user", sharable=False,
              read_only=False, managed=True, location=self.store.new_uuid(),
              sm_config={"vdi_type": "vhd"}, other_config={}, on_boot="persist")

    def consoles(self) -> None:
        """Each domain's consoles (made last: the seeded refs of everything else stay
        as they were)."""
        for vm, host in self.domains:
            if self.store.get(vm, "VM")["is_control_domain"]:
                control_domain_consoles(self.store, vm, host)
            else:
                create_consoles(self.store, vm, host)

    def finish(self) -> None:
        store = self.store
        # SR usage from its VDIs; host free memory from its running domains
        for sr, row in store.all("SR").items():
            vdis = [store.get(v, "VDI") for v in row["VDIs"]]
            phys = sum(v["physical_utilisation"] for v in vdis)
            virt = sum(v["virtual_size"] for v in vdis)
            size = row["physical_size"] if row["content_type"] != "iso" or row["physical_size"] else phys
            store.update(sr, {"physical_utilisation": phys, "virtual_allocation": virt, "physical_size": max(size, phys)})
        for host in self.hosts:
            hrow = store.get(host, "host")
            used = hrow["memory_overhead"] + sum(
                store.get(v, "VM")["memory_dynamic_max"] + store.get(v, "VM")["memory_overhead"]
                for v in hrow["resident_VMs"]
            )
            m = hrow["metrics"]
            total = store.get(m, "host_metrics")["memory_total"]
            store.update(m, {"memory_free": max(0, total - used)})


def build(sim: Simulator, hosts: int = 3, vms: int | None = None) -> None:
    Builder(sim, hosts, vms).build()
