# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cluster health and the rows every front end returns for nodes, storages and guests.

One builder per kind of row, so that ``pmx_cluster_info``, the cluster_report role and the MCP server
(``list_clusters``, ``cluster_status``, ``list_nodes``, ``list_storages``, ``list_guests``) answer with the
same field names: the names ``pmx_cluster_info`` documents in its RETURN. A front end that lists rows of
several clusters in one list adds ``cluster`` to each row.

Pure functions over a registry (``map``, ``cluster``) and a client (``get``): no Ansible import, no I/O
of their own.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from typing import Any, Dict, Iterable, List, Mapping, Optional

from ansible_collections.pmx.multicluster.plugins.module_utils.pve.kinds import KINDS
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.values import parse_tags

GUEST_TYPES = tuple(KINDS)
# The power states a guest is counted under; any other one (paused, unknown...) counts as stopped.
COUNTED_STATES = ('running', 'stopped')


def node_row(entry: Mapping[str, Any]) -> Dict[str, Any]:
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


def storage_row(entry: Mapping[str, Any]) -> Dict[str, Any]:
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


def guest_row(entry: Mapping[str, Any]) -> Dict[str, Any]:
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


def guest_counts(guests: Iterable[Mapping[str, Any]]) -> Dict[str, Dict[str, int]]:
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


def cluster_health(config: Any, client: Any, storages: bool = False) -> Dict[str, Any]:
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


def unreachable_health(config: Any, error: Any, storages: bool = False) -> Dict[str, Any]:
    """The health entry of a cluster that could not be read: its public settings, ``reachable: false``, ``error``."""
    info = dict(config.public())
    info.update({'reachable': False, 'error': str(error), 'version': None, 'release': None, 'quorate': None,
                 'nodes': [], 'nodes_online': 0, 'nodes_total': 0, 'guests': None})
    if storages:
        info['storages'] = []
    return info


def clusters_health(registry: Any, names: Optional[Iterable[str]] = None, storages: bool = False,
                    deadline: Optional[float] = None) -> List[Dict[str, Any]]:
    """Health of each cluster (all in configuration order, or ``names`` in their order), concurrently (``map``).

    An unreachable cluster (or, with ``deadline``, a slow one: see ``ClusterRegistry.map``) is answered with
    ``reachable: false`` and its ``error``; it does not fail the answer.
    """
    results = registry.map(lambda name, client: cluster_health(registry.cluster(name), client, storages), names,
                           deadline=deadline)
    return [result.value if result.ok else unreachable_health(registry.cluster(name), result.error, storages)
            for name, result in results.items()]
