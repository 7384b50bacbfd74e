#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: pmx_snapshot_info
short_description: The snapshots of a VM or container on several Proxmox VE clusters, as a list and a tree
version_added: 0.1.0
description:
  - Returns the snapshots of one guest, routed as M(pmx.multicluster.pmx_snapshot) routes it, oldest first and
    as the tree of their parents, with the snapshot the current state is based on.
  - A read answers from the cluster where it found the guest even if another cluster could not be read;
    RV(unreadable) names those. A guest it did not find is an error that names them.
author:
  - pmx.multicluster contributors (@pmx-multicluster)
extends_documentation_fragment:
  - pmx.multicluster.pmx
  - pmx.multicluster.pmx.modules
  - pmx.multicluster.pmx.actiongroup_pmx
attributes:
  check_mode:
    support: full
    description: Reads only; the same in check mode.
  diff_mode:
    support: none
    description: Nothing changes, so there is no diff.
options:
  name:
    description: Name of the guest. At least one of O(name) and O(vmid) is required.
    type: str
  vmid:
    description: ID of the guest.
    type: int
  cluster:
    description: The cluster, overriding routing by name pattern.
    type: str
seealso:
  - module: pmx.multicluster.pmx_snapshot
'''

EXAMPLES = r'''
- name: The snapshots of a VM
  pmx.multicluster.pmx_snapshot_info:
    name: prod-web01
  register: snaps

- name: Show the newest one
  ansible.builtin.debug:
    msg: "{{ (snaps.snapshots | last).name if snaps.snapshots else 'none' }}"
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
route_reason:
  description: Why that cluster.
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
snapshots:
  description: The snapshots, oldest first.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Snapshot name.
      type: str
    description:
      description: Its description.
      type: str
    snaptime:
      description: When it was taken (Unix time).
      type: int
    parent:
      description: The snapshot it is based on.
      type: str
    vmstate:
      description: Whether it holds the RAM of the VM.
      type: bool
    current:
      description: Whether the current state is based on it.
      type: bool
    state:
      description: PVE's snapstate while a snapshot is being made or deleted (V(prepare), V(delete)), else null.
      type: str
tree:
  description: The snapshots as a tree, each with C(name), C(snaptime), C(current) and C(children).
  returned: always
  type: list
  elements: dict
current_parent:
  description: The snapshot the current state is based on, or null.
  returned: always
  type: str
unreadable:
  description: Clusters the lookup could not read, each with C(cluster) and C(error).
  returned: always
  type: list
  elements: dict
'''

from ansible_collections.pmx.multicluster.plugins.module_utils.ansible_module import PmxModule
from ansible_collections.pmx.multicluster.plugins.module_utils.snapshots import snapshot_info


def run(pmx):
    p = pmx.params
    return snapshot_info(pmx.registry, p['name'], p['vmid'], p['cluster'])


def main():
    pmx = PmxModule(argument_spec=dict(name=dict(type='str'), vmid=dict(type='int'), cluster=dict(type='str')),
                    supports_check_mode=True, required_one_of=[('name', 'vmid')])
    pmx.run(run)


if __name__ == '__main__':
    main()
