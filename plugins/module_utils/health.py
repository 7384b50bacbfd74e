# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cluster health and the rows every front end returns for nodes, storages and guests.

One builder per kind of row, so that ``pmx_cluster_info``, the cluster_report role and the MCP server
(``list_clusters``, ``cluster_status``, ``list_nodes``, ``list_storages``, ``list_guests``) answer with the
same field names: the names ``pmx_cluster_info`` documents in its RETURN. A front end that lists rows of
several clusters in one list adds ``cluster`` to each row.

Pure functions over a registry (``map``, ``cluster``) and a client (``get``): no Ansible import, no I/O
of their own. The row types (``NodeRow``, ``StorageRow``, ``GuestRow``, ``ClusterHealth``) are the field
vocabulary: the MCP server publishes its output schemas from them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from typing import Any, Dict, Iterable, List, Mapping, Optional, TypedDict

from ansible_collections.pmx.multicluster.plugins.module_utils.pve.kinds import KINDS
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.values import parse_tags

GUEST_TYPES = tuple(KINDS)
# The power states a guest is counted under; any other one (paused, unknown...) counts as stopped.
COUNTED_STATES = ('running', 'stopped')


class NodeRow(TypedDict):
    """A node: ``cpu`` is the load (0..1), memory in bytes, uptime in seconds."""
    name: Optional[str]
    status: Optional[str]
    cpu: Optional[float]
    maxcpu: Optional[int]
    memory_used: Optional[int]
    memory_total: Optional[int]
    uptime: Optional[int]


class StorageRow(TypedDict):
    """A storage of one node: usage in bytes."""
    storage: Optional[str]
    node: Optional[str]
    status: Optional[str]
    plugintype: Optional[str]
    content: Optional[str]
    shared: bool
    disk_used: Optional[int]
    disk_total: Optional[int]


class GuestRow(TypedDict):
    """A VM (``qemu``) or container (``lxc``): memory in bytes, uptime in seconds."""
    vmid: int
    name: Optional[str]
    type: str
    status: Optional[str]
    node: Optional[str]
    template: bool
    tags: List[str]
    pool: Optional[str]
    maxcpu: Optional[int]
    memory_total: Optional[int]
    uptime: Optional[int]


class GuestCounts(TypedDict):
    """Guests of one type: running, stopped and total without templates, and templates."""
    running: int
    stopped: int
    total: int
    templates: int


class _Health(TypedDict):
    name: str
    api_url: str
    api_urls: List[str]
    token_id: Optional[str]
    verify_ssl: bool
    ca_bundle: Optional[str]
    region: Optional[str]
    tier: Optional[str]
    patterns: List[str]
    reachable: bool
    error: Optional[str]
    version: Optional[str]
    release: Optional[str]
    quorate: Optional[bool]
    nodes: List[NodeRow]
    nodes_online: int
    nodes_total: int
    guests: Optional[Dict[str, GuestCounts]]


class ClusterHealth(_Health, total=False):
    """One cluster's health: its public settings, reachability, version, quorum, nodes and guest counts per
    type (``qemu``, ``lxc``); ``storages`` when asked for."""
    storages: List[StorageRow]


def node_row(entry: Mapping[str, Any]) -> NodeRow:
    """A node, from its ``/cluster/resources`` (type ``node``) or ``/nodes`` entry."""
    return {
        'name': entry.get('node'),
        'status': entry.get('status'),
        'cpu': entry.get('cpu'),
        'maxcpu': entry.get('maxcpu'),
        'memory_used': entry.get('mem'),
        'memory_total': entry.get('maxmem'),
        'uptime': entry.get('uptime'),
    }


def storage_row(entry: Mapping[str, Any]) -> StorageRow:
    """A storage of one node, from its ``/cluster/resources`` (type ``storage``) entry."""
    return {
        'storage': entry.get('storage'),
        'node': entry.get('node'),
        'status': entry.get('status'),
        'plugintype': entry.get('plugintype'),
        'content': entry.get('content'),
        'shared': bool(entry.get('shared')),
        'disk_used': entry.get('disk'),
        'disk_total': entry.get('maxdisk'),
    }


def guest_row(entry: Mapping[str, Any]) -> GuestRow:
    """A VM or container, from its ``/cluster/resources`` (type ``qemu`` or ``lxc``) entry.

    CPUs and memory carry the names of the node row (``maxcpu``, ``memory_total``): the same PVE fields.
    """
    return {
        'vmid': int(entry['vmid']),
        'name': entry.get('name'),
        'type': entry.get('type'),
        'status': entry.get('status'),
        'node': entry.get('node'),
        'template': bool(entry.get('template')),
        'tags': parse_tags(entry.get('tags')),
        'pool': entry.get('pool'),
        'maxcpu': entry.get('maxcpu'),
        'memory_total': entry.get('maxmem'),
        'uptime': entry.get('uptime'),
    }


def guest_counts(guests: Iterable[Mapping[str, Any]]) -> Dict[str, GuestCounts]:
    """Guests per type: ``running``, ``stopped`` and ``total`` without templates, and ``templates``."""
    counts = dict((kind, {'running': 0, 'stopped': 0, 'total': 0, 'templates': 0}) for kind in GUEST_TYPES)
    for guest in guests:
        kind = counts.get(guest['type'])
        if kind is None:
            continue
        if guest['template']:
            kind['templates'] += 1
            continue
        kind['total'] += 1
        kind[guest['status'] if guest['status'] in COUNTED_STATES else 'stopped'] += 1
    return counts


def _quorate(status: List[Mapping[str, Any]]) -> bool:
    """Whether ``/cluster/status`` says the cluster is quorate."""
    for entry in status:
        if entry.get('type') == 'cluster':
            return bool(entry.get('quorate'))
    # A single node without a cluster has no quorum entry; it is its own majority.
    return True


def cluster_health(config: Any, client: Any, storages: bool = False) -> ClusterHealth:
    """One cluster's health: its public settings, version, quorum, nodes and guest counts (3 API calls).

    :param config: the cluster's ClusterConfig (its ``public()`` settings start the answer).
    :param storages: also list the storages of every node (from the same ``/cluster/resources`` answer).
    """
    version = client.get('version') or {}
    status = client.get('cluster/status') or []
    resources = client.get('cluster/resources') or []
    nodes = sorted((node_row(r) for r in resources if r.get('type') == 'node'), key=lambda n: n['name'] or '')
    info = dict(config.public())
    info.update({
        'reachable': True,
        'error': None,
        'version': version.get('version'),
        'release': version.get('release'),
        'quorate': _quorate(status),
        'nodes': nodes,
        'nodes_online': sum(1 for n in nodes if n['status'] == 'online'),
        'nodes_total': len(nodes),
        'guests': guest_counts(guest_row(r) for r in resources if r.get('type') in GUEST_TYPES),
    })
    if storages:
        info['storages'] = sorted((storage_row(r) for r in resources if r.get('type') == 'storage'),
                                  key=lambda s: (s['node'] or '', s['storage'] or ''))
    return info


def unreachable_health(config: Any, error: Any, storages: bool = False) -> ClusterHealth:
    """The health entry of a cluster that could not be read: its public settings, ``reachable: false``, ``error``."""
    info = dict(config.public())
    info.update({'reachable': False, 'error': str(error), 'version': None, 'release': None, 'quorate': None,
                 'nodes': [], 'nodes_online': 0, 'nodes_total': 0, 'guests': None})
    if storages:
        info['storages'] = []
    return info


def clusters_health(registry: Any, names: Optional[Iterable[str]] = None, storages: bool = False,
                    deadline: Optional[float] = None) -> List[ClusterHealth]:
    """Health of each cluster (all in configuration order, or ``names`` in their order), concurrently (``map``).

    An unreachable cluster (or, with ``deadline``, a slow one: see ``ClusterRegistry.map``) is answered with
    ``reachable: false`` and its ``error``; it does not fail the answer.
    """
    results = registry.map(lambda name, client: cluster_health(registry.cluster(name), client, storages), names,
                           deadline=deadline)
    return [result.value if result.ok else unreachable_health(registry.cluster(name), result.error, storages)
            for name, result in results.items()]
