# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Guest kinds: what differs between QEMU VMs and LXC containers, and the API paths of a guest.

One registry, ``KINDS``, instead of ``if type == 'qemu'`` branches: every front end asks the kind.
No I/O."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

# How long a write waits for its Proxmox task, by default (seconds): the modules' and the MCP server's timeout.
DEFAULT_TIMEOUT = 300
QEMU_NET_MODELS = ('e1000', 'e1000-82540em', 'e1000-82544gc', 'e1000-82545em', 'e1000e', 'i82551', 'i82557b',
                   'i82559er', 'ne2k_isa', 'ne2k_pci', 'pcnet', 'rtl8139', 'virtio', 'vmxnet3')


@dataclass(frozen=True)
class GuestKind:
    """What differs between guest types."""

    type: str                       # API path segment and /cluster/resources type: qemu or lxc
    label: str                      # for messages: VM or container
    name_key: str                   # config key of the name: name (qemu) or hostname (lxc)
    disk_pattern: str               # config keys that are disks (regex)
    net_pattern: str = r'net\d+'    # config keys that are network devices
    mac_key: str = 'macaddr'        # property of a net value that holds the MAC
    net_models: Tuple[str, ...] = ()  # a net property named after a model carries the MAC (virtio=AA:...)
    disk_default_key: str = 'file'
    # Keys whose values are PVE property strings, with their default key (the value before the first '=').
    property_keys: Tuple[Tuple[str, Optional[str]], ...] = ()
    bool_keys: Tuple[str, ...] = ()
    # Keys PVE never returns in clear (set at creation only, never compared).
    write_only: Tuple[str, ...] = ()
    # Parameters of the create request that are not config keys (an LXC ostemplate): never compared or updated.
    create_only: Tuple[str, ...] = ()
    # Keys a new guest (not a clone) cannot be created without.
    create_requires: Tuple[str, ...] = ()
    # Config keys fixed at creation (an LXC's unprivileged): a mismatch is a warning, not a change.
    fixed_keys: Tuple[str, ...] = ()
    # Check the volume spec of a new disk (storage:size, storage:volume-name or /path) before PVE sees it.
    check_new_disks: bool = False
    config_method: str = 'POST'     # how the config is written: POST (qemu, a task) or PUT (lxc, synchronous)
    cli: str = 'qm'                 # the node's command line tool, for messages (qm unlock / pct unlock)
    # Task types that change a guest's power state or existence; a rerun waits for one still running.
    task_types: Tuple[str, ...] = ('qmstart', 'qmstop', 'qmshutdown', 'qmreboot', 'qmreset', 'qmsuspend', 'qmresume',
                                   'qmdestroy')
    # Net properties a new device must have, and an example of a valid net value, for messages.
    net_requires: Tuple[str, ...] = ()
    net_example: str = 'virtio,bridge=vmbr0'

    def is_disk(self, key: str) -> bool:
        return re.fullmatch(self.disk_pattern, key) is not None

    def is_net(self, key: str) -> bool:
        return re.fullmatch(self.net_pattern, key) is not None

    def default_key(self, key: str) -> Tuple[bool, Optional[str]]:
        """(is a property string, its default key) for a config key."""
        if self.is_disk(key):
            return True, self.disk_default_key
        for pattern, default in self.property_keys:
            if re.fullmatch(pattern, key):
                return True, default
        return False, None


QEMU = GuestKind(
    type='qemu', label='VM', name_key='name',
    disk_pattern=r'(?:ide[0-3]|sata[0-5]|scsi(?:[0-9]|[12][0-9]|30)|virtio(?:[0-9]|1[0-5])|efidisk0|tpmstate0)',
    mac_key='macaddr', net_models=QEMU_NET_MODELS,
    property_keys=((r'ipconfig\d+', None), (r'boot', 'legacy'), (r'agent', 'enabled'), (r'memory', 'current'),
                   (r'cpu', 'cputype'), (r'vga', 'type'), (r'smbios1', None), (r'startup', None),
                   (r'rng0', 'source'), (r'(?:hostpci|usb)\d+', 'host'), (r'audio0', 'device'),
                   (r'spice_enhancements', None), (r'amd-sev', 'type'), (r'efidisk0', 'file')),
    bool_keys=('onboot', 'protection', 'template', 'numa', 'acpi', 'kvm', 'tablet', 'localtime', 'freeze', 'reboot',
               'ciupgrade'),
    write_only=('cipassword',),
)

LXC = GuestKind(
    type='lxc', label='container', name_key='hostname',
    disk_pattern=r'(?:rootfs|mp\d+)', mac_key='hwaddr', disk_default_key='volume',
    property_keys=((r'features', None), (r'startup', None)),
    bool_keys=('onboot', 'protection', 'template', 'unprivileged', 'console', 'debug'),
    write_only=('password',),
    create_only=('ostemplate', 'password', 'ssh-public-keys'),
    create_requires=('ostemplate',),
    fixed_keys=('unprivileged',),
    check_new_disks=True, config_method='PUT', cli='pct',
    task_types=('vzstart', 'vzstop', 'vzshutdown', 'vzreboot', 'vzsuspend', 'vzresume', 'vzdestroy'),
    net_requires=('name',), net_example='name=eth0,bridge=vmbr0,ip=dhcp',
)


KINDS: Dict[str, GuestKind] = {QEMU.type: QEMU, LXC.type: LXC}


def kind_of(guest_type: str) -> GuestKind:
    """The kind of a /cluster/resources type (``qemu`` or ``lxc``).

    :raises ValueError: any other type.
    """
    try:
        return KINDS[guest_type]
    except KeyError:
        raise ValueError("a guest type must be one of %s, got '%s'" % (', '.join(KINDS), guest_type)) from None


def guest_path(guest_type: str, node: str, vmid, tail: str = '') -> str:
    """The API path of a guest (``nodes/<node>/<qemu|lxc>/<vmid>[/tail]``): the one path builder."""
    return 'nodes/%s/%s/%d%s' % (node, kind_of(guest_type).type, int(vmid), ('/' + tail.strip('/')) if tail else '')


def guests_path(guest_type: str, node: str) -> str:
    """The API path of a node's guests of one type (``nodes/<node>/<qemu|lxc>``), where a new one is created."""
    return 'nodes/%s/%s' % (node, kind_of(guest_type).type)


def label_of(guest_type: Optional[str]) -> str:
    """'VM' or 'container', for messages."""
    return KINDS[guest_type].label if guest_type in KINDS else 'guest'
