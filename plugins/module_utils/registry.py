# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ClusterRegistry: one API client per cluster, built lazily and cached for a TTL.

It also runs reads across clusters concurrently (``map``), answers "where
does this guest exist" for the router (``locate``) and gathers each
cluster's health (``validate_all_clusters``, from health.py). One cluster being
down degrades an answer, it does not fail it: ``map`` returns the error in
that cluster's slot, and with a ``deadline`` it does not wait for a slow one.
Its clients share one memory of the clusters that just failed to answer.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import functools
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from fnmatch import fnmatchcase
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from ansible_collections.pmx.multicluster.plugins.module_utils.client import FailureMemory, PveClient
from ansible_collections.pmx.multicluster.plugins.module_utils.config import ClusterConfig, RegistryConfig
from ansible_collections.pmx.multicluster.plugins.module_utils.errors import (
    ClusterConnectionError,
    ClusterError,
    ClusterNotFoundError,
    DuplicateGuestError,
    GuestConflictError,
    GuestNotFoundError,
    UnreadableClustersError,
)
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.kinds import KINDS
from ansible_collections.pmx.multicluster.plugins.module_utils.router import (
    Located,
    Route,
    Router,
    describe_target,
    kept_source,
    live_clusters,
    same_name,
    unreadable_error,
)

GUEST_TYPES = tuple(KINDS)

MAX_WORKERS = 16


class ClusterResult:
    """The outcome of a per-cluster call: ``value`` or ``error`` (a ClusterError)."""

    __slots__ = ('cluster', 'value', 'error')

    def __init__(self, cluster: str, value: Any = None, error: Optional[ClusterError] = None):
        self.cluster = cluster
        self.value = value
        self.error = error

    @property
    def ok(self) -> bool:
        return self.error is None


class ClusterRegistry:
    """All configured clusters, their clients and the router."""

    def __init__(self, config: RegistryConfig, client_factory: Optional[Callable[[ClusterConfig], Any]] = None,
                 clock: Callable[[], float] = time.monotonic, failures: Optional[FailureMemory] = None,
                 lookup_deadline: Optional[float] = None):
        """``failures``: the memory of clusters that failed to answer, shared by the default clients and
        ``map`` (by default ``FailureMemory()``: 30 s). ``lookup_deadline``: seconds a lookup across the
        clusters (``locate``) waits for them; a cluster that does not answer in time counts as unreadable
        (long-running front ends set it; None waits as long as the clients' timeouts)."""
        self.config = config
        self.lookup_deadline = lookup_deadline
        self.router = Router(config)
        self.failures = failures if failures is not None else FailureMemory()
        self._factory = client_factory or functools.partial(PveClient, failures=self.failures)
        self._clock = clock
        self._clients: Dict[str, Tuple[Any, float]] = {}
        self._lock = threading.Lock()
        self._build_locks: Dict[str, Any] = {}

    @property
    def names(self) -> List[str]:
        return self.config.names

    def cluster(self, name: str) -> ClusterConfig:
        """The configuration of a cluster (by its name or its upper-case spelling)."""
        return self.config.clusters[self.router.resolve_cluster(name)]

    def client(self, name: str) -> Any:
        """The cached client of a cluster, rebuilt when older than the cache TTL."""
        name = self.router.resolve_cluster(name)
        with self._lock:
            build_lock = self._build_locks.setdefault(name, threading.Lock())
        # One lock per cluster: a slow client build never delays the other clusters.
        with build_lock:
            now = self._clock()
            cached = self._clients.get(name)
            if cached is not None and now - cached[1] < self.config.cache_ttl:
                return cached[0]
            client = self._factory(self.config.clusters[name])
            with self._lock:
                self._clients[name] = (client, now)
            return client

    def invalidate(self, name: Optional[str] = None) -> None:
        """Forget the cached client of one cluster (or of all)."""
        with self._lock:
            if name is None:
                self._clients.clear()
            else:
                self._clients.pop(name, None)

    def match(self, selectors: Optional[Iterable[str]] = None) -> List[str]:
        """Cluster names selected by names or globs (all when empty), in configuration order.

        :raises ClusterNotFoundError: a plain name (not a glob) that is not configured,
            or a glob that matches nothing.
        """
        selectors = [s for s in (selectors or []) if s]
        if not selectors:
            return self.names
        chosen = []
        for selector in selectors:
            if any(c in selector for c in '*?['):
                hits = [n for n in self.names if fnmatchcase(n, selector)]
                if not hits:
                    raise ClusterNotFoundError(selector, self.names)
            else:
                hits = [self.router.resolve_cluster(selector)]
            chosen.extend(h for h in hits if h not in chosen)
        return [n for n in self.names if n in chosen]

    def map(self, func: Callable[[str, Any], Any], names: Optional[Iterable[str]] = None,
            max_workers: int = MAX_WORKERS, deadline: Optional[float] = None) -> Dict[str, ClusterResult]:
        """Call ``func(name, client)`` for each cluster concurrently; errors are kept per cluster.

        A cluster remembered as failed (``self.failures``) is not asked. With ``deadline`` (seconds), a
        cluster whose call has not returned by then gets the error "did not answer within Ns" and is
        remembered as failed; its call is not waited for (it ends in the background with its timeout).
        """
        names = list(names) if names is not None else self.names

        def one(name):
            try:
                self.failures.check(name)
                return ClusterResult(name, func(name, self.client(name)))
            except ClusterError as exc:
                return ClusterResult(name, error=exc)

        if not names or (len(names) == 1 and deadline is None):
            return dict((n, one(n)) for n in names)
        pool = ThreadPoolExecutor(max_workers=min(max_workers, len(names)))
        try:
            futures = [pool.submit(one, n) for n in names]
            done = wait(futures, timeout=deadline)[0]
        finally:
            pool.shutdown(wait=False)
        results = {}
        for name, future in zip(names, futures):
            if future not in done and future.cancel():
                # Still queued (more clusters than workers): never asked, so not remembered as failed.
                results[name] = ClusterResult(name, error=ClusterConnectionError(
                    "cluster '%s' was not asked within %gs (too many clusters at once)" % (name, deadline), name))
            elif future.done():  # in time, or just after the deadline
                results[name] = future.result()
            else:
                self.failures.remember(name, 'no answer within the %gs deadline' % deadline)
                results[name] = ClusterResult(name, error=ClusterConnectionError(
                    "cluster '%s' did not answer within %gs; it is left out of this answer" % (name, deadline),
                    name))
        return results

    # ------------------------------------------------------------- routing

    def guests(self, names: Optional[Iterable[str]] = None, deadline: Optional[float] = None
               ) -> Dict[str, ClusterResult]:
        """Every guest (``/cluster/resources?type=vm``) of each cluster, concurrently (see ``map``)."""
        return self.map(lambda name, client: client.get('cluster/resources', type='vm') or [], names,
                        deadline=deadline)

    def locate(self, name: Optional[str] = None, vmid: Optional[int] = None,
               names: Optional[Iterable[str]] = None) -> Located:
        """Where a guest with this name (or, without a name, this vmid) exists, in all clusters (or ``names``).

        Names match case-insensitively. A cluster that cannot be read is not skipped silently: it is
        listed in ``Located.unreadable`` with its error, so that no caller can take "not found there"
        for granted.
        """
        found = Located()
        for cluster, result in self.guests(names, deadline=self.lookup_deadline).items():
            if not result.ok:
                found.unreadable[cluster] = str(result.error)
                continue
            hits = [guest for guest in result.value if guest.get('type') in GUEST_TYPES and (
                same_name(guest.get('name'), name) if name
                else vmid is not None and int(guest.get('vmid', -1)) == int(vmid))]
            if hits:
                found.clusters.append(cluster)
                found.entries[cluster] = hits
        return found

    def select(self, cluster: Optional[str] = None, name: Optional[str] = None, vmid: Optional[int] = None,
               lookup: bool = True, strict: bool = True) -> Route:
        """The router's choice; with ``lookup`` an existing guest is located when no pattern matches.

        ``strict`` (for writes): refuse when the lookup could not read a cluster; reads pass False and
        find the unread clusters in ``Route.unreadable``.
        """
        return self.router.select(cluster=cluster, name=name, vmid=vmid, locate=self.locate if lookup else None,
                                  strict=strict)

    def check_not_elsewhere(self, route: Route, name: Optional[str], label: str = 'guest') -> None:
        """Before creating ``name`` where a routing rule sent it: no other cluster may already have it.

        A guest that was moved or restored to another cluster keeps its name; creating it again where its
        name points would make a second one. An explicit ``cluster:`` (or a route found by looking at every
        cluster) skips this check.

        :raises GuestConflictError: a guest of that name exists in another cluster (where is named).
        :raises UnreadableClustersError: another cluster could not be read to tell.
        """
        others = [n for n in self.names if n != route.cluster]
        if not name or not route.by_rule or not others:
            return
        found = self.locate(name=name, names=others)
        if found.clusters:
            where = '; '.join("cluster '%s' (%s)" % (cluster, ', '.join(
                '%s vmid %s on node %s'
                % ('container' if g.get('type') == 'lxc' else 'VM', g.get('vmid'), g.get('node'))
                for g in found.entries[cluster])) for cluster in found.clusters)
            raise GuestConflictError(
                "the %s '%s' does not exist in cluster '%s', where its name routes it (%s), but a guest of that name "
                "exists in %s: it may have been moved or restored there. Nothing was changed. Manage it there with "
                "cluster: %s, or give cluster: %s explicitly to create a second one deliberately."
                % (label, name, route.cluster, route.reason, where, found.clusters[0], route.cluster), route.cluster)
        if found.unreadable:
            names = ', '.join("'%s'" % c for c in found.unreadable)
            raise UnreadableClustersError(
                "cannot check that no other cluster already has a guest named '%s' before creating it in cluster "
                "'%s' (%s): cluster(s) %s could not be read (%s). Nothing was changed. Give cluster: %s explicitly "
                "to create it without this check, or run again once %s answers."
                % (name, route.cluster, route.reason, names, '; '.join(found.unreadable.values()), route.cluster,
                   names), found.unreadable)

    def follow_move(self, route: Route, name: Optional[str], entry: Optional[Dict]) -> Optional[Route]:
        """Where a guest moved to, when a routing rule sent it to a cluster that no longer holds it live.

        After a move between clusters the name's pattern may still point at the old cluster, which holds
        nothing (the source was deleted) or only the kept source (stopped, locked ``migrate``). When exactly one
        other cluster holds the name live, that is the guest: a route there (``located``, ``moved_from`` the old
        cluster). None when the route was not by a rule, the entry is live, or no single other cluster has it.

        :raises UnreadableClustersError: another cluster could not be read to tell.
        """
        if not name or not route.by_rule or (entry is not None and not kept_source(entry)):
            return None
        others = [n for n in self.names if n != route.cluster]
        if not others:
            return None
        found = self.locate(name=name, names=others)
        live = live_clusters(found.entries)
        if len(live) == 1 and not found.unreadable:
            return Route(live[0], 'located', [live[0]], entries=list(found.entries[live[0]]),
                         moved_from=[route.cluster])
        if entry is not None and found.unreadable:
            # The kept source says the guest moved: where to cannot be told without the unread clusters.
            raise unreadable_error(describe_target(name), [], found.unreadable)
        return None

    def find_guest(self, name: Optional[str] = None, vmid: Optional[int] = None, cluster: Optional[str] = None,
                   strict: bool = True) -> Tuple[Route, Any, Dict]:
        """(route, client, /cluster/resources entry) of an existing guest of either type, routed as the modules route.

        :param strict: for a write: refuse when the route depends on a cluster that could not be read. A read
            passes False; ``route.unreadable`` then lists what could not be read.
        :raises GuestNotFoundError: no such guest where it was routed (the unread clusters are named).
        :raises DuplicateGuestError: several guests of the cluster carry the name.
        """
        if not name and vmid is None:
            raise GuestConflictError('give the guest name or vmid')
        route = self.select(cluster=cluster, name=name, vmid=vmid, lookup=True, strict=strict)
        client = self.client(route.cluster)
        entries = route.entries or client.get('cluster/resources', type='vm') or []
        found = [g for g in entries if g.get('type') in GUEST_TYPES
                 and (vmid is None or int(g.get('vmid', -1)) == int(vmid))
                 and (not name or same_name(g.get('name'), name))]
        what = ' '.join(filter(None, ["'%s'" % name if name else '', '(vmid %s)' % vmid if vmid is not None else '']))
        if vmid is None and len(found) < 2:
            # A guest moved away from where its name points: follow it (never to the kept source).
            moved = self.follow_move(route, name, found[0] if found else None)
            if moved is not None:
                return moved, self.client(moved.cluster), moved.entries[0]
        if not found:
            unread = ''
            if route.unreadable:
                unread = '; it may be in cluster(s) %s, which could not be read (%s)' % (
                    ', '.join("'%s'" % c for c in route.unreadable), '; '.join(route.unreadable.values()))
            raise GuestNotFoundError("cluster '%s' (%s): no guest %s there%s"
                                     % (route.cluster, route.reason, what, unread), route.cluster, 404)
        if len(found) > 1:
            raise DuplicateGuestError("cluster '%s' has %d guests named %s (vmids %s); give vmid to pick one"
                                      % (route.cluster, len(found), what, ', '.join(str(g['vmid']) for g in found)),
                                      route.cluster)
        return route, client, found[0]

    # -------------------------------------------------------------- health

    def validate_all_clusters(self, names: Optional[Iterable[str]] = None, storages: bool = False,
                              deadline: Optional[float] = None) -> List[Dict]:
        """Health of each cluster, concurrently: ``health.clusters_health`` over this registry (kept for callers)."""
        from ansible_collections.pmx.multicluster.plugins.module_utils.health import clusters_health
        return clusters_health(self, names, storages=storages, deadline=deadline)
