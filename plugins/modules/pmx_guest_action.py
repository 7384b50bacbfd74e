#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: pmx_guest_action
short_description: Start, stop, reboot, snapshot, back up or migrate a selection of guests across Proxmox VE clusters
version_added: 0.2.0
description:
  - Selects existing VMs and containers across the configured clusters by name pattern (O(name)), cluster,
    tags, status and type, and applies one O(action) to each, concurrently within O(per_cluster) and
    O(per_node).
  - A separate module rather than an option of M(pmx.multicluster.pmx_guests), because it acts on guests found
    by a query, where M(pmx.multicluster.pmx_guests) converges guests it is given one by one; both share the
    same bounds and runner.
  - Each power action is what M(pmx.multicluster.pmx_vm) does for the matching state (V(start) is
    C(state=started), V(shutdown) C(state=stopped), V(stop) C(state=stopped) without a shutdown, V(reboot)
    C(state=restarted)), so a guest already in that state is left alone (C(changed=false)). V(snapshot) takes
    O(snapname) on each guest that has no snapshot of that name. V(backup) backs each guest up now to
    O(storage), as M(pmx.multicluster.pmx_backup) does (an action, so always a change). V(migrate) moves each
    guest to O(target_node) and / or O(target_cluster), as M(pmx.multicluster.pmx_migrate) does (a guest already
    there is left alone).
  - Rolling mode (O(serial)) works O(serial) guests at a time, each batch finished before the next, and stops
    once more than O(max_failures) guests failed; the guests not begun are returned with C(skipped=true).
  - One guest failing does not stop the others (unless O(max_failures) is reached); the task fails at the end,
    naming the failed guests. Check mode lists every selected guest with exactly the steps that would be taken.
  - Templates are never selected.
author:
  - pmx.multicluster contributors (@pmx-multicluster)
extends_documentation_fragment:
  - pmx.multicluster.pmx
  - pmx.multicluster.pmx.modules
  - pmx.multicluster.pmx.fleet
  - pmx.multicluster.pmx.actiongroup_pmx
attributes:
  check_mode:
    support: full
    description: Selects, plans each guest's steps and reports them; writes nothing.
  diff_mode:
    support: none
    description: The power state and snapshots are listed per guest in RV(guests) instead.
options:
  action:
    description: What to do to each selected guest.
    type: str
    required: true
    choices: [start, shutdown, stop, reboot, snapshot, backup, migrate]
  name:
    description:
      - Guest name globs (V(stg-web*)); a guest matching any of them is selected. Case-insensitive.
      - At least one of O(name), O(cluster) and O(tags) is required; to select every guest say V('*').
    type: list
    elements: str
  cluster:
    description: Only guests of these clusters (names or globs). Default, every configured cluster.
    type: list
    elements: str
  tags:
    description: Only guests carrying every one of these tags (case-insensitive).
    type: list
    elements: str
  status:
    description: Only guests in this power state.
    type: str
    choices: [running, stopped, paused]
  type:
    description: Only VMs (V(vm)) or only containers (V(lxc)).
    type: list
    elements: str
    choices: [vm, lxc]
  snapname:
    description:
      - The snapshot's name, for O(action=snapshot) (required there). A letter, then letters, digits, C(-) or C(_).
    type: str
  snapshot_description:
    description: The snapshot's description, for O(action=snapshot).
    type: str
  vmstate:
    description: With O(action=snapshot), include the RAM of running VMs.
    type: bool
    default: false
  storage:
    description: The backup storage, for O(action=backup) (required there).
    type: str
  backup_mode:
    description: The backup mode, for O(action=backup).
    type: str
    choices: [snapshot, suspend, stop]
    default: snapshot
  compress:
    description: The compression of the backup, for O(action=backup).
    type: str
    choices: ['zstd', 'gzip', 'lzo', '0']
    default: zstd
  target_node:
    description: For O(action=migrate), the node to move each guest to (in O(target_cluster) when given).
    type: str
  target_cluster:
    description: For O(action=migrate), the cluster to move each guest to.
    type: str
  force:
    description: With O(action=shutdown), stop hard a guest that has not shut down within O(timeout).
    type: bool
    default: false
  timeout:
    description: Seconds to wait for each guest's task, shutdown or lock.
    type: int
    default: 300
  serial:
    description:
      - Rolling mode. Work at most this many guests at a time, each batch finished before the next begins (in
        the order of RV(guests), by cluster then vmid). V(0) (the default) works them all within the bounds.
    type: int
    default: 0
  max_failures:
    description:
      - Begin no further guest once more than this many have failed. In rolling mode the default is V(0) (stop
        after the first batch with a failure); otherwise there is no limit unless this is set.
    type: int
notes:
  - A cluster that cannot be read makes the task fail before anything is changed (its guests cannot be
    selected); limit O(cluster) to the others to go on.
seealso:
  - module: pmx.multicluster.pmx_guests
  - module: pmx.multicluster.pmx_vm
'''

EXAMPLES = r'''
- name: Stop every staging guest (check mode first lists them)
  pmx.multicluster.pmx_guest_action:
    cluster: staging
    name: '*'
    action: shutdown
    force: true

- name: Snapshot every web VM, on every cluster
  pmx.multicluster.pmx_guest_action:
    tags: [web]
    type: [vm]
    action: snapshot
    snapname: before-upgrade

- name: Back up every staging guest tagged db now, then move them to another node, one at a time
  pmx.multicluster.pmx_guest_action:
    cluster: staging
    tags: [db]
    action: "{{ item.action }}"
    storage: "{{ item.storage | default(omit) }}"
    target_node: "{{ item.target_node | default(omit) }}"
    serial: "{{ item.serial | default(0) }}"
  loop:
    - {action: backup, storage: backup-nfs}
    - {action: migrate, target_node: stg-pve2, serial: 1}

- name: Rolling reboot of the production databases, one at a time, stop at the first failure
  pmx.multicluster.pmx_guest_action:
    name: 'prod-db*'
    status: running
    action: reboot
    serial: 1
    max_failures: 0
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
guests:
  description: One entry per selected guest, by cluster then vmid.
  returned: always
  type: list
  elements: dict
  contains:
    cluster:
      description: Its cluster.
      type: str
    name:
      description: Its name.
      type: str
    vmid:
      description: Its vmid.
      type: int
    type:
      description: V(vm) or V(lxc).
      type: str
    node:
      description: Its node.
      type: str
    status_before:
      description: Its power state when it was selected.
      type: str
    status:
      description: Its power state afterwards (power actions).
      type: str
    action:
      description: The action.
      type: str
    changed:
      description: Whether it was (in check mode, would be) changed.
      type: bool
    plan:
      description: The steps decided on for it (in check mode, what would be done), as M(pmx.multicluster.pmx_vm)
        returns them.
      type: list
      elements: dict
    tasks:
      description: The Proxmox tasks run.
      type: list
      elements: dict
    failed:
      description: Whether it failed.
      type: bool
    skipped:
      description: True when it was not begun because the failure limit was passed.
      type: bool
    error:
      description: V(null), or why it failed (C(msg), C(type), C(cluster), C(status), C(upid), C(exitstatus), C(log)).
      type: dict
  sample:
    - {cluster: staging, name: stg-web01, vmid: 100, type: vm, node: stg-pve1, status_before: running,
       status: stopped, action: shutdown, changed: true, plan: [{action: shutdown}], failed: false, skipped: false}
summary:
  description: Counts over RV(guests), the selection and the bounds used.
  returned: always
  type: dict
  sample: {total: 3, changed: 3, ok: 3, failed: 0, skipped: 0, per_cluster: 8, per_node: 4,
           selection: 'names stg-*', clusters: {staging: {total: 3, changed: 3, failed: 0, skipped: 0}}}
'''

from ansible_collections.pmx.multicluster.plugins.module_utils.ansible_module import PmxModule, fleet_argument_spec
from ansible_collections.pmx.multicluster.plugins.module_utils.fleet import (
    Bounds,
    GuestsFailed,
    failure_message,
    summarize,
)
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.kinds import DEFAULT_TIMEOUT
from ansible_collections.pmx.multicluster.plugins.module_utils.selection import (
    ACTIONS,
    STATUSES,
    TYPES,
    Options,
    Selector,
    check_options,
    run_action,
    select,
)


def argument_spec():
    spec = fleet_argument_spec()
    spec.update(
        action=dict(type='str', required=True, choices=list(ACTIONS)),
        name=dict(type='list', elements='str'),
        cluster=dict(type='list', elements='str'),
        tags=dict(type='list', elements='str'),
        status=dict(type='str', choices=list(STATUSES)),
        type=dict(type='list', elements='str', choices=list(TYPES)),
        snapname=dict(type='str'),
        storage=dict(type='str'),
        backup_mode=dict(type='str', default='snapshot', choices=['snapshot', 'suspend', 'stop']),
        compress=dict(type='str', default='zstd', choices=['zstd', 'gzip', 'lzo', '0']),
        target_node=dict(type='str'),
        target_cluster=dict(type='str'),
        snapshot_description=dict(type='str'),
        vmstate=dict(type='bool', default=False),
        force=dict(type='bool', default=False),
        timeout=dict(type='int', default=DEFAULT_TIMEOUT),
        serial=dict(type='int', default=0),
        max_failures=dict(type='int'),
    )
    return spec


def act(pmx):
    """Select the guests and apply the action to each; a failure naming the failed guests if any."""
    p = pmx.params
    options = Options(timeout=p['timeout'], force=p['force'], snapname=p['snapname'],
                      description=p['snapshot_description'], vmstate=p['vmstate'], storage=p['storage'],
                      mode=p['backup_mode'], compress=p['compress'], target_node=p['target_node'],
                      target_cluster=p['target_cluster'])
    check_options(p['action'], options)  # before any request
    bounds = Bounds(p['per_cluster'], p['per_node'])
    selector = Selector(names=p['name'] or (), clusters=p['cluster'] or (), tags=p['tags'] or (),
                        status=p['status'], types=p['type'] or ())
    picked = select(pmx.registry, selector)
    results = run_action(pmx.registry, p['action'], picked, options, check_mode=pmx.check_mode, bounds=bounds,
                         serial=p['serial'] or None, max_failures=p['max_failures'], scrub=pmx.scrub)
    warnings = ['%s: %s' % (r['name'], w) for r in results for w in r.pop('warnings', None) or []]
    if not picked:
        warnings.append('no guest matches the selection (%s)' % selector.describe())
    summary = dict(summarize(results, bounds), selection=selector.describe())
    out = {'changed': any(r['changed'] for r in results), 'guests': results, 'summary': summary,
           'warnings': warnings}
    if summary['failed']:
        raise GuestsFailed(failure_message('guests', results), out)
    return out


def main():
    PmxModule(argument_spec=argument_spec(), supports_check_mode=True,
              required_one_of=[('name', 'cluster', 'tags')],
              required_if=[('action', 'snapshot', ('snapname',)), ('action', 'backup', ('storage',)),
                           ('action', 'migrate', ('target_node', 'target_cluster'), True)]).run(act)


if __name__ == '__main__':
    main()
