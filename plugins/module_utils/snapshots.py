# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Guest snapshots: list, create and roll back, over one cluster's client.

Pure Python (no Ansible import), shared by the MCP server and any module
that needs snapshots. Every call that starts a Proxmox task waits for it
with ``client.run_task``, so a failed task raises TaskError with its exit
status and log tail. Names are checked before anything is sent, because
PVE's own answer for a bad name is a terse 400.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
from typing import Any, Dict, List, Optional

from ansible_collections.pmx.multicluster.plugins.module_utils.errors import ClusterError, ResourceNotFoundError

DEFAULT_TIMEOUT = 300
# PVE's pve-configid format: a letter, then letters, digits, '-' and '_'; at most 40 characters.
SNAPNAME_RE = re.compile(r'^[A-Za-z][A-Za-z0-9_-]{1,39}$')
RESERVED = ('current', 'pending', 'vzdump')
GUEST_TYPES = ('qemu', 'lxc')


class SnapshotError(ClusterError):
    """A snapshot request that cannot be right: a bad or reserved name, an existing name."""


class SnapshotNotFoundError(ResourceNotFoundError):
    """No snapshot with this name; the message lists the guest's snapshots."""


def _path(guest_type: str, node: str, vmid: int, tail: str = '') -> str:
    if guest_type not in GUEST_TYPES:
        raise SnapshotError("a guest type must be one of %s, got '%s'" % (', '.join(GUEST_TYPES), guest_type))
    return 'nodes/%s/%s/%s/snapshot%s' % (node, guest_type, int(vmid), ('/' + tail) if tail else '')


def check_name(snapname: str) -> str:
    """The snapshot name if PVE accepts it; :raises SnapshotError: with the rule spelled out."""
    name = str(snapname or '').strip()
    if name.lower() in RESERVED:
        raise SnapshotError("'%s' is a reserved snapshot name; choose another one" % name)
    if not SNAPNAME_RE.match(name):
        raise SnapshotError("invalid snapshot name '%s': it must start with a letter, contain only letters, "
                            "digits, '-' and '_', and be 2 to 40 characters long" % name)
    return name


def list_snapshots(client: Any, guest_type: str, node: str, vmid: int) -> List[Dict]:
    """The guest's snapshots, oldest first; ``current`` is true on the one the guest runs from.

    PVE's ``current`` pseudo-entry ("You are here!") is folded into that flag.
    """
    entries = client.get(_path(guest_type, node, vmid)) or []
    here = next((e for e in entries if e.get('name') == 'current'), {})
    out = []
    for entry in entries:
        if entry.get('name') == 'current':
            continue
        out.append({
            'name': entry.get('name'),
            'description': (entry.get('description') or '').rstrip('\n'),
            'snaptime': entry.get('snaptime'),
            'parent': entry.get('parent'),
            'vmstate': bool(entry.get('vmstate')),
            'current': entry.get('name') == here.get('parent'),
            'state': entry.get('snapstate'),
        })
    out.sort(key=lambda s: (s['snaptime'] or 0, s['name'] or ''))
    return out


def find_snapshot(client: Any, guest_type: str, node: str, vmid: int, snapname: str,
                  cluster: Optional[str] = None) -> Dict:
    """One snapshot of the guest; :raises SnapshotNotFoundError: listing the snapshots there are."""
    snapshots = list_snapshots(client, guest_type, node, vmid)
    for snap in snapshots:
        if snap['name'] == snapname:
            return snap
    raise SnapshotNotFoundError(
        "%sguest %s has no snapshot '%s'; its snapshots: %s"
        % (("cluster '%s': " % cluster) if cluster else '', vmid, snapname,
           ', '.join(s['name'] for s in snapshots) or '(none)'), cluster, 404)


def create_snapshot(client: Any, guest_type: str, node: str, vmid: int, snapname: str,
                    description: Optional[str] = None, vmstate: bool = False,
                    timeout: float = DEFAULT_TIMEOUT) -> Dict:
    """Take a snapshot and wait for the task; returns the task status (with ``upid``).

    :raises SnapshotError: bad name. :raises TaskError: the task failed (for example, the name is taken).
    """
    params: Dict[str, Any] = {'snapname': check_name(snapname)}
    if description:
        params['description'] = description
    if vmstate and guest_type == 'qemu':
        params['vmstate'] = 1
    return client.run_task('POST', _path(guest_type, node, vmid), params, timeout)


def rollback_snapshot(client: Any, guest_type: str, node: str, vmid: int, snapname: str,
                      start: bool = False, timeout: float = DEFAULT_TIMEOUT) -> Dict:
    """Roll the guest back to a snapshot and wait for the task; returns the task status.

    :param start: start the guest after the rollback (PVE's ``start`` flag).
    :raises TaskError: the task failed (no such snapshot, guest locked...).
    """
    params: Dict[str, Any] = {}
    if start:
        params['start'] = 1
    return client.run_task('POST', _path(guest_type, node, vmid, '%s/rollback' % check_name(snapname)),
                           params, timeout)
