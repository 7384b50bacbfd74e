#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: pmx_backup_info
short_description: List the backups of a guest on several Proxmox VE clusters, newest first
version_added: 0.2.0
description:
  - Returns the backups of the guest O(name) (or O(vmid)) on O(storage), or on every backup storage of the
    cluster, newest first, with their time and size. Without O(name) and O(vmid), every backup there.
  - The cluster is O(cluster), else the one the name routes to, as M(pmx.multicluster.pmx_vm) routes.
  - A guest's backups are the ones that hold its name (their notes, C({{guestname}}) by default, or else the
    configuration in the archive), not the ones of its vmid on this cluster; so a disaster-recovery cluster
    that reads a storage shared with production lists the backups of a production guest by its name, and a
    backup of another cluster's guest with the same vmid is not listed.
author:
  - pmx.multicluster contributors (@pmx-multicluster)
extends_documentation_fragment:
  - pmx.multicluster.pmx
  - pmx.multicluster.pmx.modules
  - pmx.multicluster.pmx.actiongroup_pmx
attributes:
  check_mode:
    support: full
    description: Changes nothing, in check mode or not.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to show.
options:
  name:
    description: Name of the guest whose backups to list.
    type: str
  vmid:
    description: Only backups of this vmid.
    type: int
  cluster:
    description: The cluster whose backup storages to read, overriding routing by name.
    type: str
  storage:
    description: The backup storage to read (default, every storage of the cluster with content C(backup)).
    type: str
seealso:
  - module: pmx.multicluster.pmx_backup
  - module: pmx.multicluster.pmx_restore
'''

EXAMPLES = r'''
- name: The backups of prod-web01 as disaster-recovery sees them, newest first
  pmx.multicluster.pmx_backup_info:
    cluster: disaster-recovery
    name: prod-web01
  register: listed

- name: Its newest backup
  ansible.builtin.debug:
    msg: "{{ listed.backups[0].volid }} of {{ listed.backups[0].time }} ({{ listed.backups[0].size }} bytes)"
  when: listed.backups | length > 0
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
  description: The cluster read.
  returned: always
  type: str
  sample: disaster-recovery
route_reason:
  description: Why that cluster.
  returned: always
  type: str
backups:
  description: The backups, newest first.
  returned: always
  type: list
  elements: dict
  contains:
    volid:
      description: Volume id of the archive.
      type: str
      sample: backup-nfs:backup/vzdump-qemu-100-2026_12_02-03_00_00.vma.zst
    storage:
      description: Its storage.
      type: str
    vmid:
      description: The vmid of the guest backed up.
      type: int
    type:
      description: V(qemu) or V(lxc).
      type: str
    ctime:
      description: When it was made (seconds since the epoch).
      type: int
    time:
      description: The same, UTC (ISO 8601).
      type: str
      sample: '2026-12-02T03:00:00Z'
    size:
      description: Size in bytes.
      type: int
    format:
      description: Archive format, for example V(vma.zst) or V(tar.zst).
      type: str
    notes:
      description: Its notes.
      type: str
    protected:
      description: Whether it is protected from pruning and deletion.
      type: bool
    node:
      description: The node it was read through.
      type: str
'''

from ansible_collections.pmx.multicluster.plugins.module_utils.ansible_module import PmxModule
from ansible_collections.pmx.multicluster.plugins.module_utils.backups import BackupError, backups_of


def argument_spec():
    return dict(name=dict(type='str'), vmid=dict(type='int'), cluster=dict(type='str'), storage=dict(type='str'))


def list_guest_backups(pmx):
    p = pmx.params
    if not (p['name'] or p['vmid'] is not None or p['cluster']):
        raise BackupError('give name or vmid of the guest, or cluster to list every backup there')
    route = pmx.registry.select(cluster=p['cluster'], name=p['name'], vmid=p['vmid'], lookup=True, strict=False)
    client = pmx.registry.client(route.cluster)
    rows = backups_of(client, route.cluster, p['name'], p['vmid'], p['storage'])
    warnings = ["cluster(s) %s could not be read to route the guest" % ', '.join(route.unreadable)] \
        if route.unreadable else []
    return {'changed': False, 'cluster': route.cluster, 'route_reason': route.reason, 'backups': rows,
            'warnings': warnings}


def main():
    pmx = PmxModule(argument_spec=argument_spec(), supports_check_mode=True)
    pmx.run(list_guest_backups)


if __name__ == '__main__':
    main()
