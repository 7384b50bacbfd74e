#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: pmx_migrate
short_description: Move a VM or container to another node of its cluster, or to another Proxmox VE cluster
version_added: 0.2.0
description:
  - Moves one guest (a QEMU VM or an LXC container) to O(target_node) within its cluster, with Proxmox VE's
    migration, or to another configured cluster, O(target_cluster), with Proxmox VE's remote migration.
  - The guest is found the way the other modules find it. Its cluster is O(cluster) when given, else the one
    its O(name) routes to by pattern, else the one cluster where a guest of that name or O(vmid) exists.
    RV(route_reason) says which rule chose it.
  - Before any write, the module reads what Proxmox VE's own check says (local disks, local resources, nodes
    not allowed, HA), checks the target node, storages, bridges and vmid, and fails with a message that says
    what stands in the way.
  - "Idempotent: a guest already on O(target_node), or a guest of that name already on O(target_cluster) (the
    source gone, or kept as asked), reports C(changed: false)."
  - A move between clusters gives Proxmox VE a target endpoint made from the target cluster's configuration
    (API URL, API token and the fingerprint of its certificate). The fingerprint is the cluster's C(FINGERPRINT)
    setting, or is read from the API over a TLS connection verified with the cluster's CA bundle. The token
    secret in the endpoint is never shown, in any output, error or C(-vvv) log.
author:
  - pmx.multicluster contributors (@pmx-multicluster)
extends_documentation_fragment:
  - pmx.multicluster.pmx
  - pmx.multicluster.pmx.modules
  - pmx.multicluster.pmx.actiongroup_pmx
attributes:
  check_mode:
    support: full
    description: Reads both sides, checks the preconditions and returns the plan (RV(plan), RV(target_vmid),
      RV(mappings), RV(preconditions)); writes nothing.
  diff_mode:
    support: full
    description: Returns where the guest was and where it is (or would be) as before and after.
options:
  name:
    description:
      - Name of the guest. At least one of O(name) and O(vmid) is required.
    type: str
  vmid:
    description:
      - ID of the guest on its current cluster.
    type: int
  type:
    description:
      - V(qemu) or V(lxc). By default the guest's type is found with it; when given, a guest of the other type
        is an error.
    type: str
    choices: [qemu, lxc]
  cluster:
    description:
      - The cluster the guest is on, overriding routing by name pattern.
    type: str
  target_node:
    description:
      - The node to move the guest to. Without O(target_cluster), a node of the guest's cluster.
      - With O(target_cluster), the node of that cluster it ends on. Proxmox VE's remote migration places the
        guest on the node its endpoint points at; when that is another node, the module then moves it within the
        target cluster.
      - At least one of O(target_node) and O(target_cluster) is required.
    type: str
  target_cluster:
    description:
      - Another configured cluster to move the guest to (Proxmox VE's remote migration). The guest's own cluster
        means a move within it.
    type: str
  online:
    description:
      - Move a running VM while it runs (live migration). By default a running VM moves online and a stopped one
        offline; V(false) with a running VM is refused (stop it first).
      - Containers cannot move online in Proxmox VE; use O(restart).
    type: bool
  restart:
    description:
      - Containers. Move a running container in restart mode, as Proxmox VE does it, shutting it down, moving it,
        and starting it again on the target. This is the default for a running container; V(false) with a running
        container is refused.
    type: bool
  restart_timeout:
    description:
      - Containers in restart mode. Seconds Proxmox VE waits for the container to shut down before it stops it.
    type: int
    default: 180
  with_local_disks:
    description:
      - Allow a move within the cluster of a VM whose disks are on storage local to its node. The disks are then
        copied to the target node (onto O(target_storage) if given). Without it such a VM is refused before
        any change, with the disks named.
    type: bool
    default: false
  target_storage:
    description:
      - One storage for all of the guest's disks on the target (node or cluster).
      - Without it and without O(storage_map), disks keep their storage names (within a cluster, shared storage
        stays where it is).
    type: str
  storage_map:
    description:
      - "Source storage to target storage, for example C({local-lvm: ceph-vm, nfs-iso: local})."
      - Storages not listed keep their name, or go to O(target_storage) when both are given.
      - A target storage that the target cluster lacks is refused before any change.
    type: dict
  bridge_map:
    description:
      - "Moves between clusters. Source bridge to target bridge, for example C({vmbr0: vmbr1}). Bridges not
        listed keep their name. A target bridge that the target cluster lacks is refused before any change."
    type: dict
  bwlimit:
    description:
      - Bandwidth limit of the move, in KiB/s. By default, Proxmox VE's datacenter or storage limit applies.
    type: int
  target_vmid:
    description:
      - Moves between clusters. The vmid on the target cluster. By default the source's vmid when it is free
        there, else the target cluster's next free id (C(preconditions.target_vmid_reason) in the result says which).
      - A vmid taken on the target is refused before any change.
    type: int
  delete_source:
    description:
      - Moves between clusters. Delete the source after a successful move.
      - By default the source is kept, as Proxmox VE keeps it, stopped and locked V(migrate) so that it cannot be
        started beside its copy. The other modules and the inventory then treat the copy as the guest.
      - A rerun with V(true) after a move that kept the source deletes the kept source.
    type: bool
    default: false
  timeout:
    description:
      - Seconds to wait for each Proxmox task of the move (and for the HA manager to move an HA-managed guest).
      - A guest locked by another task is waited for as long.
    type: int
    default: 900
notes:
  - A guest managed by HA is moved within its cluster the way Proxmox VE requires, with an HA migration request.
    The HA manager then moves it, and the module waits until the guest is on the target node. RV(ha) is then
    V(true). Proxmox VE moves no HA-managed guest to another cluster, so such a move is refused with the
    commands to remove it from HA first.
  - "A move that fails midway leaves a state that a rerun either repairs or explains. The source is never lost,
    and there is never a second running copy. If the task failed, the error says what is on each side; a rerun
    starts from there. A kept source plus a finished copy is a finished move (C(changed: false)). A copy still
    locked V(migrate) on the target is refused, with the commands that clean it up."
  - "Names are unique per cluster. A guest of the same name that is already on the target cluster and is not
    this move's copy is a conflict: nothing is changed."
seealso:
  - module: pmx.multicluster.pmx_vm
  - module: pmx.multicluster.pmx_cluster_info
  - name: qm(1), migrate and remote-migrate
    description: Proxmox VE's migration of VMs.
    link: https://pve.proxmox.com/pve-docs/qm.1.html
  - name: pct(1), migrate and remote-migrate
    description: Proxmox VE's migration of containers.
    link: https://pve.proxmox.com/pve-docs/pct.1.html
'''

EXAMPLES = r'''
- name: Move a running VM to another node of its cluster (live)
  pmx.multicluster.pmx_migrate:
    name: prod-web01
    target_node: prod-pve2

- name: Move a VM with disks on local storage, onto the target node's local-lvm
  pmx.multicluster.pmx_migrate:
    name: prod-db01
    target_node: prod-pve1
    with_local_disks: true
    target_storage: local-lvm
    bwlimit: 102400

- name: Move a running container (restart mode, 2 minutes to shut down)
  pmx.multicluster.pmx_migrate:
    name: prod-cache01
    type: lxc
    target_node: prod-pve1
    restart_timeout: 120

- name: Move a VM to the disaster-recovery cluster, mapping storage and bridge, keeping the source
  pmx.multicluster.pmx_migrate:
    name: prod-web02
    target_cluster: disaster-recovery
    target_node: dr-pve2
    storage_map:
      local-lvm: ceph-vm
    bridge_map:
      vmbr0: vmbr1
  register: moved

- name: Show where it went
  ansible.builtin.debug:
    msg: >-
      {{ moved.was.cluster }}/{{ moved.was.node }} vmid {{ moved.was.vmid }} ->
      {{ moved.now.cluster }}/{{ moved.now.node }} vmid {{ moved.target_vmid }}

- name: Move a stopped VM to staging with a chosen vmid, deleting the source once it is there
  pmx.multicluster.pmx_migrate:
    cluster: production
    vmid: 103
    target_cluster: staging
    target_vmid: 2103
    target_storage: local-lvm
    delete_source: true

- name: See the plan of a move without making it
  pmx.multicluster.pmx_migrate:
    name: prod-web02
    target_cluster: staging
  check_mode: true
  register: plan
'''

RETURN = r'''
changed:
  description: Whether the guest was moved (or, in check mode, would be), or a kept source was deleted.
  returned: always
  type: bool
cluster:
  description: The cluster the guest is on now (in check mode, would be on).
  returned: always
  type: str
  sample: disaster-recovery
route_reason:
  description: Why the guest was looked for on its source cluster, for example V(explicit), V(pattern 'prod-*'),
    V(located).
  returned: always
  type: str
name:
  description: Name of the guest.
  returned: always
  type: str
type:
  description: V(qemu) or V(lxc).
  returned: always
  type: str
vmid:
  description: The guest's vmid now (on the target cluster after a move between clusters).
  returned: always
  type: int
node:
  description: The node the guest is on now (in check mode, would be on; V(null) when Proxmox VE chooses it).
  returned: always
  type: str
was:
  description: Where the guest was, C(cluster), C(node) and C(vmid).
  returned: always
  type: dict
  sample: {cluster: production, node: prod-pve2, vmid: 101}
now:
  description: Where the guest is (in check mode, would be), C(cluster), C(node) and C(vmid).
  returned: always
  type: dict
  sample: {cluster: disaster-recovery, node: dr-pve2, vmid: 101}
target_vmid:
  description: For a move between clusters, the guest's vmid on the target cluster.
  returned: for a move between clusters
  type: int
  sample: 101
source_kept:
  description: For a move between clusters, whether the source is kept (stopped, locked V(migrate)).
  returned: for a move between clusters
  type: bool
mappings:
  description: For a move between clusters, the storage and bridge pair lists given to Proxmox VE
    (C(src:dst,...), or V(1) for the same names).
  returned: for a move between clusters, when planned
  type: dict
  sample: {storage: 'local-lvm:ceph-vm', bridge: 'vmbr0:vmbr1'}
preconditions:
  description:
    - What was checked before the move. For a move within a cluster, C(running), C(local_disks) and
      C(allowed_nodes) (Proxmox VE's own check). For a move between clusters, C(running), C(source_storages),
      C(source_bridges), C(target_vmid_reason) and C(fingerprint_from) (V(setting) or V(verified TLS connection)).
  returned: when a move was planned
  type: dict
ha:
  description: True when the guest is managed by HA and was (or would be) moved by an HA migration request.
  returned: always
  type: bool
moved_from:
  description: Clusters that hold only the kept source of an earlier move of this guest, when routing followed it.
  returned: always
  type: list
  elements: str
plan:
  description:
    - The steps, each with C(action) (V(migrate), V(remote_migrate) or V(delete_source)), the cluster and, where
      it has some, C(params) (the target endpoint with its token secret masked).
    - In check mode this is what would be done; RV(tasks) is what was done.
  returned: always
  type: list
  elements: dict
tasks:
  description: The Proxmox tasks run, each with C(action), C(upid) and C(exitstatus).
  returned: always
  type: list
  elements: dict
diff:
  description: Where the guest was (C(before)) and is (C(after)), as C(cluster), C(node) and C(vmid).
  returned: always
  type: dict
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
'''

from ansible_collections.pmx.multicluster.plugins.module_utils.ansible_module import PmxModule
from ansible_collections.pmx.multicluster.plugins.module_utils.guests.migration import (
    RESTART_TIMEOUT,
    Migrator,
    MoveSpec,
)
from ansible_collections.pmx.multicluster.plugins.module_utils.redact import secret_forms

MOVE_TIMEOUT = 900


def argument_spec():
    return dict(
        name=dict(type='str'),
        vmid=dict(type='int'),
        type=dict(type='str', choices=['qemu', 'lxc']),
        cluster=dict(type='str'),
        target_node=dict(type='str'),
        target_cluster=dict(type='str'),
        online=dict(type='bool'),
        restart=dict(type='bool'),
        restart_timeout=dict(type='int', default=RESTART_TIMEOUT),
        with_local_disks=dict(type='bool', default=False),
        target_storage=dict(type='str'),
        storage_map=dict(type='dict'),
        bridge_map=dict(type='dict'),
        bwlimit=dict(type='int'),
        target_vmid=dict(type='int'),
        delete_source=dict(type='bool', default=False),
        timeout=dict(type='int', default=MOVE_TIMEOUT),
    )


class ModuleScrub:
    """The module's Scrubber, which also tells Ansible to mask what is added (the target endpoint)."""

    def __init__(self, pmx):
        self.pmx = pmx

    def add(self, secrets):
        for secret in secrets:
            self.pmx.module.no_log_values.update(secret_forms(secret))
        self.pmx.scrub.add(secrets)


def move(pmx):
    params = pmx.params
    spec = MoveSpec(**dict((key, params[key]) for key in argument_spec()))
    spec.storage_map = dict(params['storage_map'] or {})
    spec.bridge_map = dict(params['bridge_map'] or {})
    result = Migrator(pmx.registry, check_mode=pmx.check_mode, scrub=ModuleScrub(pmx)).ensure(spec)
    result['diff'] = {'before': dict(result['was']), 'after': dict(result['now'])}
    return pmx.scrub.deep(result)


def main():
    pmx = PmxModule(argument_spec=argument_spec(), supports_check_mode=True,
                    required_one_of=[('name', 'vmid'), ('target_node', 'target_cluster')])
    pmx.run(move)


if __name__ == '__main__':
    main()
