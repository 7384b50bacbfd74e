# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Guest lifecycle shared by pmx_vm, pmx_lxc and the MCP server.

Pure Python over the registry and its clients: no Ansible import. A
``GuestKind`` says what differs between VMs (``qemu``) and containers
(``lxc``): the API path segment, the name key and which config keys are
disks and network devices. ``GuestManager`` finds, routes, creates, clones,
updates, powers and deletes guests of one kind; every method returns data
(``changed``, ``before``/``after``, ``route``...) and raises ClusterError
subclasses. With ``check_mode`` it reads, computes and reports, and writes
nothing.

The normalisation functions (``split_props``, ``values_equal``,
``config_diff``...) are plain functions so that they can be tested as tables.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import difflib
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import quote, unquote

from ansible_collections.pmx.multicluster.plugins.module_utils.errors import (
    ApiError, DuplicateGuestError, GuestConflictError, GuestLockedError, GuestNotFoundError, NodeOfflineError,
    ResourceNotFoundError, TaskError, TaskTimeoutError, vmid_taken)
from ansible_collections.pmx.multicluster.plugins.module_utils.router import same_name

DEFAULT_TIMEOUT = 300
LOCK_POLL = 0.5
TRUE_WORDS = ('1', 'true', 'yes', 'on')
FALSE_WORDS = ('0', 'false', 'no', 'off')
# PVE answers these when a guest is locked by a task or its config lock is held.
LOCKED_MESSAGE = re.compile(r"(?:VM|CT) is locked \((?P<lock>[\w-]+)\)|can't lock file '[^']*' - got timeout")
NEW_DISK = re.compile(r'^(?:(?P<storage>[^/:\s]+):)?(?P<size>\d+(?:\.\d+)?)$')
# A shutdown that did not finish in time: qemu says "got timeout", pct "container did not stop".
SHUTDOWN_TIMEOUT = re.compile(r'timeout|timed out|did not stop', re.I)
SIZE_UNITS = {'': 1024 ** 3, 'K': 1024, 'M': 1024 ** 2, 'G': 1024 ** 3, 'T': 1024 ** 4}
# Locks of a guest that is being made: its name may not be known yet (PVE lists a container being created
# without its hostname), so a guest with such a lock may be the one a run is about to create.
CREATING_LOCKS = ('create', 'clone')
# How often a create takes a fresh vmid when another create took the one /cluster/nextid gave.
VMID_ATTEMPTS = 5
# PVE's own size of a container's root file system when the create request gives none (GiB).
LXC_DEFAULT_ROOTFS_GIB = 4
# A power action that PVE refuses because the guest is already where the action would take it.
ALREADY_DONE = {'start': re.compile(r'already running', re.I), 'shutdown': re.compile(r'not running', re.I),
                'stop': re.compile(r'not running', re.I)}
QEMU_NET_MODELS = ('e1000', 'e1000-82540em', 'e1000-82544gc', 'e1000-82545em', 'e1000e', 'i82551', 'i82557b',
                   'i82559er', 'ne2k_isa', 'ne2k_pci', 'pcnet', 'rtl8139', 'virtio', 'vmxnet3')


# ---------------------------------------------------------------------------- kinds

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


# ---------------------------------------------------------------------- input checks (before any request)

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


def check_config_keys(kind: 'GuestKind', config: Dict[str, Any]) -> None:
    """:raises GuestConflictError: a raw config key PVE does not know for this kind, or one that is an option."""
    known = QEMU_CONFIG_KEYS if kind.type == 'qemu' else LXC_CONFIG_KEYS
    for key in sorted(config or {}):
        if key in OPTION_KEYS:
            option = OPTION_KEYS[key]
            why = (': use the %s option' % option) if option else ' (it controls how PVE applies a change, not a setting)'
            raise GuestConflictError("config key '%s' is not accepted%s; nothing was changed" % (key, why))
        if not any(re.fullmatch(pattern, key) for pattern in known):
            plain = [p.replace(r'\d+', '0') for p in known]
            close = difflib.get_close_matches(key, plain, n=1, cutoff=0.6)
            raise GuestConflictError(
                "config key '%s' is not a Proxmox VE %s setting%s; nothing was changed"
                % (key, kind.label, (" (did you mean '%s'?)" % close[0]) if close else ''))


def check_property_strings(kind: 'GuestKind', config: Dict[str, Any]) -> None:
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
        text = _word(value)
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


def with_cluster_defaults(kind: 'GuestKind', config: Dict[str, Any], current: Dict[str, Any],
                          storage: Optional[str], bridge: Optional[str], creating: bool = False,
                          cluster: str = '') -> Dict[str, Any]:
    """``config`` with the cluster's DEFAULT_STORAGE and DEFAULT_BRIDGE filled in where it names none.

    Only for what is new (a key the guest does not have yet): a disk given as a bare size (``32``) goes
    to ``storage``, a network device without ``bridge=`` gets ``bridge``, and a new container without a
    root file system gets one of PVE's default size (4 GiB) on ``storage``. Existing devices are never
    touched. Without a default storage a VM disk that names none is an error before any request; a
    container's bare size is left to PVE, which puts it on its own default storage.
    """
    out = dict(config)
    for key, value in config.items():
        if value is None or key in current or isinstance(value, (dict, bool)):
            continue
        text = _word(value)
        if kind.is_disk(key):
            volume, sep, rest = text.partition(',')
            new = NEW_DISK.match(volume)
            if not new or new.group('storage'):
                continue
            if storage:
                out[key] = '%s:%s%s%s' % (storage, volume, sep, rest)
            elif not kind.check_new_disks:
                raise GuestConflictError(
                    "%s: the new disk '%s' names no storage, and cluster '%s' has no default storage; give "
                    "STORAGE:SIZE (for example local-lvm:%s) or set PROXMOX_CLUSTER_%s_DEFAULT_STORAGE; nothing "
                    "was changed" % (key, text, cluster, volume, cluster), cluster)
        elif kind.is_net(key) and bridge and 'bridge' not in split_net(text, kind):
            out[key] = '%s,bridge=%s' % (text, bridge)
    if creating and storage and kind.type == 'lxc' and 'rootfs' not in config:
        out['rootfs'] = '%s:%d' % (storage, LXC_DEFAULT_ROOTFS_GIB)
    return out


# ---------------------------------------------------------------------- normalisation

def _word(value: Any) -> str:
    """A scalar as PVE stores it: booleans as 1/0, the rest as trimmed text."""
    if isinstance(value, bool):
        return '1' if value else '0'
    return str(value).strip()


def _bool_word(value: Any) -> str:
    text = _word(value).lower()
    if text in TRUE_WORDS:
        return '1'
    if text in FALSE_WORDS:
        return '0'
    return text


def _number(text: str):
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return None


def _scalar_equal(a: Any, b: Any) -> bool:
    a, b = _word(a), _word(b)
    if a == b:
        return True
    na, nb = _number(a), _number(b)
    if na is not None and nb is not None:
        return na == nb
    return _bool_word(a) == _bool_word(b) and _bool_word(a) in ('0', '1')


def split_props(text: Any, default_key: Optional[str] = None) -> Dict[str, str]:
    """A PVE property string (``virtio,bridge=vmbr0`` or ``order=scsi0;net0``) as a dict.

    A part without ``=`` is the value of ``default_key`` (or, without one, a key whose value is empty).
    """
    props: Dict[str, str] = {}
    for part in _word(text).split(','):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition('=')
        if not sep:
            if default_key and default_key not in props:
                props[default_key] = key
            else:
                props[key] = ''
            continue
        props[key.strip()] = value.strip()
    return props


def split_net(text: Any, kind: GuestKind = QEMU) -> Dict[str, str]:
    """A net value as a dict with ``model`` and the kind's MAC key (``virtio=BC:..`` split in two)."""
    props: Dict[str, str] = {}
    for key, value in split_props(text).items():
        if key in kind.net_models:
            props['model'] = key
            if value:
                props[kind.mac_key] = value
        else:
            props[key] = value
    if kind.mac_key in props:
        props[kind.mac_key] = props[kind.mac_key].upper()
    return props


def size_bytes(text: Any) -> Optional[int]:
    """``32G``, ``32768M``, ``32`` (GiB, as PVE's new-disk syntax) in bytes; None if not a size."""
    found = re.fullmatch(r'(\d+(?:\.\d+)?)([KMGT]?)', _word(text).upper())
    if not found:
        return None
    return int(float(found.group(1)) * SIZE_UNITS[found.group(2)])


def normalise_tags(value: Any) -> List[str]:
    """Tags as a sorted list: PVE accepts ``;``, ``,`` and spaces as separators and orders them itself."""
    if isinstance(value, (list, tuple, set)):
        items = [str(v) for v in value]
    else:
        items = re.split(r'[;, ]+', _word(value))
    return sorted(set(t.strip().lower() for t in items if t and t.strip()))


def _props_equal(desired: Dict[str, str], current: Dict[str, str]) -> bool:
    """Every property the user gave has the same value (booleans and numbers normalised)."""
    for key, value in desired.items():
        if key not in current:
            if _bool_word(value) == '0' or value == '':
                continue  # an explicit "off" equals an absent (default off) flag
            return False
        if not _scalar_equal(value, current[key]):
            return False
    return True


def disk_equal(desired: Any, current: Any, default_key: str = 'file') -> Tuple[bool, Optional[str]]:
    """(equal, warning) for a disk: ``local-lvm:32`` matches an existing 32G disk on local-lvm.

    Size and storage of an existing disk are never changed by an update (that needs a resize or a
    move); a mismatch is reported as a warning instead of a change.
    """
    want = split_props(desired, default_key)
    have = split_props(current, default_key)
    want_volume = want.pop(default_key, '')
    have_volume = have.get(default_key, '')
    new = NEW_DISK.match(want_volume)
    warning = None
    if new:
        have_storage = have_volume.split(':', 1)[0] if ':' in have_volume else None
        if new.group('storage') and have_storage and new.group('storage') != have_storage:
            warning = 'is on storage %s, not %s (disks are not moved)' % (have_storage, new.group('storage'))
        want_size = int(float(new.group('size')) * SIZE_UNITS['G'])
        have_size = size_bytes(have.get('size', ''))
        if have_size is not None and have_size != want_size:
            warning = 'is %s, not %sG (disks are not resized)' % (have.get('size'), new.group('size'))
    elif want_volume and want_volume != have_volume:
        return False, None
    want.pop('size', None)
    return _props_equal(want, have), warning


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
        % (key, _word(value)))


def values_equal(kind: GuestKind, key: str, desired: Any, current: Any) -> bool:
    """Whether a requested config value is what PVE holds, in PVE's own formats.

    Memory as string or int, booleans as 1/0/true, tags in any order and separator, descriptions
    with a trailing newline, property strings in any order with only the given properties compared,
    and a net's generated MAC ignored unless the request names one.
    """
    if current is None:
        return desired is None or _word(desired) == ''
    if desired is None:
        return False
    if key == 'tags':
        return normalise_tags(desired) == normalise_tags(current)
    if key == 'description':
        return _word(desired).rstrip() == _word(current).rstrip()
    if key == 'sshkeys':
        return unquote(_word(desired)).strip() == unquote(_word(current)).strip()
    if key in kind.bool_keys:
        return _bool_word(desired) == _bool_word(current)
    if kind.is_disk(key):
        return disk_equal(desired, current, kind.disk_default_key)[0]
    if kind.is_net(key):
        return _props_equal(split_net(desired, kind), split_net(current, kind))
    is_props, default = kind.default_key(key)
    if is_props:
        return _props_equal(split_props(desired, default), split_props(current, default))
    return _scalar_equal(desired, current)


def api_value(key: str, value: Any) -> Any:
    """A desired value as the API takes it (booleans as 1/0, tag lists joined, ssh keys url-encoded)."""
    if isinstance(value, bool):
        return 1 if value else 0
    if key == 'tags':
        return ';'.join(normalise_tags(value))
    if key == 'sshkeys':
        text = unquote(_word(value))
        return quote(text.strip() + '\n', safe='')
    return value


def keep_mac(kind: GuestKind, desired: Any, current: Any) -> Any:
    """A net value to write: the current MAC kept when the request gives none (else PVE makes a new one)."""
    want = split_net(desired, kind)
    have = split_net(current, kind) if current else {}
    if kind.mac_key in want or kind.mac_key not in have:
        return desired
    if kind.net_models and want.get('model'):
        model = want.pop('model')
        want.pop(kind.mac_key, None)
        rest = ['%s=%s' % (k, v) if v != '' else k for k, v in want.items()]
        return ','.join(['%s=%s' % (model, have[kind.mac_key])] + rest)
    return '%s,%s=%s' % (_word(desired), kind.mac_key, have[kind.mac_key])


@dataclass
class ConfigDiff:
    """What an update changes: the values to write, and before/after of the keys concerned."""

    changes: Dict[str, Any] = field(default_factory=dict)
    before: Dict[str, Any] = field(default_factory=dict)
    after: Dict[str, Any] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def config_diff(kind: GuestKind, desired: Dict[str, Any], current: Dict[str, Any],
                label: str = 'guest') -> ConfigDiff:
    """Compare the requested keys with the current (pending-aware) config; only differing keys change.

    Write-only keys (a cloud-init password) are not compared. An existing disk is never resized or
    moved: a size or storage mismatch is a warning.
    """
    diff = ConfigDiff()
    for key in sorted(desired):
        want = desired[key]
        if want is None or key in kind.write_only or key in kind.create_only:
            continue
        have = current.get(key)
        if have is None:
            check_new_disk(kind, key, want)
        if key in kind.fixed_keys:
            if have is not None and not values_equal(kind, key, want, have):
                diff.warnings.append('%s: %s is %s and cannot be changed after creation (not %s)'
                                     % (label, key, have, _word(api_value(key, want))))
            continue
        if kind.is_disk(key) and have is not None:
            equal, warning = disk_equal(want, have, kind.disk_default_key)
            if warning:
                diff.warnings.append('%s: disk %s %s' % (label, key, warning))
            if equal:
                continue
        elif values_equal(kind, key, want, have):
            continue
        value = api_value(key, want)
        if kind.is_net(key) and have is not None:
            value = keep_mac(kind, value, have)
        diff.changes[key] = value
        diff.before[key] = have
        diff.after[key] = value
    return diff


def pending_state(entries: List[Dict]) -> Tuple[Dict[str, Any], Dict[str, Any], List[str]]:
    """From GET .../pending: (running config, config of the next boot, keys waiting for a reboot)."""
    running: Dict[str, Any] = {}
    effective: Dict[str, Any] = {}
    waiting: List[str] = []
    for entry in entries or []:
        key = entry.get('key')
        if key is None or key == 'digest':
            continue
        if 'value' in entry:
            running[key] = entry['value']
        if entry.get('delete'):
            waiting.append(key)
            continue
        if 'pending' in entry:
            waiting.append(key)
            effective[key] = entry['pending']
        elif 'value' in entry:
            effective[key] = entry['value']
    return running, effective, sorted(waiting)


def desired_config(kind: GuestKind, options: Dict[str, Any], dict_options: Tuple[str, ...] = (),
                   raw: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The PVE config keys a task asks for: typed options (None means "not asked"), dicts of
    device keys (``disks``, ``nets``, ``ipconfig``) merged in, then the raw ``config`` dict.

    :raises GuestConflictError: a key given twice (as an option and in ``config`` or two dicts).
    """
    out: Dict[str, Any] = {}
    origin: Dict[str, str] = {}

    def put(key, value, where):
        if value is None:
            return
        if key in out:
            raise GuestConflictError("the %s key '%s' is given twice (in %s and in %s)"
                                     % (kind.label, key, origin[key], where))
        out[key] = value
        origin[key] = where

    for name, value in options.items():
        if name in dict_options:
            for key, item in (value or {}).items():
                put(str(key), item, name)
        else:
            put(name, value, name)
    for key, value in (raw or {}).items():
        put(str(key), value, 'config')
    return out


# ---------------------------------------------------------------------- the manager

@dataclass
class GuestSpec:
    """What a task asks for. ``config`` holds PVE config keys (see ``desired_config``)."""

    name: Optional[str] = None
    vmid: Optional[int] = None
    cluster: Optional[str] = None
    node: Optional[str] = None
    config: Dict[str, Any] = field(default_factory=dict)
    pool: Optional[str] = None
    clone: Optional[str] = None          # source name or vmid
    full: Optional[bool] = None
    target_storage: Optional[str] = None
    # Storage and bridge for a new disk or net that names none, when the cluster has no DEFAULT_STORAGE /
    # DEFAULT_BRIDGE (the MCP server's documented local-lvm / vmbr0); None: leave it to the task and PVE.
    fallback_storage: Optional[str] = None
    fallback_bridge: Optional[str] = None
    timeout: float = DEFAULT_TIMEOUT
    force: bool = False
    purge: bool = False
    restart_on_change: bool = False
    update: bool = True


class GuestManager:
    """The lifecycle of guests of one kind, across the registry's clusters."""

    def __init__(self, registry, kind: GuestKind = QEMU, check_mode: bool = False,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic):
        self.registry = registry
        self.kind = kind
        self.check_mode = check_mode
        self._sleep = sleep
        self._clock = clock

    # ------------------------------------------------------------ lookup

    def resources(self, client) -> List[Dict]:
        """The cluster's guests and nodes (one request)."""
        return client.get('cluster/resources') or []

    def describe(self, spec_or_name, vmid=None) -> str:
        name = spec_or_name.name if isinstance(spec_or_name, GuestSpec) else spec_or_name
        vmid = spec_or_name.vmid if isinstance(spec_or_name, GuestSpec) else vmid
        if name and vmid is not None:
            return "%s '%s' (vmid %s)" % (self.kind.label, name, vmid)
        if name:
            return "%s '%s'" % (self.kind.label, name)
        return '%s %s' % (self.kind.label, vmid)

    def find(self, resources: List[Dict], cluster: str, name: Optional[str] = None,
             vmid: Optional[int] = None) -> Optional[Dict]:
        """The guest's /cluster/resources entry, or None. Names match case-insensitively (they are DNS names).

        :raises DuplicateGuestError: several guests of this kind carry the name (both vmids named).
        :raises GuestConflictError: name and vmid point at different guests, or the vmid is another type.
        """
        guests = [r for r in resources if r.get('type') in ('qemu', 'lxc')]
        by_vmid = None
        if vmid is not None:
            by_vmid = next((g for g in guests if int(g.get('vmid', -1)) == int(vmid)), None)
            if by_vmid is not None and by_vmid.get('type') != self.kind.type:
                raise GuestConflictError(
                    "cluster '%s': vmid %s is a %s ('%s'), not a %s" % (
                        cluster, vmid, 'container' if by_vmid.get('type') == 'lxc' else 'VM',
                        by_vmid.get('name'), self.kind.label), cluster)
        by_name = None
        if name:
            named = [g for g in guests if g.get('type') == self.kind.type and same_name(g.get('name'), name)]
            if len(named) > 1:
                raise DuplicateGuestError(
                    "cluster '%s' has %d %ss named '%s' (vmids %s); names must be unique per cluster. Give "
                    "vmid: to pick one, or rename the others." % (
                        cluster, len(named), self.kind.label, name,
                        ', '.join(str(g.get('vmid')) for g in sorted(named, key=lambda g: int(g['vmid'])))), cluster)
            by_name = named[0] if named else None
        if name and vmid is not None:
            if by_vmid is not None and not same_name(by_vmid.get('name'), name):
                raise GuestConflictError(
                    "cluster '%s': vmid %s is named '%s', not '%s'" % (cluster, vmid, by_vmid.get('name'), name),
                    cluster)
            if by_vmid is None and by_name is not None:
                raise GuestConflictError(
                    "cluster '%s': '%s' has vmid %s, not %s" % (cluster, name, by_name.get('vmid'), vmid), cluster)
        return by_vmid if vmid is not None else by_name

    def find_source(self, resources: List[Dict], cluster: str, source: Any) -> Dict:
        """The clone source (a template or VM) by name or vmid.

        :raises GuestNotFoundError: no such source, with the templates of the cluster listed.
        """
        text = str(source).strip()
        found = None
        if text.isdigit():
            found = self.find(resources, cluster, vmid=int(text))
        if found is None:
            found = self.find(resources, cluster, name=text)
        if found is None:
            templates = sorted(str(r.get('name')) for r in resources
                               if r.get('type') == self.kind.type and r.get('template'))
            raise GuestNotFoundError(
                "cluster '%s': clone source '%s' not found; templates there: %s"
                % (cluster, text, ', '.join(templates) or '(none)'), cluster, 404)
        return found

    @staticmethod
    def nodes(resources: List[Dict]) -> Dict[str, Dict]:
        return dict((r.get('node'), r) for r in resources if r.get('type') == 'node')

    def check_node(self, resources: List[Dict], cluster: str, node: str, what: str = '') -> None:
        """:raises NodeOfflineError: the node is offline. :raises GuestConflictError: no such node."""
        nodes = self.nodes(resources)
        if node not in nodes:
            raise GuestConflictError("cluster '%s' has no node '%s'; its nodes: %s"
                                     % (cluster, node, ', '.join(sorted(nodes))), cluster)
        if nodes[node].get('status') != 'online':
            raise NodeOfflineError(
                "cluster '%s': node '%s'%s is %s; nothing was changed. Bring the node back or choose another one."
                % (cluster, node, what, nodes[node].get('status') or 'offline'), cluster)

    def choose_node(self, resources: List[Dict], cluster: str, node: Optional[str] = None) -> Tuple[str, str]:
        """(node, why): the one asked for, the cluster's default node, or the online node with most free memory."""
        if node:
            self.check_node(resources, cluster, node)
            return node, 'explicit'
        default = getattr(self.registry.cluster(cluster), 'default_node', None)
        if default:
            self.check_node(resources, cluster, default, ' (the default node)')
            return default, 'cluster default node'
        online = [n for n in self.nodes(resources).values() if n.get('status') == 'online']
        if not online:
            raise NodeOfflineError("cluster '%s' has no online node" % cluster, cluster)
        best = max(online, key=lambda n: (int(n.get('maxmem') or 0) - int(n.get('mem') or 0),
                                          # ties: the first node by name, so the choice is stable
                                          [-ord(c) for c in n.get('node', '')]))
        return best['node'], 'most free memory'

    # ------------------------------------------------------------ reading

    def _path(self, node: str, vmid: int, tail: str = '') -> str:
        return 'nodes/%s/%s/%s%s' % (node, self.kind.type, vmid, ('/' + tail) if tail else '')

    def read(self, client, node: str, vmid: int) -> Dict[str, Any]:
        """Running config, next-boot config and pending keys of a guest."""
        running, effective, waiting = pending_state(client.get(self._path(node, vmid, 'pending')))
        return {'config': running, 'effective': effective, 'pending': waiting}

    def status(self, client, node: str, vmid: int) -> Dict:
        return client.get(self._path(node, vmid, 'status/current')) or {}

    # ------------------------------------------------------------ locks and tasks

    def _locked_error(self, cluster, guest, lock, timeout):
        return GuestLockedError(
            "cluster '%s': %s is locked (%s) and stayed locked for %ss; nothing was changed. Wait for the "
            "%s to finish (or unlock it with '%s unlock %s' if it is stale) and run again, or raise timeout."
            % (cluster, self.describe(guest.get('name'), guest.get('vmid')), lock, timeout,
               'task' if lock == 'config lock held by another task' else lock, self.kind.cli, guest.get('vmid')),
            cluster)

    def relocate(self, client, guest: Dict) -> bool:
        """Read the guest's node again (a migration may have moved it); True when it changed."""
        for entry in client.get('cluster/resources', type='vm') or []:
            if int(entry.get('vmid', -1)) == int(guest['vmid']) and entry.get('type') == self.kind.type:
                moved = entry.get('node') != guest['node']
                guest['node'] = entry.get('node')
                return moved
        return False

    def wait_unlocked(self, client, cluster: str, guest: Dict, timeout: float) -> None:
        """Wait until the guest's config has no ``lock``; :raises GuestLockedError: past the timeout.

        A guest that was migrated meanwhile is followed to its new node.
        """
        deadline = self._clock() + timeout
        while True:
            try:
                config = client.get(self._path(guest['node'], guest['vmid'], 'config')) or {}
            except ResourceNotFoundError:
                if not self.relocate(client, guest):
                    raise
                continue
            lock = config.get('lock')
            if not lock:
                return
            if self._clock() >= deadline:
                raise self._locked_error(cluster, guest, lock, timeout)
            self._sleep(min(LOCK_POLL, max(0.0, deadline - self._clock())))

    def call(self, client, cluster: str, guest: Dict, wait: float, method: str, tail: str, margin: float = 0,
             **params) -> Dict:
        """Write (and wait for the task of) one request; retried while PVE answers that the guest is locked.

        ``margin`` extends the wait for tasks that themselves wait ``wait`` seconds (a shutdown).

        :raises GuestLockedError: still locked at the timeout. :raises TaskError: the task failed.
        """
        deadline = self._clock() + wait

        def run(remaining):
            # The path is built for each attempt: a migration that held the lock may have moved the guest.
            return client.run_task(method, self._path(guest['node'], guest['vmid'], tail), params, remaining + margin)
        return self._retry_locked(client, cluster, guest, deadline, wait, run)

    def _retry_locked(self, client, cluster, guest, deadline, timeout, func):
        while True:
            remaining = max(1.0, deadline - self._clock())
            try:
                return func(remaining)
            except (ApiError, TaskError) as exc:
                if isinstance(exc, TaskTimeoutError):
                    raise
                if isinstance(exc, ResourceNotFoundError) and 'node' in guest and self.relocate(client, guest):
                    continue  # migrated while we waited: the request never reached the guest, send it again
                text = ' '.join([str(exc)] + [str(line) for line in getattr(exc, 'log', [])])
                found = LOCKED_MESSAGE.search(text)
                if not found:
                    raise
                lock = found.group('lock') or 'config lock held by another task'
                if self._clock() >= deadline:
                    raise self._locked_error(cluster, guest, lock, timeout)
                self._sleep(min(LOCK_POLL, max(0.0, deadline - self._clock())))

    @staticmethod
    def _task(action: str, status: Dict) -> Dict:
        return {'action': action, 'upid': status.get('upid'), 'exitstatus': status.get('exitstatus')}

    # ------------------------------------------------------------ the states

    def check_spec(self, spec: GuestSpec) -> None:
        """What can be checked without the cluster: name, vmid, raw config keys and property strings."""
        check_guest_name(spec.name, self.kind.label)
        check_vmid(spec.vmid)
        check_config_keys(self.kind, spec.config)
        check_property_strings(self.kind, spec.config)

    def ensure(self, state: str, spec: GuestSpec, route=None) -> Dict:
        """Bring one guest to ``state`` (present, absent, started, stopped, restarted, template).

        :param route: a route the caller already chose (the MCP server checks its write settings against
            it first); by default the guest is routed here, strictly: a lookup that could not read every
            cluster is refused.
        """
        self.check_spec(spec)
        if route is None:
            route = self.registry.select(cluster=spec.cluster, name=spec.name, vmid=spec.vmid, lookup=True)
        cluster = route.cluster
        client = self.registry.client(cluster)
        resources = self.resources(client)
        guest = self.find(resources, cluster, spec.name, spec.vmid)
        result = {
            'changed': False, 'cluster': cluster, 'route_reason': route.reason, 'vmid': spec.vmid,
            'name': spec.name, 'node': None, 'node_reason': None, 'status': None, 'pending': [],
            'diff': {'before': {}, 'after': {}}, 'tasks': [], 'waited_for': [], 'warnings': [],
        }
        if guest is None or guest.get('lock') in CREATING_LOCKS:
            # A create or clone still running (an interrupted run's, or another run's at this moment) may be
            # this very guest: wait for it to finish, then look again, so that it is never made twice.
            resources = self.wait_for_creations(client, cluster, resources, spec)
            guest = self.find(resources, cluster, spec.name, spec.vmid)
        if state == 'absent':
            return self._absent(client, cluster, resources, guest, spec, result)
        if guest is None:
            if state != 'present' and not (spec.clone or spec.config):
                raise GuestNotFoundError(
                    "cluster '%s' (%s): %s does not exist, and the task gives nothing to create it from "
                    "(no clone and no config); use state=present with its settings, or check the name"
                    % (cluster, route.reason, self.describe(spec)), cluster, 404)
            self.registry.check_not_elsewhere(route, spec.name, self.kind.label)
            guest = self._create(client, cluster, resources, spec, result)
        else:
            self._adopt(guest, result)
            self.check_node(resources, cluster, guest['node'], ' of %s' % self.describe(guest.get('name'),
                                                                                        guest.get('vmid')))
            if spec.update:
                self._update(client, cluster, guest, spec, result)
        if guest.get('_planned'):
            # Check mode on a guest that does not exist yet: nothing more can be read.
            result['status'] = 'running' if state in ('started', 'restarted') else 'stopped'
            if state == 'template':
                result['template'] = True
            return result
        if state == 'started':
            self._start(client, cluster, guest, spec, result)
        elif state == 'stopped':
            self._stop(client, cluster, guest, spec, result)
        elif state == 'restarted':
            self._restart(client, cluster, guest, spec, result)
        elif state == 'template':
            self._template(client, cluster, guest, spec, result)
        elif spec.restart_on_change and result['pending'] and guest.get('status') == 'running':
            self._reboot(client, cluster, guest, spec, result)
        result['status'] = guest.get('status')
        result['template'] = bool(guest.get('template'))
        result['node'] = guest.get('node')  # where it is now (a migration may have moved it meanwhile)
        return result

    def _adopt(self, guest: Dict, result: Dict) -> None:
        result.update(vmid=int(guest['vmid']), name=guest.get('name'), node=guest.get('node'),
                      status=guest.get('status'), template=bool(guest.get('template')))

    # -------------------------------------------------- guests being made by others

    def _in_creation(self, resources: List[Dict], spec: GuestSpec, exclude: Optional[int] = None) -> List[Dict]:
        """Guests of this kind still being created or cloned that may turn out to be the one ``spec`` names.

        While PVE creates a guest its config holds only ``lock: create``: the listing shows no name, or a
        stand-in (``VM 106``, ``CT106``), so such a guest may be any name. A guest that already shows a
        real name counts only if it is this name; a guest with the requested vmid counts in any case.
        """
        out = []
        for entry in resources:
            if entry.get('type') != self.kind.type or entry.get('vmid') is None or int(entry['vmid']) == exclude:
                continue
            if entry.get('lock') not in CREATING_LOCKS:
                continue
            name = str(entry.get('name') or '')
            unnamed = re.fullmatch(r'(?:(?:VM|CT) ?)?%s' % int(entry['vmid']), name) is not None or not name
            if ((spec.vmid is not None and int(entry['vmid']) == int(spec.vmid))
                    or (spec.name and (unnamed or same_name(name, spec.name)))):
                out.append(entry)
        return out

    def wait_for_creations(self, client, cluster: str, resources: List[Dict], spec: GuestSpec,
                           exclude: Optional[int] = None) -> List[Dict]:
        """Wait until no guest that may be ``spec``'s is being created; returns the cluster's resources then.

        :raises GuestLockedError: still being created after ``spec.timeout`` seconds (nothing was changed).
        """
        pending = self._in_creation(resources, spec, exclude)
        deadline = self._clock() + spec.timeout
        while pending:
            if self._clock() >= deadline:
                vmids = ', '.join(str(g['vmid']) for g in pending)
                raise GuestLockedError(
                    "cluster '%s': guest(s) %s are still being created after %ss (lock %s), and may be %s (the "
                    "create of an interrupted run, or of another run at this moment). Nothing was changed. Run "
                    "again once that task has finished; if it is stale, unlock it with '%s unlock %s'."
                    % (cluster, vmids, spec.timeout, pending[0].get('lock'), self.describe(spec), self.kind.cli,
                       pending[0]['vmid']), cluster)
            self._sleep(min(LOCK_POLL, max(0.0, deadline - self._clock())))
            resources = self.resources(client)
            pending = self._in_creation(resources, spec, exclude)
        return resources

    def _lower_twin(self, client, cluster: str, guest: Dict, spec: GuestSpec) -> Optional[Dict]:
        """After creating ``guest``: another guest of the same name with a lower vmid (another run's), or None.

        Two runs that create one new name at the same moment each make a guest. The rule that leaves exactly
        one: the lowest vmid stays; a run whose own guest is not the lowest removes it and adopts the other.
        Guests still being created are waited for first, since their name is not known yet.
        """
        if not spec.name:
            return None
        resources = self.wait_for_creations(client, cluster, self.resources(client), spec, exclude=int(guest['vmid']))
        twins = sorted((g for g in resources if g.get('type') == self.kind.type and same_name(g.get('name'), spec.name)
                        and int(g['vmid']) < int(guest['vmid'])), key=lambda g: int(g['vmid']))
        return twins[0] if twins else None

    def _yield_to_twin(self, client, cluster: str, guest: Dict, twin: Dict, spec: GuestSpec, result: Dict) -> Dict:
        """Remove this run's just-created (never started) guest and continue with ``twin`` instead."""
        task = self.call(client, cluster, guest, spec.timeout, 'DELETE', '', **{'destroy-unreferenced-disks': 1})
        result['tasks'].append(self._task('delete', task))
        result['warnings'].append(
            "cluster '%s': another run created %s (vmid %s) at the same moment; this run removed its own new vmid %s "
            "and manages vmid %s" % (cluster, self.describe(spec.name), twin['vmid'], guest['vmid'], twin['vmid']))
        result['adopted'] = {'vmid': int(twin['vmid']), 'removed_vmid': int(guest['vmid'])}
        return self._continue_with(client, cluster, twin, spec, result)

    def _continue_with(self, client, cluster: str, guest: Dict, spec: GuestSpec, result: Dict) -> Dict:
        """Manage an existing guest found while creating (another run's): as if it had been there from the start."""
        result.update(changed=False, diff={'before': {}, 'after': {}}, node_reason=None)
        result.pop('clone_source', None)
        guest = dict(guest)
        if guest.get('lock') in CREATING_LOCKS:
            self.wait_unlocked(client, cluster, guest, spec.timeout)
            self._refresh(client, guest)
        self._adopt(guest, result)
        if spec.update:
            self._update(client, cluster, guest, spec, result)
        return guest

    # -------------------------------------------------- present: create or clone

    def _create(self, client, cluster, resources, spec: GuestSpec, result: Dict) -> Dict:
        source = None
        conf = self.registry.cluster(cluster)
        storage = getattr(conf, 'default_storage', None) or spec.fallback_storage
        bridge = getattr(conf, 'default_bridge', None) or spec.fallback_bridge
        if spec.clone is not None:
            source = self.find_source(resources, cluster, spec.clone)
            self.check_node(resources, cluster, source['node'], ' of the clone source')
            node, why = (spec.node, 'explicit') if spec.node else (source['node'], 'clone source node')
            if spec.node:
                self.check_node(resources, cluster, spec.node)
            config = spec.config
        else:
            missing = [k for k in self.kind.create_requires if spec.config.get(k) in (None, '')]
            if missing:
                raise GuestConflictError(
                    "cluster '%s': %s does not exist, and a new %s needs %s (or clone: a %s template)"
                    % (cluster, self.describe(spec), self.kind.label, ' and '.join(missing), self.kind.label), cluster)
            config = with_cluster_defaults(self.kind, spec.config, {}, storage, bridge, True, cluster)
            for key in sorted(config):
                check_new_disk(self.kind, key, config[key])
            node, why = self.choose_node(resources, cluster, spec.node)
        name_key = self.kind.name_key
        if source is not None:
            result['clone_source'] = {'vmid': int(source['vmid']), 'name': source.get('name'),
                                      'node': source.get('node'), 'template': bool(source.get('template'))}
            after = dict((k, api_value(k, v)) for k, v in config.items())
            if spec.name:
                after[name_key] = spec.name
            params = {}
            if spec.name:
                params[name_key] = spec.name
            if spec.full is not None:
                params['full'] = 1 if spec.full else 0
            if node != source['node']:
                params['target'] = node
            if spec.target_storage:
                params['storage'] = spec.target_storage
            if spec.pool:
                params['pool'] = spec.pool

            def submit(vmid):
                return self.call(client, cluster, source, spec.timeout, 'POST', 'clone',
                                 **dict({'newid': vmid}, **params))
            action = 'clone'
        else:
            params = dict((k, api_value(k, v)) for k, v in config.items())
            if spec.name:
                params[name_key] = spec.name
            after = dict(params)
            if spec.pool:
                params['pool'] = spec.pool

            def submit(vmid):
                return client.run_task('POST', 'nodes/%s/%s' % (node, self.kind.type), dict(params, vmid=vmid),
                                       spec.timeout)
            action = 'create'
        result.update(node=node, node_reason=why, changed=True, diff={'before': {}, 'after': after})
        vmid = spec.vmid if spec.vmid is not None else int(client.get('cluster/nextid'))
        result['vmid'] = vmid
        if self.check_mode:
            return {'vmid': vmid, 'node': node, 'name': spec.name, 'type': self.kind.type, 'status': 'stopped',
                    '_planned': True}
        attempt = 1
        while True:
            try:
                task = submit(vmid)
                break
            except TaskTimeoutError as exc:
                raise TaskTimeoutError(
                    "%s. The %s of %s (vmid %s) goes on in PVE: a rerun waits for it to finish and then continues "
                    "with that %s; it does not make a second one." % (str(exc).rstrip('.'), action,
                                                                      self.describe(spec.name), vmid, self.kind.label),
                    cluster, exc.upid, exc.exitstatus, exc.log)
            except (ApiError, TaskError) as exc:
                if not vmid_taken(exc):
                    raise
                if spec.vmid is not None:
                    # The vmid asked for was taken meanwhile: by another run making this same guest?
                    fresh = self.wait_for_creations(client, cluster, self.resources(client), spec)
                    other = self.find(fresh, cluster, spec.name, spec.vmid)
                    if other is None:
                        raise
                    return self._continue_with(client, cluster, other, spec, result)
                if attempt >= VMID_ATTEMPTS:
                    raise GuestConflictError(
                        "cluster '%s': another create took the free vmid %d times in a row while %s was being "
                        "created; nothing was created. Run again, or give vmid: explicitly."
                        % (cluster, attempt, self.describe(spec.name)), cluster)
                attempt += 1
                vmid = int(client.get('cluster/nextid'))
                result['vmid'] = vmid
        result['tasks'].append(self._task(action, task))
        guest = {'vmid': vmid, 'node': node, 'name': spec.name, 'type': self.kind.type, 'status': 'stopped'}
        if spec.vmid is None:
            twin = self._lower_twin(client, cluster, guest, spec)
            if twin is not None:
                return self._yield_to_twin(client, cluster, guest, twin, spec, result)
        if source is not None:
            # The clone has the source's config: bring it to what was asked (the same as a later update).
            self._update(client, cluster, guest, spec, result, created=True)
            result['diff'] = {'before': {}, 'after': after}
        else:
            result['pending'] = self.read(client, node, vmid)['pending']
        return guest

    # -------------------------------------------------- present: update

    def _update(self, client, cluster, guest: Dict, spec: GuestSpec, result: Dict, created: bool = False) -> None:
        state = self.read(client, guest['node'], guest['vmid'])
        conf = self.registry.cluster(cluster)
        desired = with_cluster_defaults(self.kind, spec.config, state['effective'],
                                        getattr(conf, 'default_storage', None) or spec.fallback_storage,
                                        getattr(conf, 'default_bridge', None) or spec.fallback_bridge,
                                        cluster=cluster)
        if created:
            # A fresh clone: also write the write-only keys (a cloud-init password), once.
            wanted_write_only = dict((k, v) for k, v in desired.items()
                                     if k in self.kind.write_only and k not in self.kind.create_only)
            result['warnings'].extend(
                '%s: %s is used when a %s is created from an OS template, not by a clone; ignored'
                % (self.describe(guest.get('name'), guest['vmid']), k, self.kind.label)
                for k in sorted(desired) if k in self.kind.create_only and desired[k] is not None)
        else:
            wanted_write_only = {}
        diff = config_diff(self.kind, desired, state['effective'], self.describe(guest.get('name'), guest['vmid']))
        result['warnings'].extend(diff.warnings)
        result['pending'] = state['pending']
        changes = dict(diff.changes, **dict((k, api_value(k, v)) for k, v in wanted_write_only.items()))
        if not created:
            result['diff'] = {'before': diff.before, 'after': diff.after}
        if not changes:
            return
        result['changed'] = True
        if self.check_mode:
            return
        if not created:
            self.wait_unlocked(client, cluster, guest, spec.timeout)
        task = self.call(client, cluster, guest, spec.timeout, self.kind.config_method, 'config', **changes)
        result['tasks'].append(self._task('update', task))
        result['pending'] = self.read(client, guest['node'], guest['vmid'])['pending']

    # -------------------------------------------------- power

    def _refresh(self, client, guest: Dict) -> None:
        current = self.status(client, guest['node'], guest['vmid'])
        guest['status'] = current.get('status', guest.get('status'))
        if current.get('template'):
            guest['template'] = 1

    def wait_active_tasks(self, client, cluster: str, guest: Dict, spec: GuestSpec, result: Dict) -> List[str]:
        """Wait for power or destroy tasks of this guest that are still running in PVE; the types waited for.

        A rerun after an interrupted or timed-out run finds the earlier run's start, shutdown or destroy
        still going: acting again at once would fail on the guest's lock or act twice. After waiting, the
        guest's status is read again (``guest['gone']`` when a destroy removed it).

        :raises TaskTimeoutError: such a task still runs after ``spec.timeout`` seconds (nothing was changed).
        """
        entries = client.get('nodes/%s/tasks' % guest['node'], vmid=int(guest['vmid']), source='active') or []
        running = [t for t in entries if t.get('type') in self.kind.task_types and t.get('upid')
                   and not t.get('endtime') and t.get('status') in (None, '', 'running')]
        waited = []
        for task in running:
            try:
                exitstatus = client.wait_task(task['upid'], spec.timeout).get('exitstatus')
            except TaskTimeoutError as exc:
                raise TaskTimeoutError(
                    "cluster '%s': %s has a %s task running in PVE (%s, started by %s) that did not end within %ss; "
                    "nothing was changed. A rerun waits for it again: raise timeout, or check the task in the "
                    "Proxmox UI." % (cluster, self.describe(guest.get('name'), guest['vmid']), task['type'],
                                     task['upid'], task.get('user'), spec.timeout), cluster, exc.upid)
            except TaskError as exc:  # its failure is not this run's: this run acts itself next
                exitstatus = exc.exitstatus
            except ApiError:  # a task this token may not read: nothing to wait for
                continue
            waited.append(task['type'])
            result['waited_for'].append({'action': task['type'], 'upid': task['upid'], 'exitstatus': exitstatus})
        if waited:
            try:
                self._refresh(client, guest)
            except ResourceNotFoundError:
                guest['gone'] = True
        return waited

    def _power(self, client, cluster, guest, spec, result, action, **params) -> Dict:
        """One power action and its task; PVE's "already running" / "not running" for it counts as done."""
        result['changed'] = True
        if self.check_mode:
            return {}
        margin = 30 if action in ('shutdown', 'reboot') else 0
        try:
            task = self.call(client, cluster, guest, spec.timeout, 'POST', 'status/' + action, margin=margin, **params)
        except (ApiError, TaskError) as exc:
            done = ALREADY_DONE.get(action)
            if isinstance(exc, TaskTimeoutError) or done is None or not done.search(str(exc)):
                raise
            # Another task (an earlier run's, or another run's) got there first: the state is what was asked.
            result['changed'] = False
            task = {'upid': getattr(exc, 'upid', None), 'exitstatus': 'already done: %s' % _word(exc)}
        result['tasks'].append(self._task(action, task))
        return task

    def _start(self, client, cluster, guest, spec, result) -> None:
        if guest.get('template'):
            raise GuestConflictError("cluster '%s': %s is a template; a template cannot be started"
                                     % (cluster, self.describe(guest.get('name'), guest['vmid'])), cluster)
        if guest.get('status') == 'running':
            return
        if not self.check_mode and self.wait_active_tasks(client, cluster, guest, spec, result) \
                and guest.get('status') == 'running':
            return
        before = guest.get('status')
        self._power(client, cluster, guest, spec, result, 'start')
        result['diff']['before']['status'], result['diff']['after']['status'] = before, 'running'
        if self.check_mode:
            guest['status'] = 'running'
            return
        self._refresh(client, guest)
        result['pending'] = self.read(client, guest['node'], guest['vmid'])['pending']

    def _stop(self, client, cluster, guest, spec, result) -> None:
        """Graceful shutdown within the timeout; with ``force``, a hard stop when it does not go down."""
        if guest.get('status') != 'running':
            return
        if not self.check_mode and self.wait_active_tasks(client, cluster, guest, spec, result) \
                and guest.get('status') != 'running':
            return
        result['diff']['before']['status'], result['diff']['after']['status'] = 'running', 'stopped'
        if self.check_mode:
            result['changed'] = True
            guest['status'] = 'stopped'
            return
        try:
            self._power(client, cluster, guest, spec, result, 'shutdown', timeout=int(spec.timeout))
        except TaskError as exc:
            if isinstance(exc, TaskTimeoutError) or SHUTDOWN_TIMEOUT.search(str(exc)):
                if not spec.force:
                    raise TaskError(
                        "cluster '%s': %s did not shut down within %ss (%s). Set force: true to stop it hard, "
                        "or raise timeout." % (cluster, self.describe(guest.get('name'), guest['vmid']),
                                               int(spec.timeout), exc), cluster, exc.upid, exc.exitstatus, exc.log)
                result['tasks'].append({'action': 'shutdown', 'upid': exc.upid, 'exitstatus': exc.exitstatus})
                self._power(client, cluster, guest, spec, result, 'stop')
                result['forced'] = True
            else:
                raise
        self._refresh(client, guest)

    def _reboot(self, client, cluster, guest, spec, result) -> None:
        result['diff']['before']['status'] = result['diff']['after']['status'] = 'running'
        try:
            self._power(client, cluster, guest, spec, result, 'reboot', timeout=int(spec.timeout))
        except TaskError as exc:
            if not spec.force or not (isinstance(exc, TaskTimeoutError) or SHUTDOWN_TIMEOUT.search(str(exc))):
                raise
            result['tasks'].append({'action': 'reboot', 'upid': exc.upid, 'exitstatus': exc.exitstatus})
            self._power(client, cluster, guest, spec, result, 'stop')
            self._power(client, cluster, guest, spec, result, 'start')
            result['forced'] = True
        if not self.check_mode:
            self._refresh(client, guest)
            result['pending'] = self.read(client, guest['node'], guest['vmid'])['pending']

    def _restart(self, client, cluster, guest, spec, result) -> None:
        if not self.check_mode:
            waited = self.wait_active_tasks(client, cluster, guest, spec, result)
            if guest.get('status') == 'running' and any(t.endswith(('reboot', 'start')) for t in waited):
                return  # an earlier run's reboot (or start) that was still going: restarted now
        if guest.get('status') != 'running':
            self._start(client, cluster, guest, spec, result)
            return
        self._reboot(client, cluster, guest, spec, result)

    def _template(self, client, cluster, guest, spec, result) -> None:
        if guest.get('template'):
            return
        self._stop(client, cluster, guest, spec, result)
        result['changed'] = True
        result['diff']['before']['template'], result['diff']['after']['template'] = False, True
        if self.check_mode:
            guest['template'] = 1
            return
        task = self.call(client, cluster, guest, spec.timeout, 'POST', 'template')
        result['tasks'].append(self._task('template', task))
        guest['template'] = 1
        self._refresh(client, guest)

    # -------------------------------------------------- absent

    def _absent(self, client, cluster, resources, guest, spec: GuestSpec, result: Dict) -> Dict:
        result['status'] = 'absent'
        if guest is None:
            return result
        self._adopt(guest, result)
        result['status'] = 'absent'
        self.check_node(resources, cluster, guest['node'], ' of %s' % self.describe(guest.get('name'),
                                                                                    guest.get('vmid')))
        state = self.read(client, guest['node'], guest['vmid'])
        result['diff'] = {'before': state['config'], 'after': {}}
        result['changed'] = True
        if self.check_mode:
            return result
        self.wait_unlocked(client, cluster, guest, spec.timeout)
        self.wait_active_tasks(client, cluster, guest, spec, result)
        if guest.get('gone'):
            # An earlier run's destroy, still running when this run began, has finished it.
            result.update(changed=False, diff={'before': {}, 'after': {}})
            return result
        if guest.get('status') == 'running':
            # The disks are destroyed next: a graceful shutdown would only delay that.
            self._power(client, cluster, guest, spec, result, 'stop')
            result['changed'] = True
        params = {}
        if spec.purge:
            params.update({'purge': 1, 'destroy-unreferenced-disks': 1})
        try:
            task = self.call(client, cluster, guest, spec.timeout, 'DELETE', '', **params)
        except ResourceNotFoundError:
            # Destroyed meanwhile (by a destroy that started after this run looked): what was asked.
            if any(int(g.get('vmid', -1)) == int(guest['vmid']) for g in self.resources(client)
                   if g.get('type') == self.kind.type):
                raise
            result['tasks'].append({'action': 'delete', 'upid': None, 'exitstatus': 'already done: gone'})
            return result
        result['tasks'].append(self._task('delete', task))
        return result


# ---------------------------------------------------------------------- module glue (no Ansible import)

STATES = ('present', 'absent', 'started', 'stopped', 'restarted', 'template')


def property_string(value: Any) -> Any:
    """A dict of properties (``{nesting: true, keyctl: 1}``) as PVE's ``keyctl=1,nesting=1``; text unchanged."""
    if isinstance(value, dict):
        return ','.join('%s=%s' % (k, api_value(k, v)) for k, v in sorted(value.items()) if v is not None)
    return value


def spec_from_params(kind: GuestKind, params: Dict[str, Any], name: Optional[str],
                     options: Dict[str, str], dict_options: Tuple[str, ...] = ()) -> GuestSpec:
    """A GuestSpec from a module's parameters; ``options`` maps option names to PVE config keys."""
    typed = dict((key, params[option]) for option, key in options.items())
    return GuestSpec(
        name=name, vmid=params['vmid'], cluster=params['cluster'], node=params['node'],
        config=desired_config(kind, typed, dict_options, params['config']),
        pool=params['pool'], clone=params['clone'], full=params['full'], target_storage=params['target_storage'],
        timeout=params['timeout'], force=params['force'], purge=params['purge'],
        restart_on_change=params['restart_on_change'], update=params['update'])
