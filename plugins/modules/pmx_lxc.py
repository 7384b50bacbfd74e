#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: pmx_lxc
short_description: Create, clone, update, power and delete LXC containers on several Proxmox VE clusters
description:
  - Manages an LXC container from creation to deletion, on whichever configured Proxmox VE cluster
    it belongs to. It shares its lifecycle core with M(pmx.multicluster.pmx_vm).
  - The cluster is O(cluster) if set; otherwise the cluster whose name patterns match O(hostname);
    otherwise the single cluster that already has a container with this O(hostname) or O(vmid);
    otherwise the default cluster. RV(cluster) and RV(route_reason) tell which rule applied.
  - Idempotent. Only the settings the task gives are compared with the container's configuration,
    in Proxmox's own formats (a network device's generated C(hwaddr) and C(type=veth), tag order and
    separators, V(1)/V(true) booleans, feature flags in any order); only what differs is written.
  - Each Proxmox task is waited for up to O(timeout) seconds. A failed task fails the module with its
    exit status and the last lines of its log. A container locked by a backup, migration or another
    task is waited for up to O(timeout) seconds, then the module fails and names the lock.
options:
  hostname:
    description:
      - The container's hostname, which is its name in Proxmox. Hostnames are unique per cluster;
        two containers of the target cluster with it are an error naming both vmids.
      - O(hostname), O(vmid) or both are required; when both are given they must name the same container.
      - It must be a DNS name (letters, digits and C(-), parts separated by C(.)); anything else is refused
        before any request.
    type: str
    aliases: [name]
  ostemplate:
    description:
      - OS template volume to create a new container from, for example
        V(local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst). Required to create a container without O(clone).
      - Used at creation only, never compared afterwards.
    type: str
  rootfs:
    description:
      - Root file system, V(storage:size_in_GiB) for a new volume, for example V(local-lvm:8), with mount
        options after a comma (V(local-lvm:8,mountoptions=noatime)).
      - An existing root file system asked for larger grows (Proxmox VE's resize); asked for smaller, the task
        fails naming both sizes (a volume is never shrunk). On another storage it is moved with O(move_disks)
        (the container must be stopped), else that is a warning.
    type: str
  mounts:
    description:
      - "Mount points by key, for example C({mp0: 'local-lvm:16,mp=/srv/data,backup=1'})."
      - A missing mount point is added. An existing one grows, or moves with O(move_disks), as O(rootfs) does.
      - V(detached) takes a mount point out of the stopped container and keeps its volume (as C(unusedN));
        V(absent) also destroys the volume. A mount point that is not there is no change.
    type: dict
  nets:
    description:
      - "Network interfaces by key, for example C({net0: 'name=eth0,bridge=vmbr0,ip=10.0.0.5/24,gw=10.0.0.1'})."
      - The C(hwaddr) Proxmox generated is kept and not compared unless one is given.
    type: dict
  cores:
    description: Number of CPU cores the container may use.
    type: int
  memory:
    description: Memory in MiB.
    type: int
  swap:
    description: Swap in MiB.
    type: int
  unprivileged:
    description:
      - Create an unprivileged container (Proxmox's default for new containers).
      - It cannot be changed later; a different value for an existing container is a warning.
    type: bool
  features:
    description:
      - "Feature flags, as a dict (C({nesting: true, keyctl: true})) or as Proxmox's text (V(nesting=1,keyctl=1))."
      - Only the flags given are compared.
    type: raw
  nameserver:
    description: DNS servers, separated by spaces.
    type: str
  searchdomain:
    description: DNS search domains.
    type: str
  tags:
    description: Tags, compared regardless of order and case.
    type: list
    elements: str
  description:
    description: Description (notes) of the container.
    type: str
  onboot:
    description: Start the container when its node boots.
    type: bool
  password:
    description:
      - Root password inside a new container.
      - Set at creation from O(ostemplate) only; Proxmox never returns it, so it is not compared.
    type: str
  ssh_public_keys:
    description:
      - Public SSH keys for root in a new container, one per line.
      - Set at creation from O(ostemplate) only.
    type: str
notes:
  - Routing and idempotence rely on hostnames, not vmids; one vmid may exist in several clusters.
  - Proxmox writes a container's configuration synchronously; changes it cannot apply to a running
    container are listed in RV(pending).
seealso:
  - module: pmx.multicluster.pmx_vm
  - module: pmx.multicluster.pmx_cluster_info
attributes:
  check_mode:
    description: Reads the clusters and reports what would change (and the vmid and node a new container would
      get); writes nothing.
    support: full
  diff_mode:
    description: Shows the configuration keys that change, before and after, and changes of power state or
      template status.
    support: full
extends_documentation_fragment:
  - pmx.multicluster.pmx
  - pmx.multicluster.pmx.modules
  - pmx.multicluster.pmx.guest
  - pmx.multicluster.pmx.guests
  - pmx.multicluster.pmx.actiongroup_pmx
author:
  - pmx.multicluster contributors (@pmx-multicluster)
version_added: 0.1.0
'''

EXAMPLES = r'''
- name: One container per cluster, routed by name (prod-* to production, stg-* to staging)
  pmx.multicluster.pmx_lxc:
    hostname: "{{ item }}"
    ostemplate: local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst
    rootfs: local-lvm:8
    cores: 2
    memory: 1024
    swap: 512
    nets:
      net0: name=eth0,bridge=vmbr0,ip=dhcp
    features:
      nesting: true
    password: "{{ vault_ct_root_password }}"
    ssh_public_keys: "{{ lookup('file', '~/.ssh/id_ed25519.pub') }}"
    tags: [cache]
    state: started
  loop: [prod-cache02, stg-cache02]

- name: Static address, a data volume and DNS, on a given node
  pmx.multicluster.pmx_lxc:
    cluster: staging
    node: stg-pve2
    hostname: stg-db02
    ostemplate: local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst
    rootfs: local-lvm:16
    mounts:
      mp0: local-lvm:64,mp=/var/lib/postgresql,backup=1
    nets:
      net0: name=eth0,bridge=vmbr0,ip=10.20.0.15/24,gw=10.20.0.1
    nameserver: 10.20.0.2
    searchdomain: stg.example.com
    onboot: true

- name: Clone a container template, then raise its memory
  pmx.multicluster.pmx_lxc:
    hostname: prod-proxy02
    clone: prod-tpl-proxy
    memory: 2048

- name: Shut down, and stop hard after a minute
  pmx.multicluster.pmx_lxc:
    hostname: stg-proxy01
    state: stopped
    timeout: 60
    force: true

- name: Convert to a template
  pmx.multicluster.pmx_lxc:
    hostname: prod-tpl-proxy
    state: template

- name: Destroy a container
  pmx.multicluster.pmx_lxc:
    hostname: stg-old01
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
  description: Cluster of the container (or where it would be created).
  returned: always
  type: str
  sample: staging
route_reason:
  description: The routing rule that chose the cluster, such as V(explicit), V(pattern 'stg-*'), V(located) or
    V(default).
  returned: always
  type: str
  sample: pattern 'stg-*'
vmid:
  description: The container's ID (in check mode, the one a new container would get).
  returned: always
  type: int
  sample: 106
name:
  description: Hostname of the container.
  returned: always
  type: str
  sample: stg-cache02
node:
  description: The container's node (or where it would be created); V(null) if it does not exist.
  returned: always
  type: str
  sample: stg-pve1
node_reason:
  description: Why that node for a new container (V(explicit), V(cluster default node), V(most free memory),
    V(clone source node)); otherwise V(null).
  returned: always
  type: str
  sample: most free memory
status:
  description: The power state at the end (V(running) or V(stopped)), or V(absent).
  returned: always
  type: str
  sample: stopped
template:
  description: True if the container is a template.
  returned: unless O(state=absent)
  type: bool
pending:
  description: Keys whose new values take effect at the container's next start.
  returned: always
  type: list
  elements: str
  sample: [rootfs]
diff:
  description:
    - Before and after of the keys concerned; C(before) is empty for a new container and C(after) for
      a destroyed one. Power changes appear as C(status), template conversion as C(template).
  returned: always
  type: dict
  contains:
    before:
      description: Values before the task.
      type: dict
    after:
      description: Values the task asked for.
      type: dict
  sample: {before: {memory: 512}, after: {memory: 1024}}
tasks:
  description: Proxmox tasks and requests run, in order.
  returned: always
  type: list
  elements: dict
  contains:
    action:
      description: One of V(create), V(clone), V(update), V(resize), V(move_disk), V(detach), V(remove),
        V(start), V(shutdown), V(stop), V(reboot), V(template), V(delete).
      type: str
    upid:
      description: ID of the Proxmox task (V(null) for the synchronous configuration update).
      type: str
    exitstatus:
      description: The task's exit status; V(OK) when it succeeded.
      type: str
clone_source:
  type: dict
  returned: when a container was (or in check mode would be) cloned
  description: The template or container a new container was cloned from.
  contains:
    vmid:
      description: Its ID.
      type: int
    name:
      description: Its hostname.
      type: str
    node:
      description: Its node.
      type: str
    template:
      description: Whether it is a template.
      type: bool
forced:
  description: True when the container did not shut down in time and was stopped hard (O(force=true)).
  returned: when it happened
  type: bool
adopted:
  description:
    - Set when another run created this container at the same moment. This run removed its own new container
      (C(removed_vmid)) and manages the other one (C(vmid)), so that one container is left.
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
  description: Tasks of an earlier or another run that were still running on this container and were waited for.
  returned: always
  type: list
  elements: dict
  contains:
    action:
      description: The task type, for example V(vzstart) or V(vzdestroy).
      type: str
    upid:
      description: The task id.
      type: str
    exitstatus:
      description: How it ended.
      type: str
'''

from ansible_collections.pmx.multicluster.plugins.module_utils.ansible_module import PmxModule, lxc_argument_spec
from ansible_collections.pmx.multicluster.plugins.module_utils.guests.manager import GuestManager
from ansible_collections.pmx.multicluster.plugins.module_utils.guests.spec import guest_spec
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.kinds import LXC


def ensure_container(pmx):
    """Bring the container to the requested state."""
    manager = GuestManager(pmx.registry, LXC, check_mode=pmx.check_mode)
    return manager.ensure(pmx.params['state'], guest_spec(LXC, pmx.params))


def main():
    PmxModule(argument_spec=lxc_argument_spec(), supports_check_mode=True,
              required_one_of=[('hostname', 'vmid')]).run(ensure_container)


if __name__ == '__main__':
    main()
