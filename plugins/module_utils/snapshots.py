# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Guest snapshots: list, take (idempotent) and roll back, over one cluster's client.

Pure Python (no Ansible import), shared by the MCP server and any module that needs snapshots. Every
write goes through the locked writer (tasks.py): it waits out the guest's lock and for its task, so a
failed task raises TaskError with its exit status and log tail. Names are checked before anything is
sent (pve/checks.py), because PVE's own answer for a bad name is a terse 400.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from typing import Any, Dict, List, Optional

from ansible_collections.pmx.multicluster.plugins.module_utils.errors import SnapshotNotFoundError
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.checks import check_snapshot_name
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.kinds import DEFAULT_TIMEOUT, guest_path, kind_of
from ansible_collections.pmx.multicluster.plugins.module_utils.tasks import LockedWriter, task_record

check_name = check_snapshot_name  # the name every caller knows


def _path(guest_type: str, node: str, vmid: int, tail: str = '') -> str:
    return guest_path(guest_type, node, vmid, 'snapshot' + (('/' + tail) if tail else ''))


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


def _writer(client: Any, cluster: Optional[str], guest: Dict) -> LockedWriter:
    return LockedWriter(client, cluster or client.cluster.name, kind_of(guest['type']))


def ensure_snapshot(client: Any, guest: Dict, snapname: str, description: Optional[str] = None,
                    vmstate: bool = False, timeout: float = DEFAULT_TIMEOUT, cluster: Optional[str] = None) -> Dict:
    """Take a snapshot of ``guest`` (its /cluster/resources entry) unless one of that name exists.

    Returns ``{changed, snapname, tasks}``. :raises SnapshotError: bad name. :raises TaskError: the task failed.
    """
    name = check_snapshot_name(snapname)
    out = {'changed': False, 'snapname': name, 'tasks': []}
    if any(s['name'] == name for s in list_snapshots(client, guest['type'], guest['node'], guest['vmid'])):
        return out
    params: Dict[str, Any] = {'snapname': name}
    if description:
        params['description'] = description
    if vmstate and guest['type'] == 'qemu':
        params['vmstate'] = 1
    task = _writer(client, cluster, guest).write(guest, timeout, 'POST', 'snapshot', **params)
    out.update(changed=True, tasks=[task_record('snapshot', task)])
    return out


def rollback(client: Any, guest: Dict, snapname: str, start: bool = False, timeout: float = DEFAULT_TIMEOUT,
             cluster: Optional[str] = None) -> Dict:
    """Roll ``guest`` back to a snapshot and wait for the task; returns ``{changed, snapname, tasks}``.

    :param start: start the guest after the rollback (PVE's ``start`` flag).
    :raises TaskError: the task failed (no such snapshot...). :raises GuestLockedError: locked past the timeout.
    """
    name = check_snapshot_name(snapname)
    params: Dict[str, Any] = {'start': 1} if start else {}
    task = _writer(client, cluster, guest).write(guest, timeout, 'POST', 'snapshot/%s/rollback' % name, **params)
    return {'changed': True, 'snapname': name, 'tasks': [task_record('rollback', task)]}
