#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: pmx_vm
short_description: Create, clone, update, power and delete QEMU VMs on several Proxmox VE clusters
version_added: 0.1.0
description:
  - Manages the whole life of a QEMU virtual machine on whichever of the configured Proxmox VE
    clusters it belongs to.
  - The cluster is O(cluster) when given, else the one whose name patterns match O(name), else the
    one cluster where a VM with this O(name) or O(vmid) already exists, else the default cluster.
    RV(cluster) and RV(route_reason) say which and why.
  - Idempotent. The requested settings are compared with the VM's current configuration in
    Proxmox's own formats (memory as text or number, a network card's generated MAC address, the
    order and separators of tags, V(1)/V(true) booleans, property strings in any order), and only
    what differs is changed. Only the settings given in the task are compared.
  - Every Proxmox task is waited for up to O(timeout) seconds; a task that fails makes the module
    fail with its exit status and the last lines of its log. A VM locked by another task (backup,
    migration, snapshot...) is waited for up to O(timeout) seconds, then the module fails naming the lock.
author:
  - pmx.multicluster contributors (@pmx-multicluster)
extends_documentation_fragment:
  - pmx.multicluster.pmx
  - pmx.multicluster.pmx.modules
  - pmx.multicluster.pmx.guest
  - pmx.multicluster.pmx.guests
  - pmx.multicluster.pmx.actiongroup_pmx
attributes:
  check_mode:
    support: full
    description: Reads the clusters, computes and reports what would change, and writes nothing.
  diff_mode:
    support: full
    description: Returns before and after of the configuration keys concerned (and of the power state).
options:
  name:
    description:
      - Name of the VM. Names are unique per cluster; two VMs of the target cluster with this name
        are an error that names both vmids.
      - At least one of O(name) and O(vmid) is required; when both are given they must agree.
      - It must be a DNS name (letters, digits and C(-), parts separated by C(.)); anything else is refused
        before any request.
    type: str
  cores:
    description: Number of CPU cores per socket.
    type: int
  sockets:
    description: Number of CPU sockets.
    type: int
  memory:
    description: Memory in MiB.
    type: int
  cpu:
    description: CPU type, for example V(host) or V(x86-64-v2-AES).
    type: str
  ostype:
    description: Guest OS type, for example V(l26) or V(win11).
    type: str
  scsihw:
    description: SCSI controller model, for example V(virtio-scsi-single).
    type: str
  disks:
    description:
      - "Disks by config key, for example C({scsi0: 'local-lvm:32'}) for a new 32 GiB disk on local-lvm,
        with drive options after a comma (C(local-lvm:32,iothread=1,discard=on))."
      - A missing disk is added. An existing disk's drive options are compared and updated on its
        current volume.
      - An existing disk asked for larger grows (Proxmox VE's resize, online for a running VM); asked for
        smaller, the task fails naming the current and the requested size (a disk is never shrunk). On another
        storage it is moved with O(move_disks) (Proxmox VE's move_disk), else that is a warning.
      - V(detached) takes a disk out of the VM and keeps its volume (as C(unusedN)); V(absent) also destroys the
        volume (qm's unlink). A disk that is not there is no change.
    type: dict
  nets:
    description:
      - "Network devices by config key, for example C({net0: 'virtio,bridge=vmbr0,tag=20'})."
      - The MAC address Proxmox generated is kept and not compared unless one is given
        (C(virtio=BC:24:11:00:00:01,bridge=vmbr0)).
    type: dict
  ciuser:
    description: Cloud-init user.
    type: str
  cipassword:
    description:
      - Cloud-init password.
      - Proxmox never returns it, so it cannot be compared; it is set when the VM is created or cloned only.
    type: str
  sshkeys:
    description: Cloud-init public SSH keys, one per line.
    type: str
  ipconfig:
    description:
      - "Cloud-init IP configuration by key, for example C({ipconfig0: 'ip=10.0.0.5/24,gw=10.0.0.1'})."
    type: dict
  tags:
    description:
      - Tags. Compared without regard to order or case, as Proxmox stores them.
    type: list
    elements: str
  description:
    description: Description (notes) of the VM.
    type: str
  onboot:
    description: Start the VM when its node boots.
    type: bool
  agent:
    description:
      - Enable the QEMU guest agent.
      - "For agent options use O(config), for example C(config: {agent: 'enabled=1,fstrim_cloned_disks=1'})."
    type: bool
  boot:
    description: Boot order, for example V(order=scsi0;net0).
    type: str
notes:
  - Names, not vmids, are what routing and idempotence rely on; the same vmid may exist on several clusters.
  - After a task that failed half way, a new run carries on from where it stopped. For example, if the clone
    succeeded but the configuration update failed, the next run finds the clone by its name and updates it.
seealso:
  - module: pmx.multicluster.pmx_cluster_info
'''

EXAMPLES = r'''
- name: Routed by name (prod-* goes to the production cluster, stg-* to staging)
  pmx.multicluster.pmx_vm:
    name: "{{ item }}"
    clone: tpl-debian12
    cores: 2
    memory: 4096
    nets:
      net0: virtio,bridge=vmbr0
    tags: [web]
    state: started
  loop: [prod-web03, stg-web03]

- name: A VM from scratch, on an explicit cluster and node
  pmx.multicluster.pmx_vm:
    cluster: staging
    node: stg-pve2
    name: build-runner01
    cores: 4
    memory: 8192
    cpu: host
    ostype: l26
    scsihw: virtio-scsi-single
    disks:
      scsi0: local-lvm:64,iothread=1
    nets:
      net0: virtio,bridge=vmbr0
    ciuser: admin
    sshkeys: "{{ lookup('file', '~/.ssh/id_ed25519.pub') }}"
    ipconfig:
      ipconfig0: ip=dhcp
    agent: true
    onboot: true
    config:
      balloon: 2048

- name: More memory; reboot if the change waits for one
  pmx.multicluster.pmx_vm:
    name: prod-db01
    memory: 16384
    restart_on_change: true

- name: Shut down, stop hard after 2 minutes
  pmx.multicluster.pmx_vm:
    name: stg-batch01
    state: stopped
    timeout: 120
    force: true

- name: Turn a prepared VM into a template
  pmx.multicluster.pmx_vm:
    name: prod-tpl-rocky9
    state: template

- name: Grow a disk to 64 GiB, move it to another storage and delete the source; remove a second disk
  pmx.multicluster.pmx_vm:
    name: prod-db01
    disks:
      scsi0: ceph-pool:64
      scsi1: absent
    move_disks: true
    delete_moved_source: true

- name: Delete a VM and everything that refers to it
  pmx.multicluster.pmx_vm:
    name: stg-old01
    state: absent
    purge: true
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
  description: The cluster the VM is on (or would be created on).
  returned: always
  type: str
  sample: production
route_reason:
  description: Why that cluster, for example V(explicit), V(pattern 'prod-*'), V(located) or V(default).
  returned: always
  type: str
  sample: pattern 'prod-*'
vmid:
  description: ID of the VM (in check mode for a new VM, the id it would get).
  returned: always
  type: int
  sample: 110
name:
  description: Name of the VM.
  returned: always
  type: str
  sample: prod-web03
node:
  description: Node the VM is on (or would be created on); V(null) when it does not exist.
  returned: always
  type: str
  sample: prod-pve2
node_reason:
  description: For a new VM, why this node (V(explicit), V(cluster default node), V(most free memory),
    V(clone source node)); V(null) otherwise.
  returned: always
  type: str
  sample: most free memory
status:
  description: Power state after the task (V(running), V(stopped)), or V(absent).
  returned: always
  type: str
  sample: running
template:
  description: Whether the VM is a template.
  returned: unless O(state=absent)
  type: bool
pending:
  description: Configuration keys whose new values wait for the next start of the VM.
  returned: always
  type: list
  elements: str
  sample: [cores, memory]
diff:
  description:
    - The configuration keys concerned, before and after. For a new VM, C(before) is empty; for a
      deleted one, C(after) is. A power change shows as C(status), a conversion as C(template).
  returned: always
  type: dict
  contains:
    before:
      description: Current values.
      type: dict
    after:
      description: Requested values.
      type: dict
  sample: {before: {memory: '4096'}, after: {memory: 8192}}
tasks:
  description: The Proxmox tasks run, in order.
  returned: always
  type: list
  elements: dict
  contains:
    action:
      description: V(create), V(clone), V(update), V(resize), V(move_disk), V(detach), V(remove), V(start),
        V(shutdown), V(stop), V(reboot), V(template) or V(delete).
      type: str
    upid:
      description: The task id.
      type: str
    exitstatus:
      description: How the task ended, V(OK) on success.
      type: str
clone_source:
  description: The VM or template a new VM was cloned from.
  returned: when a VM was (or in check mode would be) cloned
  type: dict
  contains:
    vmid:
      description: ID of the source.
      type: int
    name:
      description: Name of the source.
      type: str
    node:
      description: Node of the source.
      type: str
    template:
      description: Whether the source is a template.
      type: bool
forced:
  description: True when the VM did not shut down within O(timeout) and was stopped hard (O(force=true)).
  returned: when it happened
  type: bool
adopted:
  description:
    - Set when another run created this VM at the same moment. This run removed its own new VM
      (C(removed_vmid)) and manages the other one (C(vmid)), so that one VM is left.
  returned: when it happened
  type: dict
  sample: {vmid: 106, removed_vmid: 107}
plan:
  description:
    - The steps decided on, in order, each with C(action) (V(create), V(clone), V(update), V(resize),
      V(move_disk), V(detach), V(start), V(shutdown), V(stop), V(reboot), V(template) or V(delete)) and,
      where it has some, C(params) (write-only
      values such as passwords masked). In check mode this is what would be done; RV(tasks) is what was done.
    - A V(reboot) with C(if_pending=true) happens only if settings wait for a reboot after the update
      (O(restart_on_change)).
  returned: always
  type: list
  elements: dict
  sample: [{action: update, params: {changes: {memory: 8192}}}, {action: start}]
waited_for:
  description: Tasks of an earlier or another run that were still running on this VM and were waited for.
  returned: always
  type: list
  elements: dict
  contains:
    action:
      description: The task type, for example V(qmstart) or V(qmdestroy).
      type: str
    upid:
      description: The task id.
      type: str
    exitstatus:
      description: How it ended.
      type: str
'''

from ansible_collections.pmx.multicluster.plugins.module_utils.ansible_module import PmxModule, vm_argument_spec
from ansible_collections.pmx.multicluster.plugins.module_utils.guests.manager import GuestManager
from ansible_collections.pmx.multicluster.plugins.module_utils.guests.spec import guest_spec
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.kinds import QEMU


def ensure_vm(pmx):
    """Bring the VM to the requested state."""
    manager = GuestManager(pmx.registry, QEMU, check_mode=pmx.check_mode)
    return manager.ensure(pmx.params['state'], guest_spec(QEMU, pmx.params))


def main():
    pmx = PmxModule(argument_spec=vm_argument_spec(), supports_check_mode=True,
                    required_one_of=[('name', 'vmid')])
    pmx.run(ensure_vm)


if __name__ == '__main__':
    main()
