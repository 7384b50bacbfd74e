# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Input checks, made before any request: names, vmids, config keys, property strings, new disks.

A request PVE would refuse with a terse 400, or worse accept and compare as "no change", is refused here
with the rule spelled out and "nothing was changed". No I/O."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import difflib
import re
from typing import Any, Dict

from ansible_collections.pmx.multicluster.plugins.module_utils.errors import GuestConflictError, SnapshotError
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.kinds import GuestKind
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.values import (
    NEW_DISK,
    disk_removal,
    split_props,
    word,
)

# PVE's vmid range (pve-vmid) and its rule for guest names (dns-name: labels of letters, digits and '-',
# not starting or ending with '-', joined by '.'); RFC 1035 lengths on top, as DNS needs them.
VMID_MIN, VMID_MAX = 100, 999999999
DNS_LABEL = re.compile(r'[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?')
DNS_LABEL_MAX, DNS_NAME_MAX = 63, 253
# Config keys of PVE 9's create and config endpoints (digits stand for any index), per kind. Parameters
# that are not settings (node, vmid, digest, delete, lock, skiplock...) are left out on purpose.
QEMU_CONFIG_KEYS = (
    'acpi', 'affinity', 'agent', 'allow-ksm', 'amd-sev', 'arch', 'args', r'audio\d+', 'autostart', 'balloon', 'bios',
    'boot', 'bootdisk', 'cdrom', 'cicustom', 'cipassword', 'citype', 'ciupgrade', 'ciuser', 'cores', 'cpu', 'cpulimit',
    'cpuunits', 'description', r'efidisk\d+', 'freeze', 'hookscript', r'hostpci\d+', 'hotplug', 'hugepages', r'ide\d+',
    'import-working-storage', 'intel-tdx', r'ipconfig\d+', 'ivshmem', 'keephugepages', 'keyboard', 'kvm',
    'localtime', 'machine', 'memory', 'migrate_downtime', 'migrate_speed', 'nameserver', r'net\d+', 'numa',
    r'numa\d+', 'onboot', 'ostype', r'parallel\d+', 'protection', 'reboot', r'rng\d+', r'sata\d+', r'scsi\d+',
    'scsihw', 'searchdomain', r'serial\d+', 'shares', r'smbios\d+', 'smp', 'sockets', 'spice_enhancements',
    'sshkeys', 'startdate', 'startup', 'tablet', 'tags', 'tdf', 'template', r'tpmstate\d+', r'unused\d+', r'usb\d+',
    'vcpus', 'vga', r'virtio\d+', r'virtiofs\d+', 'vmgenid', 'vmstatestorage', 'watchdog')
LXC_CONFIG_KEYS = (
    'arch', 'cmode', 'console', 'cores', 'cpulimit', 'cpuunits', 'debug', 'description', r'dev\d+', 'entrypoint', 'env',
    'features', 'hookscript', 'memory', r'mp\d+', 'nameserver', r'net\d+', 'onboot', 'ostemplate', 'ostype',
    'password', 'protection', 'rootfs', 'searchdomain', 'ssh-public-keys', 'startup', 'swap', 'tags', 'template',
    'timezone', 'tty', 'unprivileged', r'unused\d+')
# Keys that are options of their own: config must not smuggle them past the module's checks.
OPTION_KEYS = {'name': 'name', 'hostname': 'name (hostname)', 'vmid': 'vmid', 'node': 'node', 'pool': 'pool',
               'storage': 'target_storage (clone) or a disk volume', 'lock': None, 'skiplock': None,
               'digest': None, 'delete': None, 'revert': None}


def check_guest_name(name: Any, label: str = 'guest') -> None:
    """:raises GuestConflictError: the name is not what PVE accepts (a DNS name), said before any request."""
    if name is None:
        return
    text = str(name)
    labels = text.split('.')
    bad = [part for part in labels if not DNS_LABEL.fullmatch(part)]
    problem = None
    if not text:
        problem = 'it is empty'
    elif text != text.strip():
        problem = 'it starts or ends with whitespace (a trailing newline?)'
    elif bad:
        problem = "'%s' is not a DNS label: use letters, digits and '-', not at the start or end" % bad[0]
    elif any(len(part) > DNS_LABEL_MAX for part in labels):
        problem = 'a part between dots is longer than %d characters' % DNS_LABEL_MAX
    elif len(text) > DNS_NAME_MAX:
        problem = 'it is longer than %d characters' % DNS_NAME_MAX
    if problem:
        raise GuestConflictError("the %s name %r is not valid for Proxmox VE (it must be a DNS name such as "
                                 "prod-web01): %s; nothing was changed" % (label, text, problem))


def check_vmid(vmid: Any) -> None:
    """:raises GuestConflictError: a vmid outside PVE's range 100..999999999."""
    if vmid is None:
        return
    if isinstance(vmid, bool) or not isinstance(vmid, int) or not VMID_MIN <= vmid <= VMID_MAX:
        raise GuestConflictError('vmid %r is out of range: Proxmox VE vmids are whole numbers from %d to %d; '
                                 'nothing was changed' % (vmid, VMID_MIN, VMID_MAX))


def check_config_keys(kind: GuestKind, config: Dict[str, Any]) -> None:
    """:raises GuestConflictError: a raw config key PVE does not know for this kind, or one that is an option."""
    known = QEMU_CONFIG_KEYS if kind.type == 'qemu' else LXC_CONFIG_KEYS
    for key in sorted(config or {}):
        if key in OPTION_KEYS:
            option = OPTION_KEYS[key]
            why = ((': use the %s option' % option) if option
                   else ' (it controls how PVE applies a change, not a setting)')
            raise GuestConflictError("config key '%s' is not accepted%s; nothing was changed" % (key, why))
        if not any(re.fullmatch(pattern, key) for pattern in known):
            plain = [p.replace(r'\d+', '0') for p in known]
            close = difflib.get_close_matches(key, plain, n=1, cutoff=0.6)
            raise GuestConflictError(
                "config key '%s' is not a Proxmox VE %s setting%s; nothing was changed"
                % (key, kind.label, (" (did you mean '%s'?)" % close[0]) if close else ''))


def check_property_strings(kind: GuestKind, config: Dict[str, Any]) -> None:
    """:raises GuestConflictError: a malformed PVE property string in a net, disk, mount or other property key.

    Checked before any request, because a malformed value would otherwise compare as "no change": in
    ``virtio,vmbr1`` the part ``vmbr1`` has no ``=``, so it is neither the model nor a property. Only the
    first part may stand alone (the key's default property: a disk's volume, a VM net's model).
    """
    for key in sorted(config or {}):
        value = config[key]
        is_net = kind.is_net(key)
        is_props, default = kind.default_key(key)
        if value is None or not (is_net or is_props) or isinstance(value, (dict, bool, int, float)):
            continue
        if kind.is_disk(key) and disk_removal(value):
            continue  # detached / absent: a disk to take out, not a property string
        text = word(value)
        parts = [part.strip() for part in text.split(',') if part.strip()]
        example = kind.net_example if is_net else ('local-lvm:8,mp=/srv' if key.startswith('mp') else None)
        hint = (' (for example %s)' % example) if example else ''
        problem = None
        props = {}
        for index, part in enumerate(parts):
            name, sep, item = part.partition('=')
            if not sep:
                bare_ok = index == 0 and (default is not None or (is_net and name in kind.net_models))
                if not bare_ok:
                    problem = "'%s' is not key=value" % part
                    break
                props[default or 'model'] = name
                continue
            if not name.strip():
                problem = "'%s' has no key before '='" % part
                break
            props[name.strip()] = item.strip()
        if problem is None and is_net:
            if kind.net_models and 'model' not in props and not any(m in props for m in kind.net_models):
                problem = 'it names no model first (%s...)' % ', '.join(('virtio', 'e1000', 'vmxnet3'))
            missing = [p for p in kind.net_requires if p not in props]
            if missing and problem is None:
                problem = 'it has no %s=' % missing[0]
        if problem is None and key.startswith('mp') and kind.is_disk(key) and 'mp' not in props:
            problem = 'a mount point needs mp=/path'
        if problem:
            raise GuestConflictError("%s: '%s' is not a valid Proxmox VE property string: %s%s; nothing was changed"
                                     % (key, text, problem, hint))


VOLUME_NAME = re.compile(r'^[^/:\s]+:(?:(?:vm|base|subvol|basevol)-\d+-disk-\d+|\d+/\S+|\S+/\S+)$')


def check_new_disk(kind: GuestKind, key: str, value: Any) -> None:
    """For kinds that ask for it: a new disk's volume must be ``storage:size`` (GiB), an existing volume or a path.

    :raises GuestConflictError: anything else (``local-lvm:lots``, ``8G``), naming the key and the expected form.
    """
    if not (kind.check_new_disks and kind.is_disk(key)) or value is None:
        return
    volume = split_props(value, kind.disk_default_key).get(kind.disk_default_key, '')
    if NEW_DISK.match(volume) or VOLUME_NAME.match(volume) or volume.startswith('/'):
        return
    raise GuestConflictError(
        "%s: '%s' is not a valid volume; give STORAGE:SIZE in GiB (for example local-lvm:8), an existing "
        "volume (local-lvm:vm-100-disk-1) or a path, then any options after commas (local-lvm:8,mp=/srv)"
        % (key, word(value)))


# PVE's pve-configid format for snapshot names: a letter, then letters, digits, '-' and '_'; at most 40 characters.
SNAPNAME_RE = re.compile(r'^[A-Za-z][A-Za-z0-9_-]{1,39}$')
RESERVED_SNAPNAMES = ('current', 'pending', 'vzdump')


def check_snapshot_name(snapname: Any) -> str:
    """The snapshot name if PVE accepts it; :raises SnapshotError: with the rule spelled out."""
    name = str(snapname or '').strip()
    if name.lower() in RESERVED_SNAPNAMES:
        raise SnapshotError("'%s' is a reserved snapshot name; choose another one" % name)
    if not SNAPNAME_RE.match(name):
        raise SnapshotError("invalid snapshot name '%s': it must start with a letter, contain only letters, "
                            "digits, '-' and '_', and be 2 to 40 characters long" % name)
    return name
