#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: pmx_backup
short_description: Back up guests now and prune their backups, on several Proxmox VE clusters
version_added: 0.2.0
description:
  - With O(state=backup) (the default), runs a backup (vzdump) now of one guest, found by O(name) or O(vmid)
    and routed as M(pmx.multicluster.pmx_vm) routes, or of every guest of one O(cluster) whose name matches
    O(pattern) and that carries all O(tags). It waits for each backup and returns the archive volume ids.
    A backup is an action, so it always reports a change.
  - M(pmx.multicluster.pmx_backup_info) lists backups.
  - With O(state=prune), removes the backups of the guest (or, without O(name) and O(vmid), of every guest on
    O(storage)) that the O(keep) policy does not keep; protected backups are never removed. A second run
    removes nothing.
  - A guest locked by another task (another backup, a migration, a snapshot) is waited for up to O(timeout)
    seconds, then the module fails naming the lock. A backup that fails (a full storage, the node's backup
    lock held by another job past O(timeout)) fails the module with the task's exit status and log lines.
author:
  - pmx.multicluster contributors (@pmx-multicluster)
extends_documentation_fragment:
  - pmx.multicluster.pmx
  - pmx.multicluster.pmx.modules
  - pmx.multicluster.pmx.actiongroup_pmx
attributes:
  check_mode:
    support: full
    description: Reads the clusters and reports what would be backed up or pruned (PVE's prune dry run); writes nothing.
  diff_mode:
    support: full
    description: Shows the guest's backups on the storage before and after.
options:
  name:
    description:
      - Name of the guest (VM or container). Routed like M(pmx.multicluster.pmx_vm) routes it.
    type: str
  vmid:
    description: ID of the guest; with O(name), both must agree.
    type: int
  cluster:
    description:
      - The cluster, overriding routing by name. Required with O(pattern) or O(tags).
    type: str
  pattern:
    description:
      - Back up every guest of O(cluster) whose name matches this glob (case-insensitive), for example V(prod-web*).
      - Templates are never backed up by a selection.
    type: str
  tags:
    description: Back up every guest of O(cluster) that carries all of these tags (with O(pattern), both apply).
    type: list
    elements: str
  state:
    description:
      - V(backup) runs a backup now, V(prune) removes what O(keep) does not keep.
    type: str
    choices: [backup, prune]
    default: backup
  storage:
    description:
      - The storage the backups go to or are on; it must have content C(backup).
    type: str
  mode:
    description:
      - The backup mode. V(snapshot) keeps the guest running, V(suspend) pauses it, V(stop) shuts it down for the
        backup and starts it again.
    type: str
    choices: [snapshot, suspend, stop]
    default: snapshot
  compress:
    description: Compression of the archive; V(0) for none.
    type: str
    choices: [zstd, gzip, lzo, '0']
    default: zstd
  notes:
    description:
      - Notes of the backup, a template that may use C({{guestname}}), C({{vmid}}), C({{node}}) and
        C({{cluster}}) (Proxmox VE replaces them).
      - The default, C({{guestname}}), is what lets M(pmx.multicluster.pmx_backup_info) and
        M(pmx.multicluster.pmx_restore) find a guest's backups by name quickly; with other notes the name is read
        from the archive.
      - In a task, write it so that Ansible does not template it, for example C("{{ '{{guestname}}' }} v2").
    type: str
    default: '{{guestname}}'
  protected:
    description: Protect the new backup from pruning and deletion.
    type: bool
    default: false
  keep:
    description:
      - Retention, with the rules of Proxmox VE's C(prune-backups) (pvesm(1)); required with O(state=prune). With
        O(state=backup), each guest's backups on O(storage) are pruned with it after its backup, as
        O(state=prune) prunes them (its own backups only; see the notes); RV(pruned) lists what was removed.
      - "Keys: C(last) (the newest N), C(hourly), C(daily), C(weekly), C(monthly), C(yearly) (the newest of each of
        the last N periods that have a backup), for example C({last: 3, daily: 7})."
    type: dict
  timeout:
    description:
      - Seconds to wait for each backup task and for a locked guest to be unlocked.
    type: int
    default: 300
notes:
  - Backups run one guest after another, each on the guest's node.
  - A prune of one guest judges only that guest's backups and removes them one by one (Proxmox VE's own prune
    counts every backup of a vmid together, and on a storage several clusters share one vmid may be a different
    guest in each cluster). Without O(name) and O(vmid), Proxmox VE prunes the whole storage, vmid by vmid.
  - "Routing never falls back when it could not look: when the cluster of a guest depends on finding it and a
    cluster cannot be read, the task fails before changing anything, naming that cluster."
seealso:
  - module: pmx.multicluster.pmx_backup_info
  - module: pmx.multicluster.pmx_restore
  - module: pmx.multicluster.pmx_vm
'''

EXAMPLES = r'''
- name: Back up prod-web01 now to the NFS backup storage (routed to production by its name)
  pmx.multicluster.pmx_backup:
    name: prod-web01
    storage: backup-nfs
    mode: snapshot
    compress: zstd
    notes: "{{ '{{guestname}}' }} before the upgrade"
    protected: true
  register: backup

- name: Back up every web guest of staging, keeping the newest three of each
  pmx.multicluster.pmx_backup:
    cluster: staging
    pattern: "stg-web*"
    tags: [web]
    storage: backup-nfs
    keep:
      last: 3

- name: Keep the last 2 and one per day for a week
  pmx.multicluster.pmx_backup:
    name: prod-web01
    storage: backup-nfs
    state: prune
    keep:
      last: 2
      daily: 7
'''

RETURN = r'''
error:
  description:
    - Why the module failed, as data beside C(msg), so that a play can C(rescue) on RV(error.type)
      instead of matching the text of the message. The same fields as the MCP server's tool errors.
    - Never contains a token secret.
  returned: failure
  type: dict
  sample: {type: GuestLockedError, cluster: production}
  contains:
    type:
      description:
        - The kind of failure, the name of the error class, for example V(GuestLockedError) (a guest stayed
          locked by another task), V(TaskError) (a Proxmox task did not end V(OK)), V(TaskTimeoutError),
          V(ClusterNotFoundError) (an unknown cluster name), V(ClusterConnectionError), V(AuthenticationError),
          V(PermissionDeniedError), V(ApiError), V(GuestNotFoundError), V(GuestConflictError),
          V(MigrationError) (a move PVE would refuse, or one left midway), V(SnapshotError),
          V(SnapshotNotFoundError), V(BackupError), V(BackupNotFoundError), V(NodeOfflineError),
          V(UnreadableClustersError) or V(ConfigError).
      type: str
      returned: always
      sample: TaskError
    cluster:
      description: The cluster it happened on.
      type: str
      returned: when known
      sample: production
    status:
      description: The HTTP status of the API's answer, when the API refused a request.
      type: int
      returned: when known
      sample: 500
    upid:
      description: The id of the Proxmox task that failed.
      type: str
      returned: when a task failed
    exitstatus:
      description: How that task ended.
      type: str
      returned: when a task failed
      sample: "command 'qm start 100' failed: exit code 1"
    log:
      description: The last lines of that task's log.
      type: list
      elements: str
      returned: when a task failed
cluster:
  description: The cluster the guests are on.
  returned: always
  type: str
  sample: production
route_reason:
  description: Why that cluster (V(explicit), V(pattern 'prod-*'), V(located), V(default)).
  returned: always
  type: str
archive:
  description: The volume id of the new backup, when one guest was backed up (V(null) in check mode).
  returned: state is backup
  type: str
  sample: backup-nfs:backup/vzdump-qemu-100-2026_12_02-03_00_00.vma.zst
archives:
  description: One entry per guest backed up, in vmid order.
  returned: state is backup
  type: list
  elements: dict
  contains:
    name:
      description: Guest name.
      type: str
    vmid:
      description: Guest id.
      type: int
    type:
      description: V(qemu) or V(lxc).
      type: str
    node:
      description: The node the backup ran on.
      type: str
    volid:
      description: The archive's volume id (V(null) in check mode).
      type: str
    size:
      description: Archive size in bytes.
      type: int
    time:
      description: When it was made, UTC (ISO 8601).
      type: str
    task:
      description: The vzdump task (C(action), C(upid), C(exitstatus)).
      type: dict
backups:
  description:
    - The guest's backups on the storage (every backup there for a prune of the whole storage), newest first,
      after the task, as M(pmx.multicluster.pmx_backup_info) returns them. Each has C(volid), C(storage),
      C(vmid), C(type), C(ctime) (epoch), C(time) (UTC), C(size) (bytes), C(format), C(notes) and C(protected).
  returned: always
  type: list
  elements: dict
pruned:
  description: With O(keep) and O(state=backup), the backups the prune after the backups removed (in check mode,
    would remove, not counting the new backup).
  returned: state is backup
  type: list
  elements: str
removed:
  description: The backups a prune removed (in check mode, would remove).
  returned: state is prune
  type: list
  elements: str
diff:
  description: The volume ids of the backups before and after.
  returned: always
  type: dict
'''

from ansible_collections.pmx.multicluster.plugins.module_utils.ansible_module import PmxModule
from ansible_collections.pmx.multicluster.plugins.module_utils.backups import (
    COMPRESSIONS,
    DEFAULT_NOTES,
    MODES,
    BackupError,
    Backups,
    guest_backups,
    keep_counts,
    list_backups,
    select_guests,
)
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.kinds import DEFAULT_TIMEOUT


def argument_spec():
    return dict(
        name=dict(type='str'),
        vmid=dict(type='int'),
        cluster=dict(type='str'),
        pattern=dict(type='str'),
        tags=dict(type='list', elements='str'),
        state=dict(type='str', default='backup', choices=['backup', 'prune']),
        storage=dict(type='str'),
        mode=dict(type='str', default='snapshot', choices=list(MODES)),
        compress=dict(type='str', default='zstd', choices=list(COMPRESSIONS)),
        notes=dict(type='str', default=DEFAULT_NOTES),
        protected=dict(type='bool', default=False),
        keep=dict(type='dict'),
        timeout=dict(type='int', default=DEFAULT_TIMEOUT),
    )


def _targets(pmx):
    """(route, client, guests): the one guest named, or the selection of one cluster."""
    p = pmx.params
    registry = pmx.registry
    if p['pattern'] or p['tags']:
        if p['name'] or p['vmid'] is not None:
            raise BackupError('give either name/vmid (one guest) or pattern/tags (a selection), not both')
        if not p['cluster']:
            raise BackupError('pattern and tags select guests of one cluster: give cluster too')
        route = registry.select(cluster=p['cluster'])
        client = registry.client(route.cluster)
        return route, client, select_guests(client.get('cluster/resources', type='vm') or [], route.cluster,
                                            p['pattern'], p['tags'])
    if not p['name'] and p['vmid'] is None:
        raise BackupError('give name or vmid of the guest, or cluster with pattern or tags')
    route, client, guest = registry.find_guest(p['name'], p['vmid'], p['cluster'], strict=True)
    return route, client, [guest]


def _volids(rows):
    return [r['volid'] for r in rows]


def backup_now(pmx):
    p = pmx.params
    if not p['storage']:
        raise BackupError('storage is required: the storage the backup goes to (content backup)')
    if p['keep']:
        keep_counts(p['keep'])  # checked before anything is sent
    route, client, guests = _targets(pmx)
    backups = Backups(client, route.cluster, check_mode=pmx.check_mode)
    vmid = guests[0]['vmid'] if len(guests) == 1 else None
    before = list_backups(client, route.cluster, p['storage'], vmid)
    archives, pruned = [], []
    for guest in guests:
        archives.append(backups.backup(guest, p['storage'], p['mode'], p['compress'], p['notes'], p['protected'],
                                       p['timeout']))
        if p['keep']:
            # Not vzdump's own prune-backups: PVE would prune by vmid, and on a storage several clusters share one
            # vmid may be another cluster's guest. The guest's own backups are judged, by the name they hold.
            own = guest_backups(client, route.cluster, p['storage'], guest.get('name'))
            pruned.extend(backups.prune(p['storage'], p['keep'], own)['removed'])
    after = before if pmx.check_mode else list_backups(client, route.cluster, p['storage'], vmid)
    diff_after = _volids(after) + (['(new) %s' % a['name'] for a in archives] if pmx.check_mode else [])
    return {'changed': True, 'cluster': route.cluster, 'route_reason': route.reason,
            'archive': archives[0]['volid'] if len(archives) == 1 else None, 'archives': archives,
            'backups': after, 'pruned': sorted(pruned),
            'diff': {'before': {'backups': _volids(before)}, 'after': {'backups': diff_after}}}


def prune(pmx):
    p = pmx.params
    registry = pmx.registry
    named = p['name'] or p['vmid'] is not None
    if not p['storage']:
        raise BackupError('storage is required with state=prune')
    keep_counts(p['keep'])  # checked before anything is read
    if named:
        route = registry.select(cluster=p['cluster'], name=p['name'], vmid=p['vmid'], lookup=True)
    elif p['cluster']:
        route = registry.select(cluster=p['cluster'])
    else:
        raise BackupError('give name or vmid of the guest, or cluster to prune every backup of the storage')
    client = registry.client(route.cluster)
    storage = p['storage']

    def current():
        return guest_backups(client, route.cluster, storage, p['name'], p['vmid']) if named else \
            list_backups(client, route.cluster, storage)
    before = current()
    pruner = Backups(client, route.cluster, check_mode=pmx.check_mode)
    pruned = pruner.prune(storage, p['keep'], before if named else None)
    removed = pruned['removed']
    after = [r for r in before if r['volid'] not in removed] if pmx.check_mode else current()
    return {'changed': bool(removed), 'cluster': route.cluster, 'route_reason': route.reason, 'removed': removed,
            'backups': after, 'diff': {'before': {'backups': _volids(before)}, 'after': {'backups': _volids(after)}}}


def run(pmx):
    if pmx.params['state'] == 'backup':
        return backup_now(pmx)
    return prune(pmx)


def main():
    pmx = PmxModule(argument_spec=argument_spec(), supports_check_mode=True)
    pmx.run(run)


if __name__ == '__main__':
    main()
