# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Finding guests and nodes in one cluster's /cluster/resources: pure functions over that list.

Names match case-insensitively (PVE guest names are DNS names). No I/O: the caller reads the list once.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
from typing import Any, Dict, List, Optional, Tuple

from ansible_collections.pmx.multicluster.plugins.module_utils.errors import (
    DuplicateGuestError,
    GuestConflictError,
    GuestNotFoundError,
    NodeOfflineError,
)
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.kinds import KINDS, GuestKind, label_of
from ansible_collections.pmx.multicluster.plugins.module_utils.router import same_name

# Locks of a guest that is being made: its name may not be known yet (PVE lists a container being created
# without its hostname), so a guest with such a lock may be the one a run is about to create.
CREATING_LOCKS = ('create', 'clone')


def describe(kind: GuestKind, name: Optional[str] = None, vmid: Optional[int] = None) -> str:
    """"VM 'prod-web01' (vmid 100)", "VM 'prod-web01'" or "VM 100", for messages."""
    if name and vmid is not None:
        return "%s '%s' (vmid %s)" % (kind.label, name, vmid)
    if name:
        return "%s '%s'" % (kind.label, name)
    return '%s %s' % (kind.label, vmid)


def find(kind: GuestKind, resources: List[Dict], cluster: str, name: Optional[str] = None,
         vmid: Optional[int] = None) -> Optional[Dict]:
    """The guest's /cluster/resources entry, or None.

    :raises DuplicateGuestError: several guests of this kind carry the name (both vmids named).
    :raises GuestConflictError: name and vmid point at different guests, or the vmid is another type.
    """
    guests = [r for r in resources if r.get('type') in KINDS]
    by_vmid = None
    if vmid is not None:
        by_vmid = next((g for g in guests if int(g.get('vmid', -1)) == int(vmid)), None)
        if by_vmid is not None and by_vmid.get('type') != kind.type:
            raise GuestConflictError("cluster '%s': vmid %s is a %s ('%s'), not a %s" % (
                cluster, vmid, label_of(by_vmid.get('type')), by_vmid.get('name'), kind.label), cluster)
    by_name = None
    if name:
        named = [g for g in guests if g.get('type') == kind.type and same_name(g.get('name'), name)]
        if len(named) > 1:
            raise DuplicateGuestError(
                "cluster '%s' has %d %ss named '%s' (vmids %s); names must be unique per cluster. Give "
                "vmid: to pick one, or rename the others." % (
                    cluster, len(named), kind.label, name,
                    ', '.join(str(g.get('vmid')) for g in sorted(named, key=lambda g: int(g['vmid'])))), cluster)
        by_name = named[0] if named else None
    if name and vmid is not None:
        if by_vmid is not None and not same_name(by_vmid.get('name'), name):
            raise GuestConflictError(
                "cluster '%s': vmid %s is named '%s', not '%s'" % (cluster, vmid, by_vmid.get('name'), name), cluster)
        if by_vmid is None and by_name is not None:
            raise GuestConflictError(
                "cluster '%s': '%s' has vmid %s, not %s" % (cluster, name, by_name.get('vmid'), vmid), cluster)
    return by_vmid if vmid is not None else by_name


def find_source(kind: GuestKind, resources: List[Dict], cluster: str, source: Any) -> Dict:
    """The clone source (a template or guest) by name or vmid.

    :raises GuestNotFoundError: no such source, with the templates of the cluster listed.
    """
    text = str(source).strip()
    found = None
    if text.isdigit():
        found = find(kind, resources, cluster, vmid=int(text))
    if found is None:
        found = find(kind, resources, cluster, name=text)
    if found is None:
        templates = sorted(str(r.get('name')) for r in resources if r.get('type') == kind.type and r.get('template'))
        raise GuestNotFoundError("cluster '%s': clone source '%s' not found; templates there: %s"
                                 % (cluster, text, ', '.join(templates) or '(none)'), cluster, 404)
    return found


def source_type(resources: List[Dict], source: Any, default: str = 'qemu') -> str:
    """The type (qemu or lxc) of a clone source given by name or vmid, ``default`` when it is not found."""
    text = str(source).strip()
    return next((r.get('type') for r in resources if r.get('type') in KINDS and (
        same_name(r.get('name'), text) or (text.isdigit() and int(r.get('vmid', -1)) == int(text)))), default)


def nodes(resources: List[Dict]) -> Dict[str, Dict]:
    """The cluster's nodes by name."""
    return dict((r.get('node'), r) for r in resources if r.get('type') == 'node')


def check_node(resources: List[Dict], cluster: str, node: str, what: str = '') -> None:
    """:raises NodeOfflineError: the node is offline. :raises GuestConflictError: no such node."""
    known = nodes(resources)
    if node not in known:
        raise GuestConflictError("cluster '%s' has no node '%s'; its nodes: %s"
                                 % (cluster, node, ', '.join(sorted(known))), cluster)
    if known[node].get('status') != 'online':
        raise NodeOfflineError(
            "cluster '%s': node '%s'%s is %s; nothing was changed. Bring the node back or choose another one."
            % (cluster, node, what, known[node].get('status') or 'offline'), cluster)


def choose_node(resources: List[Dict], cluster: str, node: Optional[str] = None,
                default: Optional[str] = None) -> Tuple[str, str]:
    """(node, why): the one asked for, the cluster's default node, or the online node with most free memory."""
    if node:
        check_node(resources, cluster, node)
        return node, 'explicit'
    if default:
        check_node(resources, cluster, default, ' (the default node)')
        return default, 'cluster default node'
    online = [n for n in nodes(resources).values() if n.get('status') == 'online']
    if not online:
        raise NodeOfflineError("cluster '%s' has no online node" % cluster, cluster)
    best = max(online, key=lambda n: (int(n.get('maxmem') or 0) - int(n.get('mem') or 0),
                                      # ties: the first node by name, so the choice is stable
                                      [-ord(c) for c in n.get('node', '')]))
    return best['node'], 'most free memory'


def in_creation(kind: GuestKind, resources: List[Dict], name: Optional[str] = None, vmid: Optional[int] = None,
                exclude: Optional[int] = None, known: Optional[Dict[int, Optional[str]]] = None) -> List[Dict]:
    """Guests of this kind still being created or cloned that may turn out to be the one named (or ``vmid``).

    While PVE creates a guest its config holds only ``lock: create``: the listing shows no name, or a
    stand-in (``VM 106``, ``CT106``), so such a guest may be any name. A guest that already shows a
    real name counts only if it is this name; a guest with the requested vmid counts in any case.
    ``known``: vmid -> name of creations this process runs itself (a many-guest run's), named by it.
    """
    out = []
    for entry in resources:
        if entry.get('type') != kind.type or entry.get('vmid') is None or int(entry['vmid']) == exclude:
            continue
        if entry.get('lock') not in CREATING_LOCKS:
            continue
        shown = str(entry.get('name') or '')
        if known and known.get(int(entry['vmid'])):
            shown = str(known[int(entry['vmid'])])
        unnamed = not shown or re.fullmatch(r'(?:(?:VM|CT) ?)?%s' % int(entry['vmid']), shown) is not None
        if (vmid is not None and int(entry['vmid']) == int(vmid)) or (name and (unnamed or same_name(shown, name))):
            out.append(entry)
    return out
