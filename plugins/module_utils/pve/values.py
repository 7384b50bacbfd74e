# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""PVE values: parsing and comparison in Proxmox VE's own formats. No I/O.

One set of boolean words, one tag parser, one property-string parser: every front end (the guest
modules, the configuration, the inventory, the MCP server) uses these, so that "yes" or a tag list
means the same everywhere. The functions are plain so that they can be tested as tables."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import quote, unquote

from ansible_collections.pmx.multicluster.plugins.module_utils.pve.kinds import QEMU, GuestKind

# The one set of boolean words (PVE's own 1/0, Ansible's and the shells' yes/no, on/off, y/n).
TRUE_WORDS = ('1', 'true', 'yes', 'on', 'y')
FALSE_WORDS = ('0', 'false', 'no', 'off', 'n')
SIZE_UNITS = {'': 1024 ** 3, 'K': 1024, 'M': 1024 ** 2, 'G': 1024 ** 3, 'T': 1024 ** 4}
# A cloud-init drive as PVE's create syntax gives it: STORAGE:cloudinit.
CLOUDINIT_DRIVE = re.compile(r'^(?P<storage>[^/:\s]+):cloudinit$')
# A new disk's volume as PVE's create syntax gives it: [storage:]size in GiB.
NEW_DISK = re.compile(r'^(?:(?P<storage>[^/:\s]+):)?(?P<size>\d+(?:\.\d+)?)$')


def as_bool(value: Any) -> Optional[bool]:
    """True or False for a boolean word (or a bool), None for anything else."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    return None


def word(value: Any) -> str:
    """A scalar as PVE stores it: booleans as 1/0, the rest as trimmed text."""
    if isinstance(value, bool):
        return '1' if value else '0'
    return str(value).strip()


def bool_word(value: Any) -> str:
    """A boolean word as PVE's 1 or 0; any other value as trimmed lower-case text."""
    flag = as_bool(value)
    if flag is None:
        return word(value).lower()
    return '1' if flag else '0'


def _number(text: str):
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return None


def _scalar_equal(a: Any, b: Any) -> bool:
    a, b = word(a), word(b)
    if a == b:
        return True
    na, nb = _number(a), _number(b)
    if na is not None and nb is not None:
        return na == nb
    return bool_word(a) == bool_word(b) and bool_word(a) in ('0', '1')


def split_props(text: Any, default_key: Optional[str] = None) -> Dict[str, str]:
    """A PVE property string (``virtio,bridge=vmbr0`` or ``order=scsi0;net0``) as a dict.

    A part without ``=`` is the value of ``default_key`` (or, without one, a key whose value is empty).
    """
    props: Dict[str, str] = {}
    for part in word(text).split(','):
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
    found = re.fullmatch(r'(\d+(?:\.\d+)?)([KMGT]?)', word(text).upper())
    if not found:
        return None
    return int(float(found.group(1)) * SIZE_UNITS[found.group(2)])


TAG_SEPARATORS = re.compile(r'[;, ]+')


def parse_tags(value: Any) -> List[str]:
    """The tags of a value, in their order: PVE's ``web;prod`` (older releases also use ``,`` or spaces), or a list.

    The one tag parser; ``normalise_tags`` compares with it.
    """
    if value is None or value == '':
        return []
    if isinstance(value, (list, tuple, set)):
        items = [str(v) for v in value]
    else:
        items = TAG_SEPARATORS.split(word(value))
    return [t.strip() for t in items if t and t.strip()]


def normalise_tags(value: Any) -> List[str]:
    """Tags as PVE keeps them: a sorted list of lower-case tags, each once (it orders them itself)."""
    return sorted(set(t.lower() for t in parse_tags(value)))


def props_equal(desired: Dict[str, str], current: Dict[str, str]) -> bool:
    """Every property the user gave has the same value (booleans and numbers normalised)."""
    for key, value in desired.items():
        if key not in current:
            if bool_word(value) == '0' or value == '':
                continue  # an explicit "off" equals an absent (default off) flag
            return False
        if not _scalar_equal(value, current[key]):
            return False
    return True


# A disk value that takes an existing disk out of the config: ``detached`` keeps its volume (as unusedN),
# ``absent`` destroys it too.
DISK_REMOVALS = ('detached', 'absent')


def disk_removal(value: Any) -> Optional[str]:
    """``detached`` or ``absent`` when a disk value asks to take the disk out, else None."""
    if isinstance(value, str) and value.strip().lower() in DISK_REMOVALS:
        return value.strip().lower()
    return None


def format_size(size: int) -> str:
    """Bytes in PVE's spelling (``32G``, ``512M``): the largest unit that divides them."""
    for unit in ('T', 'G', 'M', 'K'):
        if size and size % SIZE_UNITS[unit] == 0:
            return '%d%s' % (size // SIZE_UNITS[unit], unit)
    return str(size)


@dataclass
class DiskDelta:
    """How a requested disk differs from the one PVE has: its options, its size and its storage."""

    equal: bool                          # the options the task gives (and the volume, if it names one) match
    have_size: Optional[int] = None      # bytes
    want_size: Optional[int] = None      # bytes; None: the task asks for no size
    have_storage: Optional[str] = None
    want_storage: Optional[str] = None   # None: the task names no storage (or names the volume itself)

    @property
    def resized(self) -> bool:
        return None not in (self.want_size, self.have_size) and self.want_size != self.have_size

    @property
    def moved(self) -> bool:
        return None not in (self.want_storage, self.have_storage) and self.want_storage != self.have_storage


def _storage_of(volume: str) -> Optional[str]:
    return volume.split(':', 1)[0] if ':' in volume else None


def disk_delta(desired: Any, current: Any, default_key: str = 'file') -> DiskDelta:
    """Compare a requested disk with the current one: ``local-lvm:40`` is a 40 GiB disk on local-lvm, so an
    existing 32G disk there is equal in its options and 8 GiB short; ``ceph:32`` names another storage.

    ``STORAGE:cloudinit`` and ``import-from=`` say how a disk is made, not what it is (PVE drops them once it
    exists); a named volume with ``size=`` asks for that size of that volume.
    """
    want = split_props(desired, default_key)
    have = split_props(current, default_key)
    want_volume = want.pop(default_key, '')
    have_volume = have.get(default_key, '')
    have_storage = _storage_of(have_volume)
    have_size = size_bytes(have.get('size', ''))
    cloudinit = CLOUDINIT_DRIVE.match(want_volume)
    if cloudinit:
        # STORAGE:cloudinit asks PVE to make the cloud-init drive there; it stores the volume it made (a cdrom).
        return DiskDelta(have_storage == cloudinit.group('storage') and have.get('media') == 'cdrom')
    imported = want.pop('import-from', None) is not None
    new = NEW_DISK.match(want_volume)
    delta = DiskDelta(True, have_size=have_size, have_storage=have_storage)
    if new:
        delta.want_storage = new.group('storage')
        if not imported and float(new.group('size')) > 0:
            delta.want_size = int(float(new.group('size')) * SIZE_UNITS['G'])
    elif want_volume and want_volume != have_volume:
        delta.equal = False
        return delta
    elif 'size' in want:
        delta.want_size = size_bytes(want['size'])
    want.pop('size', None)
    delta.equal = props_equal(want, have)
    return delta


def disk_equal(desired: Any, current: Any, default_key: str = 'file') -> Tuple[bool, Optional[str]]:
    """(equal, warning) for a disk, size and storage aside: ``local-lvm:32`` matches an existing 32G disk on
    local-lvm. A size or storage that differs is the warning (``disk_delta`` says by how much)."""
    delta = disk_delta(desired, current, default_key)
    warning = None
    if delta.moved:
        warning = 'is on storage %s, not %s (disks are not moved)' % (delta.have_storage, delta.want_storage)
    if delta.resized:
        sizes = (format_size(delta.have_size), format_size(delta.want_size))
        warning = 'is %s, not %s (disks are not resized)' % sizes
    return delta.equal, warning


def with_disk_options(current: Any, desired: Any, default_key: str = 'file', size: Optional[int] = None,
                      storage: Optional[str] = None) -> str:
    """The current disk value with the desired options set (and, to predict a resize or a move, its size or
    storage): what an update writes, since writing ``storage:size`` again would make PVE allocate a new disk."""
    have = split_props(current, default_key)
    want = split_props(desired, default_key)
    for key in (default_key, 'size', 'import-from'):
        want.pop(key, None)
    volume = have.pop(default_key, '')
    if storage is not None:
        volume = '%s:%s' % (storage, volume.split(':', 1)[1] if ':' in volume else volume)
    have.update(want)
    if size is not None:
        have['size'] = format_size(size)
    return ','.join([volume] + ['%s=%s' % (k, v) if v != '' else k for k, v in have.items()])


def values_equal(kind: GuestKind, key: str, desired: Any, current: Any) -> bool:
    """Whether a requested config value is what PVE holds, in PVE's own formats.

    Memory as string or int, booleans as 1/0/true, tags in any order and separator, descriptions
    with a trailing newline, property strings in any order with only the given properties compared,
    and a net's generated MAC ignored unless the request names one.
    """
    if current is None:
        return desired is None or word(desired) == ''
    if desired is None:
        return False
    if key == 'tags':
        return normalise_tags(desired) == normalise_tags(current)
    if key == 'description':
        return word(desired).rstrip() == word(current).rstrip()
    if key == 'sshkeys':
        return unquote(word(desired)).strip() == unquote(word(current)).strip()
    if key in kind.bool_keys:
        return bool_word(desired) == bool_word(current)
    if kind.is_disk(key):
        return disk_equal(desired, current, kind.disk_default_key)[0]
    if kind.is_net(key):
        return props_equal(split_net(desired, kind), split_net(current, kind))
    is_props, default = kind.default_key(key)
    if is_props:
        return props_equal(split_props(desired, default), split_props(current, default))
    return _scalar_equal(desired, current)


def api_value(key: str, value: Any) -> Any:
    """A desired value as the API takes it (booleans as 1/0, tag lists joined, ssh keys url-encoded)."""
    if isinstance(value, bool):
        return 1 if value else 0
    if key == 'tags':
        return ';'.join(normalise_tags(value))
    if key == 'sshkeys':
        text = unquote(word(value))
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
    return '%s,%s=%s' % (word(desired), kind.mac_key, have[kind.mac_key])


def property_string(value: Any) -> Any:
    """A dict of properties (``{nesting: true, keyctl: 1}``) as PVE's ``keyctl=1,nesting=1``; text unchanged."""
    if isinstance(value, dict):
        return ','.join('%s=%s' % (k, api_value(k, v)) for k, v in sorted(value.items()) if v is not None)
    return value
