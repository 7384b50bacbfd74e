# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Config diff in PVE's terms: the keys a task asks for, compared with the guest's pending-aware config.

Also where the cluster's DEFAULT_STORAGE / DEFAULT_BRIDGE fill in what a new device names none of. No I/O."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from ansible_collections.pmx.multicluster.plugins.module_utils.errors import GuestConflictError
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.checks import check_new_disk
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.kinds import GuestKind
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.values import (
    NEW_DISK,
    api_value,
    disk_delta,
    disk_removal,
    format_size,
    keep_mac,
    split_net,
    split_props,
    values_equal,
    with_disk_options,
    word,
)

# PVE's own size of a container's root file system when the create request gives none (GiB).
LXC_DEFAULT_ROOTFS_GIB = 4


def with_cluster_defaults(kind: GuestKind, config: Dict[str, Any], current: Dict[str, Any],
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
        text = word(value)
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


@dataclass
class ConfigDiff:
    """What an update changes: the values to write, and before/after of the keys concerned."""

    changes: Dict[str, Any] = field(default_factory=dict)
    before: Dict[str, Any] = field(default_factory=dict)
    after: Dict[str, Any] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)
    resizes: Dict[str, str] = field(default_factory=dict)   # disk key -> the size it grows to (PVE's 40G)
    moves: Dict[str, str] = field(default_factory=dict)     # disk key -> the storage it moves to
    removals: Dict[str, str] = field(default_factory=dict)  # disk key -> detached (volume kept) or absent

    @property
    def changed(self) -> bool:
        return bool(self.changes or self.resizes or self.moves or self.removals)


def config_diff(kind: GuestKind, desired: Dict[str, Any], current: Dict[str, Any],
                label: str = 'guest', move_disks: bool = False) -> ConfigDiff:
    """Compare the requested keys with the current (pending-aware) config; only differing keys change.

    Write-only keys (a cloud-init password) are not compared. An existing disk asked for larger grows
    (``resizes``); asked for smaller, it is an error (PVE never shrinks a disk). On another storage it moves
    with ``move_disks`` (``moves``), else that is a warning. ``detached`` / ``absent`` take a disk out
    (``removals``). A disk's options are written onto its current volume, never as a new ``storage:size``.

    :raises GuestConflictError: a disk asked for smaller than it is (naming both sizes).
    """
    diff = ConfigDiff()
    for key in sorted(desired):
        want = desired[key]
        if want is None or key in kind.write_only or key in kind.create_only:
            continue
        have = current.get(key)
        if kind.is_disk(key) and disk_removal(want):
            if have is not None:
                diff.removals[key] = disk_removal(want)
                diff.before[key], diff.after[key] = have, None
            continue
        if have is None:
            check_new_disk(kind, key, want)
        if key in kind.fixed_keys:
            if have is not None and not values_equal(kind, key, want, have):
                diff.warnings.append('%s: %s is %s and cannot be changed after creation (not %s)'
                                     % (label, key, have, word(api_value(key, want))))
            continue
        if kind.is_disk(key) and have is not None:
            _disk_diff(kind, key, want, have, label, move_disks, diff)
            continue
        if values_equal(kind, key, want, have):
            continue
        value = api_value(key, want)
        if kind.is_net(key) and have is not None:
            value = keep_mac(kind, value, have)
        diff.changes[key] = value
        diff.before[key] = have
        diff.after[key] = value
    return diff


def _disk_diff(kind: GuestKind, key: str, want: Any, have: Any, label: str, move_disks: bool,
               diff: ConfigDiff) -> None:
    """One existing disk: its options, its size (grow only) and its storage (moved only when asked)."""
    delta = disk_delta(want, have, kind.disk_default_key)
    size = storage = None
    if delta.resized:
        if delta.want_size < delta.have_size:
            raise GuestConflictError(
                "%s: disk %s is %s, and the task asks for %s: Proxmox VE cannot shrink a disk (the data past the "
                "new end would be lost). Give %s or more; nothing was changed"
                % (label, key, format_size(delta.have_size), format_size(delta.want_size),
                   format_size(delta.have_size)))
        size = delta.want_size
        diff.resizes[key] = format_size(size)
    if delta.moved:
        if move_disks:
            storage = delta.want_storage
            diff.moves[key] = storage
        else:
            diff.warnings.append('%s: disk %s is on storage %s, not %s (it is moved only with move_disks: true)'
                                 % (label, key, delta.have_storage, delta.want_storage))
    want_volume = split_props(want, kind.disk_default_key).get(kind.disk_default_key, '')
    other_volume = bool(want_volume) and not NEW_DISK.match(want_volume) and want_volume != word(have).partition(',')[0]
    if not delta.equal:
        # Another volume named explicitly is attached as given; otherwise the options go onto the current volume.
        if other_volume:
            diff.changes[key] = api_value(key, want)
        else:
            diff.changes[key] = with_disk_options(have, want, kind.disk_default_key)
    if not delta.equal or size is not None or storage is not None:
        diff.before[key] = have
        diff.after[key] = with_disk_options(diff.changes.get(key, have), want, kind.disk_default_key, size, storage)


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
