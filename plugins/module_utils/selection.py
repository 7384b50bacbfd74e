# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Actions on a selection of guests across clusters (pmx_guest_action, the MCP server's bulk tool).

``select`` picks existing guests by name pattern, cluster, tags, status and type from every cluster's
``/cluster/resources``, refusing when a cluster it needs could not be read. ``run_action`` applies one entry of
``ACTIONS`` to each, concurrently within the fleet bounds (fleet.py), optionally rolling (``serial`` guests at a
time, stopping once more than ``max_failures`` failed). Each action is one table entry: a power action is the
guest manager's ensure (so check mode returns the very plan it would apply), a snapshot is snapshots.py's.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ansible_collections.pmx.multicluster.plugins.module_utils import backups, snapshots
from ansible_collections.pmx.multicluster.plugins.module_utils.errors import ClusterError, UnreadableClustersError
from ansible_collections.pmx.multicluster.plugins.module_utils.fleet import Bounds, Runner, failure
from ansible_collections.pmx.multicluster.plugins.module_utils.guests.manager import GuestManager
from ansible_collections.pmx.multicluster.plugins.module_utils.guests.migration import Migrator, MoveSpec
from ansible_collections.pmx.multicluster.plugins.module_utils.guests.spec import GuestSpec
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.kinds import DEFAULT_TIMEOUT, kind_of
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.values import parse_tags
from ansible_collections.pmx.multicluster.plugins.module_utils.router import Route

# The selection's guest types, as the guests role names them, and PVE's.
TYPES = {'vm': 'qemu', 'lxc': 'lxc'}
STATUSES = ('running', 'stopped', 'paused')


@dataclass
class Selector:
    """Which guests: every filter given must match (names: any of the globs; tags: all of them)."""

    names: Sequence[str] = ()
    clusters: Sequence[str] = ()
    tags: Sequence[str] = ()
    status: Optional[str] = None
    types: Sequence[str] = ()

    def matches(self, guest: Dict) -> bool:
        if guest.get('template') or guest.get('type') not in TYPES.values():
            return False  # templates are never powered or snapshotted
        name = str(guest.get('name') or '').lower()
        if self.names and not any(fnmatchcase(name, str(p).lower()) for p in self.names):
            return False
        if self.status and guest.get('status') != self.status:
            return False
        if self.types and guest.get('type') not in [TYPES.get(t, t) for t in self.types]:
            return False
        have = [t.lower() for t in parse_tags(guest.get('tags'))]
        return all(str(t).lower() in have for t in self.tags)

    def describe(self) -> str:
        parts = [('names %s' % ', '.join(self.names)) if self.names else '',
                 ('clusters %s' % ', '.join(self.clusters)) if self.clusters else '',
                 ('tags %s' % ', '.join(self.tags)) if self.tags else '',
                 ('status %s' % self.status) if self.status else '',
                 ('type %s' % ', '.join(self.types)) if self.types else '']
        return '; '.join(p for p in parts if p) or 'every guest'


def select(registry: Any, selector: Selector) -> List[Tuple[str, Dict]]:
    """(cluster, /cluster/resources entry) of every guest the selector picks, by cluster (configuration order)
    then vmid.

    :raises UnreadableClustersError: a cluster to select from could not be read (nothing is selected then: acting
        on part of a selection the user could not see is not what was asked).
    """
    names = registry.match(list(selector.clusters) or None)
    results = registry.guests(names)
    unreadable = dict((name, str(r.error)) for name, r in results.items() if not r.ok)
    if unreadable:
        which = ', '.join("'%s'" % c for c in unreadable)
        raise UnreadableClustersError(
            'cannot select the guests (%s): cluster(s) %s could not be read (%s). Nothing was changed. Limit cluster: '
            'to the clusters that answer, or run again once %s answers.'
            % (selector.describe(), which, '; '.join(unreadable.values()), which), unreadable)
    picked = []
    for name in names:
        for guest in sorted(results[name].value or [], key=lambda g: int(g.get('vmid', 0))):
            if selector.matches(guest):
                picked.append((name, guest))
    return picked


# ------------------------------------------------------------------ the actions

@dataclass
class Options:
    """What the actions take beside the guest."""

    timeout: float = DEFAULT_TIMEOUT
    force: bool = False
    snapname: Optional[str] = None
    description: Optional[str] = None
    vmstate: bool = False
    storage: Optional[str] = None          # backup: the backup storage
    mode: str = 'snapshot'                 # backup: snapshot, suspend or stop
    compress: str = 'zstd'
    target_node: Optional[str] = None      # migrate
    target_cluster: Optional[str] = None   # migrate


@dataclass(frozen=True)
class Action:
    """One action of the table: ``run(registry, cluster, guest, options, check_mode)`` returns
    ``{changed, plan, tasks...}``; ``disruptive`` ones are those a rolling mode is for."""

    name: str
    disruptive: bool
    run: Callable[..., Dict]
    needs: Tuple[str, ...] = ()
    description: str = ''


def _power(state: str, hard_stop: bool = False) -> Callable[..., Dict]:
    """A power action as the guest manager's ensure of ``state`` on the selected guest (its cluster given)."""
    def run(registry, cluster: str, guest: Dict, options: Options, check_mode: bool) -> Dict:
        spec = GuestSpec(name=guest.get('name'), vmid=int(guest['vmid']), cluster=cluster, update=False,
                         timeout=options.timeout, force=options.force, hard_stop=hard_stop)
        manager = GuestManager(registry, kind_of(guest['type']), check_mode=check_mode)
        result = manager.ensure(state, spec, route=Route(cluster, 'selected'))
        return dict((k, result[k]) for k in ('changed', 'plan', 'tasks', 'status', 'node', 'warnings')
                    if k in result)
    return run


def _snapshot(registry, cluster: str, guest: Dict, options: Options, check_mode: bool) -> Dict:
    """Take the snapshot ``options.snapname`` unless the guest has one of that name (snapshots.py)."""
    client = registry.client(cluster)
    step = {'action': 'snapshot', 'params': {'snapname': options.snapname}}
    if check_mode:
        have = snapshots.list_snapshots(client, guest['type'], guest['node'], guest['vmid'])
        missing = not any(s['name'] == options.snapname for s in have)
        return {'changed': missing, 'plan': [step] if missing else [], 'tasks': []}
    done = snapshots.ensure_snapshot(client, guest, options.snapname, options.description, options.vmstate,
                                     options.timeout, cluster)
    return {'changed': done['changed'], 'plan': [step] if done['changed'] else [], 'tasks': done['tasks']}


def _backup(registry, cluster: str, guest: Dict, options: Options, check_mode: bool) -> Dict:
    """A backup now to ``options.storage`` (backups.py, as pmx_backup): an action, so always a change."""
    done = backups.Backups(registry.client(cluster), cluster, check_mode=check_mode).backup(
        guest, options.storage, options.mode, options.compress, timeout=options.timeout)
    step = {'action': 'backup', 'params': {'storage': options.storage, 'mode': options.mode}}
    return {'changed': True, 'plan': [step], 'tasks': [done['task']] if done.get('task') else [],
            'archive': done.get('volid')}


def _migrate(registry, cluster: str, guest: Dict, options: Options, check_mode: bool) -> Dict:
    """A move to ``options.target_node`` and / or ``options.target_cluster`` (guests/migration.py, as pmx_migrate)."""
    spec = MoveSpec(name=guest.get('name'), vmid=int(guest['vmid']), type=guest['type'], cluster=cluster,
                    target_node=options.target_node, target_cluster=options.target_cluster, timeout=options.timeout)
    result = Migrator(registry, check_mode=check_mode).ensure(spec)
    return dict((k, result[k]) for k in ('changed', 'plan', 'tasks', 'status', 'node', 'now', 'warnings')
                if k in result)


# One entry per action; each over its own core.
ACTIONS: Dict[str, Action] = dict((a.name, a) for a in (
    Action('start', False, _power('started'), description='start the guests that are not running'),
    Action('shutdown', True, _power('stopped'),
           description='shut the running guests down (with force, stop hard those that do not go down in time)'),
    Action('stop', True, _power('stopped', hard_stop=True), description='power the running guests off at once'),
    Action('reboot', True, _power('restarted'), description='reboot the running guests, start the stopped ones'),
    Action('snapshot', False, _snapshot, needs=('snapname',),
           description='take the named snapshot of the guests that do not have it'),
    Action('backup', False, _backup, needs=('storage',), description='back the guests up now'),
    Action('migrate', True, _migrate, description='move the guests to the target node or cluster'),
))


def check_options(action: str, options: Options) -> Action:
    """The table entry of ``action`` with what it needs checked before any request.

    :raises ClusterError: an unknown action, or a missing or bad option (a snapshot name).
    """
    if action not in ACTIONS:
        raise ClusterError("unknown action '%s'; the actions are %s" % (action, ', '.join(ACTIONS)))
    entry = ACTIONS[action]
    for need in entry.needs:
        if not getattr(options, need):
            raise ClusterError("action '%s' needs %s" % (action, need))
    if action == 'migrate' and not (options.target_node or options.target_cluster):
        raise ClusterError("action 'migrate' needs target_node or target_cluster")
    if options.snapname:
        snapshots.check_name(options.snapname)
    return entry


def run_action(registry: Any, action: str, picked: Sequence[Tuple[str, Dict]], options: Options,
               check_mode: bool = False, bounds: Optional[Bounds] = None, serial: Optional[int] = None,
               max_failures: Optional[int] = None, scrub: Callable[[str], str] = str) -> List[Dict]:
    """Apply ``action`` to every picked guest; one result per guest, in order.

    Concurrent within ``bounds``; with ``serial``, ``serial`` guests at a time, each batch finished before the
    next. Once more than ``max_failures`` guests failed (None: no limit; with ``serial`` the default is 0), no
    further guest is begun; those are ``skipped``. In check mode each result's ``plan`` is what would be done.
    """
    entry = check_options(action, options)
    bounds = bounds or Bounds()
    if serial and max_failures is None:
        max_failures = 0
    runner = Runner(len(picked) or 1, max_failures=max_failures)

    def base(item: Tuple[str, Dict]) -> Dict[str, Any]:
        cluster, guest = item
        return {'cluster': cluster, 'name': guest.get('name'), 'vmid': int(guest['vmid']),
                'type': 'lxc' if guest.get('type') == 'lxc' else 'vm', 'node': guest.get('node'),
                'status_before': guest.get('status'), 'action': action, 'changed': False, 'plan': [], 'tasks': [],
                'error': None, 'failed': False, 'skipped': False}

    def job(item: Tuple[str, Dict]) -> Dict[str, Any]:
        out = base(item)
        cluster, guest = item
        try:
            if check_mode:
                out.update(entry.run(registry, cluster, dict(guest), options, True))
            else:
                nodes = [guest['node']]
                if options.target_node and not options.target_cluster:
                    nodes.append(options.target_node)  # a move within the cluster works on both nodes
                with runner.gate(bounds)(cluster, nodes):
                    out.update(entry.run(registry, cluster, dict(guest), options, False))
        except ClusterError as exc:
            out.update(failed=True, error=failure(exc, scrub))
        return out

    return runner.run(picked, job, lambda item: dict(base(item), skipped=True), serial=serial)
