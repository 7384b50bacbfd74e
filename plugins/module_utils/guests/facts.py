# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Facts about guests across clusters: which guests a filter selects, and what a play may want to know of each.

``guest_facts(registry, query)`` reads ``/cluster/resources`` once per cluster (concurrently, like the inventory)
and filters the guests by name or glob, vmid, type, status, tags and pool. Only on request does it read more of
each selected guest (config with its disks and nets, pending changes, snapshots, IP addresses), with bounded
concurrency. Each guest says its cluster and why it is that cluster's (the name pattern that routes it there,
or found there). A cluster that cannot be read is listed, never taken for "no such guest". Write-only config
values (a cloud-init password) are masked. No Ansible import.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fnmatch
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from ansible_collections.pmx.multicluster.plugins.module_utils.errors import ClusterError, GuestConflictError
from ansible_collections.pmx.multicluster.plugins.module_utils.guests.addresses import guest_addresses
from ansible_collections.pmx.multicluster.plugins.module_utils.health import GUEST_TYPES, guest_row
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.diff import pending_state
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.kinds import guest_path, kind_of
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.values import (
    format_size,
    normalise_tags,
    size_bytes,
    split_net,
    split_props,
)
from ansible_collections.pmx.multicluster.plugins.module_utils.router import same_name
from ansible_collections.pmx.multicluster.plugins.module_utils.snapshots import list_snapshots

DETAILS = ('config', 'pending', 'snapshots', 'addresses')
# Per-guest reads in flight at once, per cluster (the client keeps a few connections per host).
DETAIL_WORKERS = 8
MASK = '********'


def disk_facts(kind: Any, config: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The disks (root file system, mount points) of a config: key, volume, storage, size and options."""
    out = []
    for key in sorted(config):
        if not (kind.is_disk(key) or key.startswith('unused')):
            continue
        props = split_props(config[key], kind.disk_default_key)
        volume = props.pop(kind.disk_default_key, '')
        size = size_bytes(props.pop('size', '')) if 'size' in props else None
        out.append({'key': key, 'volume': volume, 'storage': volume.split(':', 1)[0] if ':' in volume else None,
                    'size': format_size(size) if size else None, 'size_bytes': size, 'unused': key.startswith('unused'),
                    'cdrom': props.get('media') == 'cdrom', 'options': props})
    return out


def net_facts(kind: Any, config: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The network devices of a config: key, model (VMs), MAC address, bridge, VLAN tag and the other options."""
    out = []
    for key in sorted(config):
        if not kind.is_net(key):
            continue
        props = split_net(config[key], kind)
        out.append({'key': key, 'model': props.pop('model', None), 'mac': props.pop(kind.mac_key, None),
                    'bridge': props.pop('bridge', None), 'tag': props.pop('tag', None), 'options': props})
    return out


@dataclass
class GuestQuery:
    """Which guests, and what to read of each."""

    clusters: Optional[List[str]] = None   # names or globs; None: all
    name: Optional[str] = None             # a name or a glob (case-insensitive, as PVE's DNS names)
    vmid: Optional[int] = None
    type: Optional[str] = None             # qemu or lxc
    status: Optional[str] = None
    tags: List[str] = field(default_factory=list)   # every one must be there
    pool: Optional[str] = None
    include_templates: bool = True
    details: List[str] = field(default_factory=list)

    def check(self) -> None:
        """:raises GuestConflictError: an unknown detail or type, said before any request."""
        bad = [d for d in self.details if d not in DETAILS]
        if bad:
            raise GuestConflictError('details: %s is not one of %s' % (', '.join(bad), ', '.join(DETAILS)))
        if self.type is not None:
            kind_of(self.type)

    def selects(self, guest: Dict) -> bool:
        if guest.get('type') not in GUEST_TYPES:
            return False
        name = guest.get('name') or ''
        if self.name is not None and not (same_name(name, self.name)
                                          or fnmatch.fnmatchcase(name.lower(), self.name.lower())):
            return False
        if self.vmid is not None and int(guest.get('vmid', -1)) != int(self.vmid):
            return False
        if self.type is not None and guest.get('type') != self.type:
            return False
        if self.status is not None and guest.get('status') != self.status:
            return False
        if self.pool is not None and guest.get('pool') != self.pool:
            return False
        if guest.get('template') and not self.include_templates:
            return False
        have = normalise_tags(guest.get('tags'))
        return all(tag in have for tag in normalise_tags(self.tags))


def _why(registry: Any, cluster: str, name: Optional[str]) -> str:
    """Why a guest found in ``cluster`` is that cluster's: the name pattern that routes it there, or found there."""
    rules = registry.router.pattern_matches(name).get(cluster) if name else None
    return rules[0] if rules else 'located'


def guest_facts(registry: Any, query: GuestQuery) -> Dict[str, Any]:
    """The guests ``query`` selects in every cluster it names, with what it asks for; see the module docstring.

    Returns ``{guests, count, clusters, unreadable, warnings}``; each guest is a ``guest_row`` with ``cluster``
    and ``why``, plus the details asked for, and ``errors`` for details that could not be read.
    """
    query.check()
    names = registry.match(query.clusters)
    results = registry.guests(names)
    guests: List[Dict[str, Any]] = []
    unreadable = []
    for cluster in names:
        result = results[cluster]
        if not result.ok:
            unreadable.append({'cluster': cluster, 'error': str(result.error)})
            continue
        selected = [dict(g) for g in result.value or [] if query.selects(g)]
        rows = [dict({'cluster': cluster, 'why': _why(registry, cluster, g.get('name'))}, **guest_row(g))
                for g in selected]
        if query.details and selected:
            client = registry.client(cluster)
            with ThreadPoolExecutor(max_workers=min(DETAIL_WORKERS, len(selected))) as pool:
                list(pool.map(lambda pair: _details(client, pair[0], pair[1], query.details), zip(selected, rows)))
        guests.extend(sorted(rows, key=lambda r: r['vmid']))
    warnings = []
    if unreadable:
        warnings.append('guests of cluster(s) %s are not in this answer: they could not be read (%s)'
                        % (', '.join("'%s'" % u['cluster'] for u in unreadable),
                           '; '.join(u['error'] for u in unreadable)))
    return {'changed': False, 'guests': guests, 'count': len(guests), 'clusters': names,
            'unreadable': unreadable, 'warnings': warnings}


def _details(client: Any, guest: Dict, row: Dict, details: List[str]) -> None:
    """Read what was asked of one guest into its row; a detail that fails is an entry of ``row['errors']``."""
    kind = kind_of(guest['type'])
    base = guest_path(guest['type'], guest['node'], guest['vmid'])
    config = None
    try:
        if 'config' in details or 'pending' in details:
            config, effective, waiting = pending_state(client.get(base + '/pending'))
            if 'config' in details:
                shown = dict((k, MASK if k in kind.write_only else v) for k, v in config.items() if k != 'digest')
                row.update(config=shown, disks=disk_facts(kind, config), nets=net_facts(kind, config))
            if 'pending' in details:
                row['pending'] = dict((k, MASK if k in kind.write_only else effective.get(k)) for k in waiting)
        if 'snapshots' in details:
            row['snapshots'] = list_snapshots(client, guest['type'], guest['node'], guest['vmid'])
        if 'addresses' in details:
            row['addresses'] = guest_addresses(client, guest, config)
    except ClusterError as exc:
        row.setdefault('errors', []).append(str(exc))
