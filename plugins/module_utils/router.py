# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pattern router: which cluster a guest belongs to, and why.

Priority: explicit ``cluster`` > the guest name's pattern > an existing guest
located by name or vmid > the default cluster. A route carries its reason
(``explicit``, ``pattern 'prod-*'``, ``located``, ``default``) so that every
front end can tell the user why a guest went where it went.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import difflib
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Callable, Dict, List, Optional, Sequence

from ansible_collections.pmx.multicluster.plugins.module_utils.config import RegistryConfig
from ansible_collections.pmx.multicluster.plugins.module_utils.errors import (
    AmbiguousClusterSelectionError, ClusterNotFoundError)

# A locator answers "in which clusters does a guest with this name / vmid exist?".
Locator = Callable[[Optional[str], Optional[int]], Sequence[str]]


@dataclass
class Route:
    """The chosen cluster and why it was chosen."""

    cluster: str
    reason: str
    # Clusters an existing guest was found in, when the router looked.
    located: List[str] = field(default_factory=list)

    def as_dict(self) -> Dict:
        return {'cluster': self.cluster, 'reason': self.reason}


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
        for cluster in self.config.clusters.values():
            for pattern in cluster.patterns:
                if fnmatchcase(name, pattern):
                    matches.setdefault(cluster.name, []).append("pattern '%s'" % pattern)
        for prefix, cluster in self.config.prefix_patterns:
            if name.startswith(prefix):
                matches.setdefault(cluster, []).append("prefix '%s'" % prefix)
        if not matches:
            # The seed's convention, extended to hyphenated cluster names: the longest
            # cluster name that the guest name starts with, followed by '-'.
            lowered = name.lower()
            prefixed = [c for c in self.config.clusters if lowered.startswith(c.lower() + '-')]
            if prefixed:
                cluster = max(prefixed, key=len)
                matches[cluster] = ["naming convention '%s-'" % cluster]
        return matches

    def select(self, cluster: Optional[str] = None, name: Optional[str] = None, vmid: Optional[int] = None,
               locate: Optional[Locator] = None) -> Route:
        """Choose the cluster for a guest.

        :param cluster: an explicit cluster name; wins over everything.
        :param name: the guest's name, matched against the routing patterns.
        :param vmid: the guest's id, used only to locate an existing guest.
        :param locate: when given, called as ``locate(name, vmid)`` to find existing
            guests if no pattern matched; without it the router never touches the network.
        :raises ClusterNotFoundError: ``cluster`` is not configured.
        :raises AmbiguousClusterSelectionError: the name matches several clusters' patterns,
            or the guest exists in several clusters.
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
            found = list(dict.fromkeys(locate(name, vmid)))
            what = ("name '%s'" % name) if name else ('vmid %s' % vmid)
            if len(found) == 1:
                return Route(found[0], 'located', found)
            if len(found) > 1:
                raise AmbiguousClusterSelectionError(
                    "a guest with %s exists in several clusters: %s. Give cluster: explicitly."
                    % (what, ', '.join(found)), found)
        return Route(self.config.default_cluster, 'default')
