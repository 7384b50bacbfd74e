# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pattern router: which cluster a guest belongs to, and why.

Priority: explicit ``cluster`` > the guest name's pattern > an existing guest
located by name or vmid > the default cluster. A route carries its reason
(``explicit``, ``pattern 'prod-*'``, ``located``, ``default``) so that every
front end can tell the user why a guest went where it went.

Two safety rules: a lookup that could not read every cluster cannot conclude
where a guest is (or that it is nowhere), so in strict mode (every write) the
router refuses instead of falling back; and names match case-insensitively
everywhere (patterns, the prefix map, the naming convention and the lookup),
because PVE guest names are DNS names.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import difflib
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Callable, Dict, List, Optional, Sequence

from ansible_collections.pmx.multicluster.plugins.module_utils.config import RegistryConfig
from ansible_collections.pmx.multicluster.plugins.module_utils.errors import (
    AmbiguousClusterSelectionError,
    ClusterNotFoundError,
    UnreadableClustersError,
)


def same_name(a: Optional[str], b: Optional[str]) -> bool:
    """Whether two guest names are the same name: PVE names are DNS names, so case does not count."""
    return a is not None and b is not None and str(a).lower() == str(b).lower()


# The config lock PVE leaves on the source of a move to another cluster that keeps the source (qm remote-migrate
# without --delete): the guest stays, stopped and locked, so that it is not started beside its copy.
MIGRATE_LOCK = 'migrate'


def kept_source(entry: Dict) -> bool:
    """Whether a /cluster/resources entry is the kept source of a finished move: stopped and locked ``migrate``."""
    return entry.get('lock') == MIGRATE_LOCK and entry.get('status') == 'stopped'


def live_clusters(entries: Dict[str, List[Dict]]) -> List[str]:
    """Of the clusters where a guest's name was found, those where it is live: not only kept sources of a move.

    After a move between clusters that kept the source, the name exists twice: the copy (live) and the source
    (stopped, locked ``migrate``). The copy is the guest; the kept source is not a second one.
    """
    return [cluster for cluster, hits in entries.items() if hits and not all(kept_source(g) for g in hits)]


@dataclass
class Located:
    """Where a guest with a given name or vmid exists, and which clusters could not be read to tell."""

    clusters: List[str] = field(default_factory=list)
    # cluster -> why it could not be read (the error's message)
    unreadable: Dict[str, str] = field(default_factory=dict)
    # cluster -> the matching /cluster/resources entries
    entries: Dict[str, List[Dict]] = field(default_factory=dict)


# A locator answers "in which clusters does a guest with this name / vmid exist, and which could not be read?".
Locator = Callable[[Optional[str], Optional[int]], Located]


@dataclass
class Route:
    """The chosen cluster and why it was chosen."""

    cluster: str
    reason: str
    # Clusters an existing guest was found in, when the router looked.
    located: List[str] = field(default_factory=list)
    # Clusters the lookup could not read (cluster -> error); only set on a non-strict route.
    unreadable: Dict[str, str] = field(default_factory=dict)
    # The guest's /cluster/resources entries in the chosen cluster, when it was located there.
    entries: List[Dict] = field(default_factory=list)
    # Clusters that hold only the kept source of a move to the chosen cluster (stopped, locked migrate).
    moved_from: List[str] = field(default_factory=list)

    @property
    def by_rule(self) -> bool:
        """True when a routing rule (a pattern, the prefix map or the naming convention) chose the cluster."""
        return self.reason not in ('explicit', 'located', 'default')

    def as_dict(self) -> Dict:
        return {'cluster': self.cluster, 'reason': self.reason}


def describe_target(name: Optional[str] = None, vmid: Optional[int] = None) -> str:
    return ("the guest named '%s'" % name) if name else ('the guest with vmid %s' % vmid)


def unreadable_error(what: str, found: Sequence[str], unreadable: Dict[str, str]) -> UnreadableClustersError:
    """The refusal when a lookup needed clusters it could not read: which, why, and what to do."""
    names = ', '.join("'%s'" % c for c in unreadable)
    why = '; '.join(unreadable.values())
    if found:
        seen = "it was found in cluster '%s', but it may exist in %s too" % (found[0], names)
        hint = 'Give cluster: %s explicitly to act on that one' % found[0]
    else:
        seen = 'it was not found in the clusters that answered'
        hint = 'Give cluster: explicitly to choose the cluster'
    return UnreadableClustersError(
        "cannot tell which cluster holds %s: cluster(s) %s could not be read (%s), and %s. Nothing was changed. "
        "%s, or run again once %s answers." % (what, names, why, seen, hint, names), unreadable)


class Router:
    """Select clusters from a RegistryConfig (no network access of its own)."""

    def __init__(self, config: RegistryConfig):
        self.config = config

    def resolve_cluster(self, name: str) -> str:
        """The configured cluster called ``name`` (also accepted in its upper-case ``_`` spelling).

        :raises ClusterNotFoundError: listing the known clusters and suggesting a close match.
        """
        if name in self.config.clusters:
            return name
        for known in self.config.clusters:
            if known.upper().replace('-', '_') == str(name).upper().replace('-', '_'):
                return known
        known = list(self.config.clusters)
        close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.5)
        if not close:
            lowered = dict((k.lower(), k) for k in known)
            close = [lowered[m] for m in difflib.get_close_matches(str(name).lower(), list(lowered), n=1, cutoff=0.5)]
        raise ClusterNotFoundError(name, known, close[0] if close else None)

    def pattern_matches(self, name: str) -> Dict[str, List[str]]:
        """Clusters whose routing rules match a guest name: cluster -> the rules that matched.

        Rules are each cluster's glob ``PATTERNS`` and the global prefix map
        ``PROXMOX_CLUSTER_PATTERNS``. Only when none matches does the naming
        convention apply: a name that starts with a cluster's name and ``-``.
        """
        matches: Dict[str, List[str]] = {}
        lowered = name.lower()
        for cluster in self.config.clusters.values():
            for pattern in cluster.patterns:
                if fnmatchcase(lowered, pattern.lower()):
                    matches.setdefault(cluster.name, []).append("pattern '%s'" % pattern)
        for prefix, cluster in self.config.prefix_patterns:
            if lowered.startswith(prefix.lower()):
                matches.setdefault(cluster, []).append("prefix '%s'" % prefix)
        if not matches:
            # The seed's convention, extended to hyphenated cluster names: the longest
            # cluster name that the guest name starts with, followed by '-'.
            prefixed = [c for c in self.config.clusters if lowered.startswith(c.lower() + '-')]
            if prefixed:
                cluster = max(prefixed, key=len)
                matches[cluster] = ["naming convention '%s-'" % cluster]
        return matches

    def select(self, cluster: Optional[str] = None, name: Optional[str] = None, vmid: Optional[int] = None,
               locate: Optional[Locator] = None, strict: bool = True) -> Route:
        """Choose the cluster for a guest.

        :param cluster: an explicit cluster name; wins over everything.
        :param name: the guest's name, matched against the routing patterns.
        :param vmid: the guest's id, used only to locate an existing guest.
        :param locate: when given, called as ``locate(name, vmid)`` to find existing
            guests if no pattern matched; without it the router never touches the network.
        :param strict: refuse when the lookup could not read a cluster (writes). Reads pass False
            and get the unread clusters in ``Route.unreadable``.
        :raises ClusterNotFoundError: ``cluster`` is not configured.
        :raises AmbiguousClusterSelectionError: the name matches several clusters' patterns,
            or the guest exists in several clusters.
        :raises UnreadableClustersError: (strict) the lookup could not read every cluster.
        """
        if cluster:
            return Route(self.resolve_cluster(cluster), 'explicit')
        if name:
            matches = self.pattern_matches(name)
            if len(matches) == 1:
                target, rules = next(iter(matches.items()))
                return Route(target, rules[0])
            if len(matches) > 1:
                detail = '; '.join('%s (%s)' % (c, ', '.join(r)) for c, r in matches.items())
                raise AmbiguousClusterSelectionError(
                    "the name '%s' matches the routing rules of several clusters: %s. Give cluster: explicitly, "
                    "or make the patterns not overlap." % (name, detail), list(matches))
        if locate is not None and (name or vmid is not None):
            located = locate(name, vmid)
            found = list(dict.fromkeys(located.clusters))
            what = ("name '%s'" % name) if name else ('vmid %s' % vmid)
            moved_from: List[str] = []
            if len(found) > 1 and name:
                # A guest moved to another cluster with its source kept: the live copy is the guest.
                live = live_clusters(dict((c, located.entries.get(c, [])) for c in found))
                if len(live) == 1:
                    moved_from = [c for c in found if c != live[0]]
                    found = live
            if len(found) > 1:
                raise AmbiguousClusterSelectionError(
                    "a guest with %s exists in several clusters: %s. Give cluster: explicitly."
                    % (what, ', '.join(found)), found)
            if located.unreadable and strict:
                raise unreadable_error(describe_target(name, vmid), found, located.unreadable)
            if found:
                return Route(found[0], 'located', found, dict(located.unreadable),
                             list(located.entries.get(found[0], [])), moved_from)
            return Route(self.config.default_cluster, 'default', unreadable=dict(located.unreadable))
        return Route(self.config.default_cluster, 'default')
