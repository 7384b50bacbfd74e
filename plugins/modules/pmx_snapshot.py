#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: pmx_snapshot
short_description: Take, delete, roll back and prune snapshots of a VM or container on several Proxmox VE clusters
version_added: 0.1.0
description:
  - Manages the snapshots of one QEMU VM or LXC container, on whichever configured cluster it is - O(cluster)
    when given, else the cluster whose name patterns match O(name), else the one cluster where the guest
    exists. RV(cluster) and RV(route_reason) say which and why. When that depends on a cluster that cannot be
    read, the task fails before changing anything, naming that cluster.
  - O(state=present) takes snapshot O(snapname) unless the guest has one of that name (then nothing changes).
    O(state=absent) deletes it (none of that name is no change). O(state=rollback) rolls the guest back to it;
    a rollback always reports a change and is never run in check mode.
  - Retention, with O(keep) and O(prefix) or O(pattern), keeps the newest O(keep) snapshots whose names the
    rule covers and deletes the others; snapshots it does not cover are never touched. With O(state=present)
    the new snapshot counts among the newest.
  - Retention does not delete the snapshot the guest's current state is based on (its parent, for example
    after a rollback to an older snapshot) unless O(force=true); the task fails saying so, and nothing is
    changed. A snapshot named in O(snapname) with O(state=absent) is deleted even then (the task named it).
  - Every task is waited for up to O(timeout) seconds. A guest locked by another task (a backup, a migration)
    is waited for up to O(timeout) seconds, then the task fails naming the lock.
author:
  - pmx.multicluster contributors (@pmx-multicluster)
extends_documentation_fragment:
  - pmx.multicluster.pmx
  - pmx.multicluster.pmx.modules
  - pmx.multicluster.pmx.actiongroup_pmx
attributes:
  check_mode:
    support: full
    description: Reads the guest's snapshots and reports the plan; nothing is written.
  diff_mode:
    support: full
    description: Returns the snapshot names before and after.
options:
  name:
    description: Name of the guest. At least one of O(name) and O(vmid) is required.
    type: str
  vmid:
    description: ID of the guest. vmids repeat across clusters, so give O(cluster) or O(name) with it.
    type: int
  cluster:
    description: The cluster, overriding routing by name pattern.
    type: str
  snapname:
    description:
      - Name of the snapshot, a letter then letters, digits, C(-) and C(_), 2 to 40 characters.
      - Required with O(state=present) and O(state=rollback), and with O(state=absent) unless O(keep) is given.
    type: str
  state:
    description: What to do with O(snapname).
    type: str
    choices: [present, absent, rollback]
    default: present
  description:
    description: Description of a new snapshot (an existing one is left as it is).
    type: str
  vmstate:
    description: For a running VM, include its RAM in a new snapshot (containers have no such state).
    type: bool
    default: false
  start:
    description: Start the guest after a rollback.
    type: bool
    default: false
  keep:
    description:
      - Retention, with O(prefix) or O(pattern) - how many of the newest snapshots the rule covers stay.
      - The others it covers are deleted, oldest first.
    type: int
  prefix:
    description: Retention covers the snapshots whose names start with this.
    type: str
  pattern:
    description: Retention covers the snapshots whose names match this glob (C(pre-upgrade-*)).
    type: str
  force:
    description: Allow retention to delete the snapshot the current state is based on.
    type: bool
    default: false
  timeout:
    description: Seconds to wait for each Proxmox task, and for a lock another task holds.
    type: int
    default: 300
seealso:
  - module: pmx.multicluster.pmx_snapshot_info
  - module: pmx.multicluster.pmx_vm
'''

EXAMPLES = r'''
- name: A snapshot before an upgrade, keeping the three newest pre-upgrade snapshots
  pmx.multicluster.pmx_snapshot:
    name: prod-web01
    snapname: "pre-upgrade-{{ now(utc=true, fmt='%Y%m%d%H%M') }}"
    description: before the upgrade to 2.4
    keep: 3
    prefix: pre-upgrade-

- name: With the RAM of the running VM
  pmx.multicluster.pmx_snapshot:
    name: prod-db01
    snapname: before-migration
    vmstate: true

- name: Roll back and start it again
  pmx.multicluster.pmx_snapshot:
    name: prod-web01
    snapname: before-migration
    state: rollback
    start: true

- name: Delete one snapshot
  pmx.multicluster.pmx_snapshot:
    cluster: staging
    vmid: 104
    snapname: before-migration
    state: absent

- name: Only prune - keep the 7 newest nightly snapshots
  pmx.multicluster.pmx_snapshot:
    name: stg-cache01
    state: absent
    keep: 7
    pattern: "nightly-*"
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
  description: The cluster of the guest.
  returned: always
  type: str
  sample: production
route_reason:
  description: Why that cluster (V(explicit), V(pattern 'prod-*'), V(located), V(default)).
  returned: always
  type: str
vmid:
  description: ID of the guest.
  returned: always
  type: int
name:
  description: Name of the guest.
  returned: always
  type: str
type:
  description: V(qemu) or V(lxc).
  returned: always
  type: str
node:
  description: Node of the guest.
  returned: always
  type: str
snapname:
  description: The snapshot the task named.
  returned: always
  type: str
plan:
  description: The steps decided on, in order (in check mode, what would be done).
  returned: always
  type: list
  elements: dict
  sample: [{action: create, snapname: pre-upgrade-2}, {action: delete, snapname: pre-upgrade-0}]
deleted:
  description: Snapshots deleted (in check mode, that would be).
  returned: always
  type: list
  elements: str
kept:
  description: Snapshots the retention rule covers and keeps, newest first.
  returned: always
  type: list
  elements: str
snapshots:
  description:
    - The guest's snapshots afterwards (in check mode, as they are), oldest first, each with C(name),
      C(description), C(snaptime), C(parent), C(vmstate), C(current) (the current state's parent) and C(state).
  returned: always
  type: list
  elements: dict
status:
  description: Power state of the guest after a rollback.
  returned: after a rollback
  type: str
diff:
  description: The snapshot names before and after.
  returned: always
  type: dict
tasks:
  description: The Proxmox tasks run, each with C(action), C(snapname), C(upid) and C(exitstatus).
  returned: always
  type: list
  elements: dict
'''

from ansible_collections.pmx.multicluster.plugins.module_utils.ansible_module import PmxModule
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.kinds import DEFAULT_TIMEOUT
from ansible_collections.pmx.multicluster.plugins.module_utils.snapshots import SNAPSHOT_STATES, SnapshotRequest, ensure


def argument_spec():
    return dict(
        name=dict(type='str'),
        vmid=dict(type='int'),
        cluster=dict(type='str'),
        snapname=dict(type='str'),
        state=dict(type='str', default='present', choices=list(SNAPSHOT_STATES)),
        description=dict(type='str'),
        vmstate=dict(type='bool', default=False),
        start=dict(type='bool', default=False),
        keep=dict(type='int', no_log=False),
        prefix=dict(type='str'),
        pattern=dict(type='str'),
        force=dict(type='bool', default=False),
        timeout=dict(type='int', default=DEFAULT_TIMEOUT),
    )


def run(pmx):
    p = pmx.params
    request = SnapshotRequest(state=p['state'], snapname=p['snapname'], description=p['description'],
                              vmstate=p['vmstate'], start=p['start'], keep=p['keep'], prefix=p['prefix'],
                              pattern=p['pattern'], force=p['force'], timeout=p['timeout'])
    return ensure(pmx.registry, request, p['name'], p['vmid'], p['cluster'], pmx.check_mode)


def main():
    pmx = PmxModule(argument_spec=argument_spec(), supports_check_mode=True, required_one_of=[('name', 'vmid')])
    pmx.run(run)


if __name__ == '__main__':
    main()
