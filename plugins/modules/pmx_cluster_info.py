#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: pmx_cluster_info
short_description: Health and facts of several Proxmox VE clusters, and where a guest would be routed
version_added: 0.1.0
description:
  - Gathers facts about every configured Proxmox VE cluster (or those named or matched by glob),
    querying all of them at once.
  - For each cluster it returns its metadata (region, tier, API URL), whether it is reachable,
    the PVE version, quorum, its nodes and counts of guests; on request also its storages.
  - An unreachable cluster is reported with its error; the task fails only when
    O(fail_on_unreachable=true).
  - With O(route), it also answers "which cluster would a guest named X go to, and why".
author:
  - pmx.multicluster contributors (@pmx-multicluster)
extends_documentation_fragment:
  - pmx.multicluster.pmx
  - pmx.multicluster.pmx.modules
  - pmx.multicluster.pmx.actiongroup_pmx
attributes:
  check_mode:
    support: full
    description: The module only reads.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to compare.
options:
  name:
    description:
      - Names of clusters, or globs such as V(prod*), to report on. All clusters when empty.
      - An unknown name is an error that lists the configured clusters.
    type: list
    elements: str
    default: []
    aliases: [cluster]
  storages:
    description:
      - Also return each cluster's storages (per node).
    type: bool
    default: false
  fail_on_unreachable:
    description:
      - Fail the task when any selected cluster cannot be reached or answers with an error.
      - By default such a cluster is reported with RV(clusters[].reachable=false) and its RV(clusters[].error).
    type: bool
    default: false
  route:
    description:
      - Guest names to route. For each, RV(routes) says which cluster it would go to and why.
    type: list
    elements: str
    default: []
  route_lookup:
    description:
      - When a name in O(route) matches no routing pattern, look for an existing guest of that
        name in all clusters (the router's third rule) before falling back to the default cluster.
    type: bool
    default: true
  evacuate:
    description:
      - Plan the evacuation of a node, for maintenance, without moving anything. RV(evacuation) lists each guest on
        O(evacuate.node), with the node it should move to. The targets are the other online nodes of the cluster,
        balanced by free memory, largest guest first. Templates and the kept sources of moves to other clusters
        (stopped, locked V(migrate)) are left out.
      - The plan is what the playbook C(pmx.multicluster.evacuate_node) feeds to M(pmx.multicluster.pmx_migrate).
    type: dict
    suboptions:
      cluster:
        description: The cluster of the node.
        type: str
        required: true
      node:
        description: The node to empty.
        type: str
        required: true
      exclude:
        description: Nodes not to move guests to (besides the offline ones).
        type: list
        elements: str
        default: []
'''

EXAMPLES = r'''
- name: Health of every cluster
  pmx.multicluster.pmx_cluster_info:
  register: pmx

- name: Print one line per cluster
  ansible.builtin.debug:
    msg: "{{ item.name }}: {{ 'up' if item.reachable else 'DOWN' }} {{ item.version }}"
  loop: "{{ pmx.clusters }}"

- name: Only the production clusters, with storages; fail if one is down
  pmx.multicluster.pmx_cluster_info:
    name: ['prod*']
    storages: true
    fail_on_unreachable: true

- name: Where would these guests go?
  pmx.multicluster.pmx_cluster_info:
    env_file: /etc/pmx/clusters.env
    route: [prod-web01, stg-db01, build-runner]
  register: routing

- name: Show the routing table
  ansible.builtin.debug:
    msg: "{{ item.name }} -> {{ item.cluster }} ({{ item.reason }})"
  loop: "{{ routing.routes }}"

- name: Which guests would leave prod-pve1, and where to
  pmx.multicluster.pmx_cluster_info:
    name: [production]
    evacuate:
      cluster: production
      node: prod-pve1
  register: evac
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
default_cluster:
  description: The cluster used when no routing rule applies.
  returned: always
  type: str
  sample: production
unreachable_clusters:
  description: Names of the selected clusters that could not be queried.
  returned: always
  type: list
  elements: str
  sample: []
clusters:
  description: One entry per selected cluster, in configuration order. Never contains a secret.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Cluster name.
      type: str
      sample: production
    region:
      description: Region metadata, if configured.
      type: str
      sample: eu-west
    tier:
      description: Tier metadata, if configured.
      type: str
      sample: production
    api_url:
      description: The first API URL.
      type: str
      sample: https://pve-prod.example.com:8006
    api_urls:
      description: Every API URL, in failover order.
      type: list
      elements: str
    token_id:
      description: The API token id (not its secret).
      type: str
      sample: root@pam!ansible
    verify_ssl:
      description: Whether TLS certificates are verified.
      type: bool
    ca_bundle:
      description: CA bundle used to verify the certificate, if any.
      type: str
    patterns:
      description: The cluster's routing globs.
      type: list
      elements: str
      sample: [prod-*]
    reachable:
      description: Whether the cluster answered.
      type: bool
      sample: true
    error:
      description: Why the cluster could not be queried; V(null) when it was.
      type: str
    version:
      description: Proxmox VE version.
      type: str
      sample: 9.0.10
    release:
      description: Proxmox VE release.
      type: str
      sample: '9.0'
    quorate:
      description: Whether the cluster has quorum.
      type: bool
    nodes_online:
      description: Number of online nodes.
      type: int
    nodes_total:
      description: Number of nodes.
      type: int
    nodes:
      description: The cluster's nodes.
      type: list
      elements: dict
      contains:
        name:
          description: Node name.
          type: str
        status:
          description: V(online), V(offline) or V(unknown).
          type: str
        cpu:
          description: CPU usage (0 to 1).
          type: float
        maxcpu:
          description: Number of CPUs.
          type: int
        memory_used:
          description: Memory used, in bytes.
          type: int
        memory_total:
          description: Memory, in bytes.
          type: int
        uptime:
          description: Uptime in seconds.
          type: int
    guests:
      description: Guest counts per type (V(qemu), V(lxc)), each with C(running), C(stopped), C(total) and C(templates).
      type: dict
      sample:
        qemu: {running: 3, stopped: 1, total: 4, templates: 1}
        lxc: {running: 1, stopped: 1, total: 2, templates: 0}
    storages:
      description: Storages per node, when O(storages=true).
      type: list
      elements: dict
      returned: when O(storages=true)
      contains:
        storage:
          description: Storage name.
          type: str
          sample: local-lvm
        node:
          description: The node this entry is for (a shared storage has one entry per node).
          type: str
        status:
          description: V(available) or another state PVE reports.
          type: str
        plugintype:
          description: Storage type, for example V(lvmthin), V(dir), V(rbd).
          type: str
        content:
          description: Content types it holds, as PVE lists them (V(images,rootdir)).
          type: str
        shared:
          description: Whether every node sees the same storage.
          type: bool
        disk_used:
          description: Space used, in bytes.
          type: int
        disk_total:
          description: Size, in bytes.
          type: int
evacuation:
  description: With O(evacuate), the plan to empty the node.
  returned: when O(evacuate) is given
  type: dict
  contains:
    cluster:
      description: The cluster.
      type: str
    node:
      description: The node to empty.
      type: str
    targets:
      description: The online nodes the guests may go to.
      type: list
      elements: str
    moves:
      description:
        - One entry per guest, in the order to move them, with C(name), C(vmid), C(type), C(status),
          C(memory) (bytes) and C(target_node).
      type: list
      elements: dict
  sample: {cluster: production, node: prod-pve1, targets: [prod-pve2, prod-pve3],
           moves: [{name: prod-web01, vmid: 100, type: qemu, status: running, memory: 4294967296,
                    target_node: prod-pve3}]}
routes:
  description: One entry per name in O(route).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The guest name asked about.
      type: str
      sample: prod-web01
    cluster:
      description: The chosen cluster, or V(null) when the name cannot be routed.
      type: str
      sample: production
    reason:
      description: Why, for example V(pattern 'prod-*'), V(located), V(default).
      type: str
      sample: pattern 'prod-*'
    error:
      description: Why the name cannot be routed (for example it matches two clusters' patterns).
      type: str
    unreadable:
      description:
        - Clusters the lookup (O(route_lookup)) could not read, each with C(cluster) and C(error). When this is
          not empty and C(reason) is V(located) or V(default), the answer may be wrong, since the guest
          may exist in one of these clusters. The guest modules refuse such a route for a write, and say to
          give C(cluster) explicitly.
      type: list
      elements: dict
      sample: [{cluster: staging, error: "cluster 'staging' is unreachable: ..."}]
'''

from ansible_collections.pmx.multicluster.plugins.module_utils.ansible_module import PmxModule
from ansible_collections.pmx.multicluster.plugins.module_utils.errors import (
    AmbiguousClusterSelectionError,
    UnreadableClustersError,
)
from ansible_collections.pmx.multicluster.plugins.module_utils.guests.migration import evacuation
from ansible_collections.pmx.multicluster.plugins.module_utils.health import clusters_health


def route_names(registry, names, lookup):
    """The router's answer for each name, from what could be read; an unroutable name carries its error instead."""
    routes = []
    for name in names:
        try:
            route = registry.select(name=name, lookup=lookup, strict=False)
            routes.append({'name': name, 'cluster': route.cluster, 'reason': route.reason, 'error': None,
                           'unreadable': [{'cluster': c, 'error': e} for c, e in route.unreadable.items()]})
        except AmbiguousClusterSelectionError as exc:
            routes.append({'name': name, 'cluster': None, 'reason': None, 'error': str(exc), 'unreadable': []})
    return routes


def gather(pmx):
    params = pmx.params
    registry = pmx.registry
    names = registry.match(params['name'])
    clusters = clusters_health(registry, names, storages=params['storages'])
    unreachable = [c['name'] for c in clusters if not c['reachable']]
    result = dict(changed=False, clusters=clusters, unreachable_clusters=unreachable,
                  default_cluster=registry.config.default_cluster,
                  routes=route_names(registry, params['route'], params['route_lookup']))
    if params['evacuate']:
        wanted = params['evacuate']
        result['evacuation'] = evacuation(registry, wanted['cluster'], wanted['node'], wanted.get('exclude'))
    if unreachable and params['fail_on_unreachable']:
        reasons = '; '.join(c['error'] for c in clusters if not c['reachable'])
        pmx.fail(UnreadableClustersError('%d of %d clusters could not be queried: %s'
                                         % (len(unreachable), len(clusters), reasons),
                                         dict((c['name'], c['error']) for c in clusters if not c['reachable'])),
                 **result)
    return result


def main():
    pmx = PmxModule(
        argument_spec=dict(
            name=dict(type='list', elements='str', default=[], aliases=['cluster']),
            storages=dict(type='bool', default=False),
            fail_on_unreachable=dict(type='bool', default=False),
            route=dict(type='list', elements='str', default=[]),
            route_lookup=dict(type='bool', default=True),
            evacuate=dict(type='dict', options=dict(
                cluster=dict(type='str', required=True),
                node=dict(type='str', required=True),
                exclude=dict(type='list', elements='str', default=[]),
            )),
        ),
        supports_check_mode=True,
    )
    pmx.run(gather)


if __name__ == '__main__':
    main()
