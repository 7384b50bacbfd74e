#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: pmx_guest_info
short_description: Facts about VMs and containers across several Proxmox VE clusters
version_added: 0.1.0
description:
  - Returns the guests of all configured clusters (or of those O(cluster) names) that the filters select - by
    name or glob, vmid, type, status, tags and pool - each with its cluster and why it is that cluster's
    (RV(guests[].why) - the name pattern that routes it there, or V(located)).
  - Fast by default - one request per cluster, read concurrently, as the inventory does. Config (with disks and
    network devices), pending changes, snapshots and IP addresses are read only when O(details) asks for them,
    for the selected guests only, with bounded concurrency.
  - A cluster that cannot be read is listed in RV(unreadable) with its error and a warning, never taken for
    "no such guest there"; with O(fail_on_unreachable=true) the task fails instead.
  - Write-only values (a cloud-init or root password) are masked; token secrets never appear.
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
  cluster:
    description: Cluster names or globs to read; all clusters when omitted.
    type: list
    elements: str
  name:
    description: A guest name or a glob such as V(prod-web*), compared case-insensitively.
    type: str
  vmid:
    description: Only the guest(s) with this vmid (vmids repeat across clusters).
    type: int
  type:
    description: Only VMs (V(qemu)) or only containers (V(lxc)).
    type: str
    choices: [qemu, lxc]
  status:
    description: Only guests in this power state, for example V(running) or V(stopped).
    type: str
  tags:
    description: Only guests that carry every one of these tags (compared as Proxmox VE stores them).
    type: list
    elements: str
  pool:
    description: Only guests of this resource pool.
    type: str
  include_templates:
    description: Whether templates are listed too.
    type: bool
    default: true
  details:
    description:
      - What to read of each selected guest beyond its /cluster/resources entry, one more request per guest
        and item.
      - V(config) adds RV(guests[].config), RV(guests[].disks) and RV(guests[].nets); V(pending) the settings
        that wait for a restart; V(snapshots) the guest's snapshots; V(addresses) the IP addresses of a running
        guest (a container's interfaces, a VM's guest agent).
    type: list
    elements: str
    choices: [config, pending, snapshots, addresses]
    default: []
  fail_on_unreachable:
    description: Fail when a cluster cannot be read, instead of answering from the others.
    type: bool
    default: false
seealso:
  - module: pmx.multicluster.pmx_cluster_info
  - module: pmx.multicluster.pmx_snapshot_info
'''

EXAMPLES = r'''
- name: The web servers of every cluster, with disks and addresses
  pmx.multicluster.pmx_guest_info:
    name: "*-web*"
    details: [config, addresses]
  register: web

- name: Their names and clusters
  ansible.builtin.debug:
    msg: "{{ web.guests | map(attribute='name') | zip(web.guests | map(attribute='cluster')) | list }}"

- name: Running database VMs of production, with their snapshots
  pmx.multicluster.pmx_guest_info:
    cluster: [production]
    type: qemu
    status: running
    tags: [db]
    details: [snapshots]
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
  description: The selected guests, by cluster (in configuration order) and vmid.
  returned: always
  type: list
  elements: dict
  contains:
    cluster:
      description: The cluster the guest is in.
      type: str
    why:
      description: Why it is that cluster's guest - the name pattern that routes it there (V(pattern 'prod-*')), or
        V(located) when no pattern of that cluster matches its name.
      type: str
    vmid:
      description: Its vmid.
      type: int
    name:
      description: Its name.
      type: str
    type:
      description: V(qemu) or V(lxc).
      type: str
    status:
      description: Power state.
      type: str
    node:
      description: Node it is on.
      type: str
    template:
      description: Whether it is a template.
      type: bool
    tags:
      description: Its tags.
      type: list
      elements: str
    pool:
      description: Its resource pool.
      type: str
    maxcpu:
      description: CPUs.
      type: int
    memory_total:
      description: Memory in bytes.
      type: int
    uptime:
      description: Seconds since it started.
      type: int
    config:
      description: Its configuration (write-only values masked).
      type: dict
      returned: when O(details) has V(config)
    disks:
      description: Its disks, each with C(key), C(volume), C(storage), C(size), C(size_bytes), C(unused), C(cdrom)
        and C(options).
      type: list
      elements: dict
      returned: when O(details) has V(config)
    nets:
      description: Its network devices, each with C(key), C(model), C(mac), C(bridge), C(tag) and C(options).
      type: list
      elements: dict
      returned: when O(details) has V(config)
    pending:
      description: Settings that wait for the next start, with the value they will have (null for a deletion).
      type: dict
      returned: when O(details) has V(pending)
    snapshots:
      description: Its snapshots, oldest first (as M(pmx.multicluster.pmx_snapshot_info) returns them).
      type: list
      elements: dict
      returned: when O(details) has V(snapshots)
    addresses:
      description: IP addresses of a running guest, IPv4 first.
      type: list
      elements: str
      returned: when O(details) has V(addresses)
    errors:
      description: Details that could not be read, with why.
      type: list
      elements: str
      returned: when some could not
count:
  description: How many guests were selected.
  returned: always
  type: int
clusters:
  description: The clusters asked.
  returned: always
  type: list
  elements: str
unreadable:
  description: Clusters that could not be read, each with C(cluster) and C(error); their guests are not listed.
  returned: always
  type: list
  elements: dict
'''

from ansible_collections.pmx.multicluster.plugins.module_utils.ansible_module import PmxModule
from ansible_collections.pmx.multicluster.plugins.module_utils.errors import UnreadableClustersError
from ansible_collections.pmx.multicluster.plugins.module_utils.guests.facts import DETAILS, GuestQuery, guest_facts


def gather(pmx):
    p = pmx.params
    query = GuestQuery(clusters=p['cluster'], name=p['name'], vmid=p['vmid'], type=p['type'], status=p['status'],
                       tags=p['tags'] or [], pool=p['pool'], include_templates=p['include_templates'],
                       details=p['details'] or [])
    result = guest_facts(pmx.registry, query)
    if result['unreadable'] and p['fail_on_unreachable']:
        raise UnreadableClustersError('; '.join(result['warnings']) + '; fail_on_unreachable is set',
                                      dict((u['cluster'], u['error']) for u in result['unreadable']))
    return result


def main():
    pmx = PmxModule(argument_spec=dict(
        cluster=dict(type='list', elements='str'),
        name=dict(type='str'),
        vmid=dict(type='int'),
        type=dict(type='str', choices=['qemu', 'lxc']),
        status=dict(type='str'),
        tags=dict(type='list', elements='str'),
        pool=dict(type='str'),
        include_templates=dict(type='bool', default=True),
        details=dict(type='list', elements='str', choices=list(DETAILS), default=[]),
        fail_on_unreachable=dict(type='bool', default=False),
    ), supports_check_mode=True)
    pmx.run(gather)


if __name__ == '__main__':
    main()
