#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: pmx_restore
short_description: Restore a guest from a backup, also into another Proxmox VE cluster
version_added: 0.2.0
description:
  - Creates a VM (C(qmrestore)) or a container (C(pct restore)) from a backup archive on a chosen cluster and
    node, with the name, vmid, disk storage and bridge the task gives, optionally started.
  - The archive is O(archive), or the newest backup of the guest O(name) found on the target cluster's backup
    storages (or on O(storage)). A backup storage defined in several clusters (an NFS export, a Proxmox Backup
    Server datastore) makes a backup taken on production restorable on disaster-recovery by one task that names
    only the guest and the target cluster.
  - The target cluster is O(cluster), else the one the restored guest's name routes to, as
    M(pmx.multicluster.pmx_vm) routes. Its vmid is O(vmid), else the archive's vmid when it is free on that
    cluster, else the cluster's next free one; its node is O(node), else the cluster's default node, else the
    online node with the most free memory.
  - Idempotent. When a guest of that name already exists on the target cluster, nothing is done (RV(exists)), and
    O(force=true) restores over it (it must be stopped) and RV(replaced) says what was replaced. A vmid taken
    by another guest is an error unless O(force=true).
author:
  - pmx.multicluster contributors (@pmx-multicluster)
extends_documentation_fragment:
  - pmx.multicluster.pmx
  - pmx.multicluster.pmx.modules
  - pmx.multicluster.pmx.actiongroup_pmx
attributes:
  check_mode:
    support: full
    description: Finds the archive, chooses the target and reports the plan; writes nothing.
  diff_mode:
    support: full
    description: Before is what the restore replaces (empty for a new guest), after the archive's name, CPU, memory,
      disks and networks with the overrides.
options:
  name:
    description:
      - Name of the guest whose backup to restore, and of the restored guest unless O(new_name) is given.
      - Without O(archive), its newest backup on the target cluster's backup storages is restored.
    type: str
  archive:
    description:
      - The backup's volume id, for example V(backup-nfs:backup/vzdump-qemu-100-2026_12_02-03_00_00.vma.zst).
      - A missing archive is an error that lists the newest backups on its storage.
    type: str
  storage:
    description: The backup storage to search for the newest backup of O(name) (default every backup storage).
    type: str
  cluster:
    description: The cluster to restore into, overriding routing by name.
    type: str
  node:
    description: The node to restore onto.
    type: str
  vmid:
    description: The vmid of the restored guest.
    type: int
  new_name:
    description: Name of the restored guest, when it differs from the backed-up guest's.
    type: str
  target_storage:
    description: Storage for the restored disks (default, where they were).
    type: str
  bridge:
    description: Bridge for every network device of the restored guest (the disaster-recovery site's bridge).
    type: str
  unique:
    description: Give the restored guest's network devices new MAC addresses.
    type: bool
    default: false
  start:
    description: Start the guest after the restore.
    type: bool
    default: false
  force:
    description:
      - Restore over the existing (stopped) guest of that name or vmid, replacing its configuration and disks.
    type: bool
    default: false
  timeout:
    description: Seconds to wait for the restore task and for a locked guest to be unlocked.
    type: int
    default: 300
notes:
  - "Routing never falls back when it could not look: when the target cluster depends on finding the guest and a
    cluster cannot be read, the task fails before changing anything, naming that cluster."
  - A restore where the restored guest's name routes it is first checked against the other clusters; give
    O(cluster) to restore a second copy deliberately (the disaster-recovery case).
seealso:
  - module: pmx.multicluster.pmx_backup
'''

EXAMPLES = r'''
- name: Disaster recovery - the newest backup of prod-web01, into the disaster-recovery cluster
  pmx.multicluster.pmx_restore:
    name: prod-web01
    cluster: disaster-recovery
    bridge: vmbr0
    start: true
  register: restored

- name: One archive, under another name, with its disks on local-lvm
  pmx.multicluster.pmx_restore:
    archive: backup-nfs:backup/vzdump-qemu-100-2026_12_02-03_00_00.vma.zst
    cluster: staging
    new_name: stg-web01-copy
    target_storage: local-lvm
    unique: true

- name: Roll prod-db01 back to its newest backup (it must be stopped)
  pmx.multicluster.pmx_restore:
    name: prod-db01
    storage: backup-nfs
    force: true
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
  description: The cluster restored into.
  returned: always
  type: str
  sample: disaster-recovery
route_reason:
  description: Why that cluster.
  returned: always
  type: str
  sample: explicit
archive:
  description: The archive restored (or that would be).
  returned: always
  type: str
archive_time:
  description: When the archive was made, UTC.
  returned: always
  type: str
archive_vmid:
  description: The vmid the backed-up guest had.
  returned: always
  type: int
archive_name:
  description: The name of the guest the archive holds.
  returned: always
  type: str
type:
  description: V(qemu) or V(lxc).
  returned: always
  type: str
name:
  description: Name of the restored guest.
  returned: always
  type: str
vmid:
  description: Its vmid (in check mode for a new guest, the one it would get).
  returned: always
  type: int
node:
  description: Its node.
  returned: always
  type: str
node_reason:
  description: Why that node.
  returned: always
  type: str
exists:
  description: True when a guest of that name exists there and nothing was done (no O(force)).
  returned: always
  type: bool
replaced:
  description: The guest the restore replaced (or would, or, with RV(exists), would with O(force)).
  returned: when there is one
  type: dict
  contains:
    vmid:
      description: Its vmid.
      type: int
    name:
      description: Its name.
      type: str
    node:
      description: Its node.
      type: str
    status:
      description: Its power state before.
      type: str
status:
  description: Power state of the restored guest.
  returned: always
  type: str
tasks:
  description: The tasks run (C(action) V(restore), C(upid), C(exitstatus)).
  returned: always
  type: list
  elements: dict
diff:
  description: Before (the replaced guest) and after (the restored guest's main settings).
  returned: always
  type: dict
'''

from ansible_collections.pmx.multicluster.plugins.module_utils.ansible_module import PmxModule
from ansible_collections.pmx.multicluster.plugins.module_utils.backups import Restore, public_plan
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.kinds import DEFAULT_TIMEOUT


def argument_spec():
    return dict(
        name=dict(type='str'),
        archive=dict(type='str'),
        storage=dict(type='str'),
        cluster=dict(type='str'),
        node=dict(type='str'),
        vmid=dict(type='int'),
        new_name=dict(type='str'),
        target_storage=dict(type='str'),
        bridge=dict(type='str'),
        unique=dict(type='bool', default=False),
        start=dict(type='bool', default=False),
        force=dict(type='bool', default=False),
        timeout=dict(type='int', default=DEFAULT_TIMEOUT),
    )


def restore(pmx):
    p = pmx.params
    restorer = Restore(pmx.registry, check_mode=pmx.check_mode)
    plan = restorer.plan(cluster=p['cluster'], name=p['name'], archive=p['archive'], storage=p['storage'],
                         new_name=p['new_name'], vmid=p['vmid'], node=p['node'], target_storage=p['target_storage'],
                         bridge=p['bridge'], force=p['force'])
    result = public_plan(plan)
    after = result.pop('after')
    for key in ('config', 'force', 'target_storage', 'bridge'):
        result.pop(key)
    replaced = plan['replaced']
    before = {}
    if replaced is not None:
        before = {'vmid': replaced['vmid'], 'name': replaced['name'], 'node': replaced['node'],
                  'status': replaced['status']}
    result.update(changed=False, tasks=[], status=replaced['status'] if replaced else None,
                  diff={'before': before, 'after': dict(after, vmid=plan['vmid'], node=plan['node'],
                                                        archive=plan['archive'])})
    if plan['exists']:
        result['diff'] = {'before': before, 'after': before}
        result['warnings'] = ["cluster '%s' already has %s '%s' (vmid %s, node %s, %s); nothing was restored. Give "
                              "force: true to replace it with %s." % (plan['cluster'], 'VM' if plan['type'] == 'qemu'
                                                                      else 'container', replaced['name'],
                                                                      replaced['vmid'], replaced['node'],
                                                                      replaced['status'], plan['archive'])]
        return result
    result['changed'] = True
    if pmx.check_mode:
        result['status'] = 'running' if p['start'] else 'stopped'
        return result
    result['tasks'] = [restorer.apply(plan, start=p['start'], unique=p['unique'], timeout=p['timeout'])]
    result['vmid'] = plan['vmid']
    result['status'] = 'running' if p['start'] else 'stopped'
    return result


def main():
    pmx = PmxModule(argument_spec=argument_spec(), supports_check_mode=True,
                    required_one_of=[('name', 'archive')])
    pmx.run(restore)


if __name__ == '__main__':
    main()
