# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Guest snapshots: list (flat and as a tree), take (idempotent), delete, keep the newest N, roll back.

Pure Python (no Ansible import), shared by the MCP server and any module that needs snapshots. Every
write goes through the locked writer (tasks.py): it waits out the guest's lock and for its task, so a
failed task raises TaskError with its exit status and log tail. Names are checked before anything is
sent (pve/checks.py), because PVE's own answer for a bad name is a terse 400.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fnmatch
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from ansible_collections.pmx.multicluster.plugins.module_utils.errors import SnapshotError, SnapshotNotFoundError
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.checks import check_snapshot_name
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.kinds import DEFAULT_TIMEOUT, guest_path, kind_of
from ansible_collections.pmx.multicluster.plugins.module_utils.tasks import LockedWriter, task_record

check_name = check_snapshot_name  # the name every caller knows
SNAPSHOT_STATES = ('present', 'absent', 'rollback')


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


def _write_step(writer: LockedWriter, guest: Dict, step: Dict, timeout: float) -> Dict:
    """Send one step (create, delete or rollback) through the locked writer and wait for its task."""
    action, name = step['action'], step['snapname']
    if action == 'create':
        params: Dict[str, Any] = {'snapname': name}
        if step.get('description'):
            params['description'] = step['description']
        if step.get('vmstate') and guest['type'] == 'qemu':
            params['vmstate'] = 1
        return writer.write(guest, timeout, 'POST', 'snapshot', **params)
    if action == 'delete':
        return writer.write(guest, timeout, 'DELETE', 'snapshot/%s' % name)
    params = {'start': 1} if step.get('start') else {}
    return writer.write(guest, timeout, 'POST', 'snapshot/%s/rollback' % name, **params)


def ensure_snapshot(client: Any, guest: Dict, snapname: str, description: Optional[str] = None,
                    vmstate: bool = False, timeout: float = DEFAULT_TIMEOUT, cluster: Optional[str] = None) -> Dict:
    """Take a snapshot of ``guest`` (its /cluster/resources entry) unless one of that name exists.

    Returns ``{changed, snapname, tasks}``. :raises SnapshotError: bad name. :raises TaskError: the task failed.
    """
    name = check_snapshot_name(snapname)
    out = {'changed': False, 'snapname': name, 'tasks': []}
    if any(s['name'] == name for s in list_snapshots(client, guest['type'], guest['node'], guest['vmid'])):
        return out
    step = {'action': 'create', 'snapname': name, 'description': description, 'vmstate': vmstate}
    task = _write_step(_writer(client, cluster, guest), guest, step, timeout)
    out.update(changed=True, tasks=[task_record('snapshot', task)])
    return out


def rollback(client: Any, guest: Dict, snapname: str, start: bool = False, timeout: float = DEFAULT_TIMEOUT,
             cluster: Optional[str] = None) -> Dict:
    """Roll ``guest`` back to a snapshot and wait for the task; returns ``{changed, snapname, tasks}``.

    :param start: start the guest after the rollback (PVE's ``start`` flag).
    :raises TaskError: the task failed (no such snapshot...). :raises GuestLockedError: locked past the timeout.
    """
    name = check_snapshot_name(snapname)
    step = {'action': 'rollback', 'snapname': name, 'start': start}
    task = _write_step(_writer(client, cluster, guest), guest, step, timeout)
    return {'changed': True, 'snapname': name, 'tasks': [task_record('rollback', task)]}


def snapshot_tree(snapshots: List[Dict]) -> List[Dict]:
    """The snapshots as PVE's tree: each ``{name, snaptime, current, children: [...]}``, roots oldest first.

    A snapshot whose parent is not in the list (deleted meanwhile) is a root.
    """
    names = set(s['name'] for s in snapshots)
    nodes = dict((s['name'], {'name': s['name'], 'snaptime': s['snaptime'], 'current': s['current'],
                              'children': []}) for s in snapshots)
    roots = []
    for snap in snapshots:  # oldest first, so children are in time order too
        parent = snap.get('parent')
        (nodes[parent]['children'] if parent in names else roots).append(nodes[snap['name']])
    return roots


def matches(snapname: str, prefix: Optional[str] = None, pattern: Optional[str] = None) -> bool:
    """Whether a snapshot name is one a retention rule covers: it starts with ``prefix`` or matches the glob
    ``pattern`` (case-sensitive, as PVE's names are)."""
    if prefix is not None and not snapname.startswith(prefix):
        return False
    if pattern is not None and not fnmatch.fnmatchcase(snapname, pattern):
        return False
    return True


def retention(snapshots: List[Dict], keep: int, prefix: Optional[str] = None,
              pattern: Optional[str] = None) -> Tuple[List[str], List[str]]:
    """(kept, to delete): of the snapshots a rule covers, the newest ``keep`` stay, the rest go. Pure.

    Newest is by ``snaptime``, then name (PVE's snaptime has one-second steps).
    """
    if keep is None or int(keep) < 0:
        raise SnapshotError('keep must be a whole number, 0 or more (the newest snapshots that stay)')
    covered = [s for s in snapshots if matches(s['name'], prefix, pattern)]
    covered.sort(key=lambda s: (s['snaptime'] or 0, s['name']), reverse=True)
    return [s['name'] for s in covered[:int(keep)]], [s['name'] for s in covered[int(keep):]]


def check_not_current_parent(snapshots: List[Dict], names: List[str], label: str, force: bool) -> None:
    """:raises SnapshotError: a snapshot to delete is the parent of the guest's current state (unless ``force``).

    PVE deletes it (the state's parent becomes that snapshot's parent), but a rollback to "the state before the
    change" is then no longer possible; so it is only done when asked for.
    """
    parent = next((s['name'] for s in snapshots if s['current']), None)
    if parent in names and not force:
        raise SnapshotError(
            "%s: snapshot '%s' is the parent of the current state (the guest runs from it); deleting it is refused. "
            "Set force: true to delete it anyway, or keep more snapshots; nothing was changed" % (label, parent))


@dataclass
class SnapshotRequest:
    """What a task asks of one guest's snapshots."""

    state: str = 'present'                 # present, absent or rollback
    snapname: Optional[str] = None
    description: Optional[str] = None
    vmstate: bool = False
    start: bool = False                    # after a rollback
    keep: Optional[int] = None             # retention: the newest N covered snapshots stay
    prefix: Optional[str] = None
    pattern: Optional[str] = None
    force: bool = False                    # may delete the parent of the current state
    timeout: float = DEFAULT_TIMEOUT


def check_request(req: SnapshotRequest) -> None:
    """What can be checked before any request. :raises SnapshotError: with what to do."""
    if req.state not in SNAPSHOT_STATES:
        raise SnapshotError('state must be one of %s' % ', '.join(SNAPSHOT_STATES))
    if req.snapname is not None:
        check_snapshot_name(req.snapname)
    if req.state in ('present', 'rollback') and req.snapname is None:
        raise SnapshotError('state=%s needs snapname' % req.state)
    if req.state == 'absent' and req.snapname is None and req.keep is None:
        raise SnapshotError('state=absent needs snapname (one snapshot) or keep with prefix or pattern (retention)')
    if req.keep is not None:
        if req.state == 'rollback':
            raise SnapshotError('keep (retention) goes with state=present or state=absent, not rollback')
        if req.prefix is None and req.pattern is None:
            raise SnapshotError('keep needs prefix or pattern: which snapshots the retention covers (the others '
                                'are never deleted by it)')
        if int(req.keep) < 0:
            raise SnapshotError('keep must be 0 or more')
    elif req.prefix is not None or req.pattern is not None:
        raise SnapshotError('prefix and pattern select snapshots for retention: give keep too')


def plan_snapshots(req: SnapshotRequest, snapshots: List[Dict], label: str) -> Dict:
    """The steps for one guest, decided from its snapshots (pure): ``{steps, before, after, kept}``.

    Each step is ``{action: create|delete|rollback, snapname}``. A create comes before the retention that
    counts it among the newest; a rollback is always a step (PVE has no "already there").
    """
    names = [s['name'] for s in snapshots]
    steps: List[Dict] = []
    kept: List[str] = []
    if req.state == 'rollback':
        if req.snapname not in names:
            raise SnapshotNotFoundError("%s has no snapshot '%s'; its snapshots: %s"
                                        % (label, req.snapname, ', '.join(names) or '(none)'))
        steps.append({'action': 'rollback', 'snapname': req.snapname, 'start': bool(req.start)})
        return {'steps': steps, 'before': {'snapshots': names}, 'after': {'snapshots': names}, 'kept': kept}
    after = list(names)
    planned = list(snapshots)
    if req.state == 'present' and req.snapname not in names:
        step = {'action': 'create', 'snapname': req.snapname}
        if req.description:
            step['description'] = req.description
        if req.vmstate:
            step['vmstate'] = True
        steps.append(step)
        after.append(req.snapname)
        # The new snapshot is the newest, and the current state's parent from then on.
        planned = [dict(s, current=False) for s in snapshots] + [
            {'name': req.snapname, 'snaptime': float('inf'), 'current': True, 'parent': None}]
    elif req.state == 'absent' and req.snapname is not None and req.snapname in names:
        # Named explicitly: the task says which one goes, even the current state's parent (PVE then bases the
        # state on that snapshot's parent). Only retention, which names none, needs force for it.
        steps.append({'action': 'delete', 'snapname': req.snapname})
        after.remove(req.snapname)
    if req.keep is not None:
        kept, doomed = retention(planned, req.keep, req.prefix, req.pattern)
        check_not_current_parent(planned, doomed, label, req.force)
        for name in doomed:
            if name in after:
                steps.append({'action': 'delete', 'snapname': name})
                after.remove(name)
    return {'steps': steps, 'before': {'snapshots': names}, 'after': {'snapshots': after}, 'kept': kept}


def ensure(registry: Any, req: SnapshotRequest, name: Optional[str] = None, vmid: Optional[int] = None,
           cluster: Optional[str] = None, check_mode: bool = False, found: Optional[Tuple[Any, Any, Dict]] = None
           ) -> Dict:
    """Route to the guest (strictly: never the wrong cluster), read its snapshots, plan, and apply unless
    ``check_mode``. The result the modules and the MCP server return.

    :param found: (route, client, guest) the caller already found (the MCP server checks its write settings
        against the route first).
    :raises SnapshotError: bad request, or a delete of the current state's parent without ``force``.
    :raises GuestLockedError: locked by another task past the timeout. :raises TaskError: a task failed.
    """
    check_request(req)
    route, client, guest = found or registry.find_guest(name=name, vmid=vmid, cluster=cluster, strict=True)
    guest = dict(guest)
    kind = kind_of(guest['type'])
    writer = LockedWriter(client, route.cluster, kind)
    label = "cluster '%s': %s" % (route.cluster, writer.describe(guest))
    before = list_snapshots(client, guest['type'], guest['node'], guest['vmid'])
    plan = plan_snapshots(req, before, label)
    result = {'changed': bool(plan['steps']), 'cluster': route.cluster, 'route_reason': route.reason,
              'vmid': int(guest['vmid']), 'name': guest.get('name'), 'type': guest['type'], 'node': guest['node'],
              'snapname': req.snapname, 'plan': plan['steps'], 'kept': plan['kept'],
              'deleted': [s['snapname'] for s in plan['steps'] if s['action'] == 'delete'],
              'diff': {'before': plan['before'], 'after': plan['after']}, 'tasks': []}
    if check_mode:
        result['snapshots'] = before
        return result
    for step in plan['steps']:
        task = _write_step(writer, guest, step, req.timeout)
        result['tasks'].append(dict(task_record(step['action'], task), snapname=step['snapname']))
    result['snapshots'] = list_snapshots(client, guest['type'], guest['node'], guest['vmid'])
    if req.state == 'rollback':
        current = client.get(writer.path(guest, 'status/current')) or {}
        result['status'] = current.get('status')
    return result


def snapshot_info(registry: Any, name: Optional[str] = None, vmid: Optional[int] = None,
                  cluster: Optional[str] = None) -> Dict:
    """The snapshots of one guest, flat (oldest first) and as a tree, routed as a read.

    A read that could not look in every cluster still answers from the cluster it found the guest in;
    ``unreadable`` names the others (a guest it did not find there is an error naming them).
    """
    route, client, guest = registry.find_guest(name=name, vmid=vmid, cluster=cluster, strict=False)
    snaps = list_snapshots(client, guest['type'], guest['node'], guest['vmid'])
    return {'changed': False, 'cluster': route.cluster, 'route_reason': route.reason, 'vmid': int(guest['vmid']),
            'name': guest.get('name'), 'type': guest['type'], 'node': guest['node'], 'snapshots': snaps,
            'tree': snapshot_tree(snaps), 'current_parent': next((s['name'] for s in snaps if s['current']), None),
            'unreadable': [{'cluster': c, 'error': e} for c, e in sorted(route.unreadable.items())]}
