# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Many guests at once: bounds per cluster and per node, a runner that goes on past a failure, and the
convergence of a list of guests (pmx_guests) over the guest manager.

Each guest is routed, read, planned and applied exactly as pmx_vm / pmx_lxc do it (``GuestManager.ensure``);
this file adds only the concurrency. A guest holds a slot of its cluster and of each node its tasks run on
while its plan is applied (reads and plans with nothing to do take none), so at any moment a cluster runs at
most ``per_cluster`` and a node at most ``per_node`` of this run's tasks. One guest failing does not stop the
others; its error is kept in its result.

Defaults: Proxmox VE itself starts at most ``max_workers`` bulk tasks per node (datacenter.cfg(5): "how many
workers (per node) are maximal started on actions like 'stopall VMs' or task from the ha-manager"; when unset,
the node's CPU threads up to 8, per the API viewer's ``POST /nodes/{node}/stopall``). A clone copies disks, so
``per_node`` is half that ceiling, 4; ``per_cluster`` 8 keeps a storage the cluster's nodes share (Ceph, NFS) at
8 copies at a time. Both are options.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

from ansible_collections.pmx.multicluster.plugins.module_utils.errors import ClusterError
from ansible_collections.pmx.multicluster.plugins.module_utils.guests.executor import Creations
from ansible_collections.pmx.multicluster.plugins.module_utils.guests.manager import GuestManager
from ansible_collections.pmx.multicluster.plugins.module_utils.guests.spec import GuestSpec
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.kinds import GuestKind
from ansible_collections.pmx.multicluster.plugins.module_utils.registry import ClusterRegistry

DEFAULT_PER_CLUSTER = 8
DEFAULT_PER_NODE = 4
# Threads of one run: guests beyond this wait for a thread (reads included), whatever the bounds.
MAX_WORKERS = 32


class Bounds:
    """Slots per cluster and per node; ``slot(cluster, nodes)`` holds one of the cluster's and one of each node's."""

    def __init__(self, per_cluster: int = DEFAULT_PER_CLUSTER, per_node: int = DEFAULT_PER_NODE):
        for option, value in (('per_cluster', per_cluster), ('per_node', per_node)):
            if int(value) < 1:
                raise ClusterError('%s must be at least 1, got %s' % (option, value))
        self.per_cluster = int(per_cluster)
        self.per_node = int(per_node)
        self._lock = threading.Lock()
        self._slots: Dict[tuple, threading.Semaphore] = {}

    def _semaphore(self, key: tuple, size: int) -> threading.Semaphore:
        with self._lock:
            if key not in self._slots:
                self._slots[key] = threading.Semaphore(size)
            return self._slots[key]

    @contextmanager
    def slot(self, cluster: str, nodes: Sequence[str] = ()) -> Iterator[None]:
        """Hold a slot of ``cluster`` and of each of ``nodes``; taken in one order (cluster, then nodes sorted),
        so that two guests never wait for each other's slots."""
        wanted = [self._semaphore(('cluster', cluster), self.per_cluster)]
        wanted += [self._semaphore(('node', cluster, node), self.per_node) for node in sorted(set(nodes))]
        held = []
        try:
            for semaphore in wanted:
                semaphore.acquire()
                held.append(semaphore)
            yield
        finally:
            for semaphore in reversed(held):
                semaphore.release()

    def as_dict(self) -> Dict[str, int]:
        return {'per_cluster': self.per_cluster, 'per_node': self.per_node}


class GuestsFailed(ClusterError):
    """Some guests of a many-guest task failed: the task fails, with every guest's result (``result``) beside the
    message."""

    def __init__(self, message: str, result: Dict[str, Any]):
        super(GuestsFailed, self).__init__(message)
        self.result = result


class NotBegun(Exception):
    """Raised inside a slot when the run stopped at its failure limit while the guest waited for the slot."""


class Runner:
    """Runs one job per item on a pool of threads; stops starting new ones once more than ``max_failures`` failed.

    A job returns a result dict with ``failed``; an item whose job was not begun because the run stopped gets
    ``skipped(item)``. ``serial``: items in batches of that many, each batch finished before the next begins
    (rolling mode); without it all are submitted at once and the bounds alone pace them.
    """

    def __init__(self, workers: int = MAX_WORKERS, max_failures: Optional[int] = None):
        self.workers = max(1, min(int(workers), MAX_WORKERS))
        self.max_failures = max_failures
        self.failed = 0
        self._lock = threading.Lock()

    @property
    def stopped(self) -> bool:
        return self.max_failures is not None and self.failed > self.max_failures

    def gate(self, bounds: 'Bounds') -> Callable:
        """``bounds.slot`` that, once the slot is held, raises NotBegun if the run stopped meanwhile: a guest
        that waited for its slot writes nothing after the failure limit was passed."""
        @contextmanager
        def slot(cluster: str, nodes: Sequence[str] = ()) -> Iterator[None]:
            with bounds.slot(cluster, nodes):
                if self.stopped:
                    raise NotBegun()
                yield
        return slot

    def run(self, items: Sequence[Any], job: Callable[[Any], Dict], skipped: Callable[[Any], Dict],
            serial: Optional[int] = None) -> List[Dict]:
        items = list(items)
        size = int(serial) if serial else len(items)
        results: List[Dict] = []
        for start in range(0, len(items), max(1, size)):
            batch = items[start:start + max(1, size)]
            if self.stopped:
                results.extend(skipped(item) for item in batch)
                continue
            results.extend(self._batch(batch, job, skipped))
        return results

    def _batch(self, items: List[Any], job: Callable[[Any], Dict], skipped: Callable[[Any], Dict]) -> List[Dict]:
        def one(item):
            if self.stopped:
                return skipped(item)
            try:
                result = job(item)
            except NotBegun:
                return skipped(item)
            if result.get('failed'):
                with self._lock:
                    self.failed += 1
            return result

        if len(items) <= 1 or self.workers == 1:
            return [one(item) for item in items]
        with ThreadPoolExecutor(max_workers=min(self.workers, len(items))) as pool:
            return list(pool.map(one, items))


def failure(error: ClusterError, scrub: Callable[[str], str] = str) -> Dict[str, Any]:
    """A guest's error as its result carries it: the message and ``ClusterError.details()``."""
    return dict(error.details(), msg=scrub(str(error)))


def summarize(results: Sequence[Dict], bounds: Optional[Bounds] = None) -> Dict[str, Any]:
    """Counts over the per-guest results: total, changed, ok, failed, skipped, and per cluster."""
    summary: Dict[str, Any] = {'total': len(results), 'changed': 0, 'ok': 0, 'failed': 0, 'skipped': 0,
                               'clusters': {}}
    for result in results:
        outcome = 'failed' if result.get('failed') else 'skipped' if result.get('skipped') else 'ok'
        summary[outcome] += 1
        summary['changed'] += bool(result.get('changed'))
        row = summary['clusters'].setdefault(result.get('cluster') or '(not routed)',
                                             {'total': 0, 'changed': 0, 'failed': 0, 'skipped': 0})
        row['total'] += 1
        row['changed'] += bool(result.get('changed'))
        row['failed'] += outcome == 'failed'
        row['skipped'] += outcome == 'skipped'
    if bounds is not None:
        summary.update(bounds.as_dict())
    return summary


def failure_message(what: str, results: Sequence[Dict], shown: int = 5) -> str:
    """One line naming the failed guests (the first ``shown`` with their errors)."""
    failed = [r for r in results if r.get('failed')]
    skipped = sum(1 for r in results if r.get('skipped'))
    parts = ['%s%s: %s' % (r.get('name') or r.get('vmid'), " (cluster '%s')" % r['cluster'] if r.get('cluster') else '',
                           (r.get('error') or {}).get('msg')) for r in failed[:shown]]
    more = (' and %d more' % (len(failed) - shown)) if len(failed) > shown else ''
    rest = ('; %d not begun (the run stopped at the failure limit)' % skipped) if skipped else ''
    return '%d of %d %s failed: %s%s%s. The others are in the result (guests).' % (
        len(failed), len(results), what, '; '.join(parts), more, rest)


# ------------------------------------------------------------------ many guests converged (pmx_guests)

class RunRegistry(ClusterRegistry):
    """The registry as one many-guest run sees it: for the lookups across clusters (routing a name no pattern
    matches, and the check that a guest about to be created is in no other cluster), each cluster's guest list is
    read once per run, when first needed, instead of once per guest.

    The guest's own cluster is still read fresh by each guest (the executor's reads, which the safety of two runs
    creating one name relies on). The same name in two entries must name an explicit cluster in each
    (``ansible_module.guest_entries``), so that no guest of the run is missed by another's check.
    """

    def __init__(self, registry: ClusterRegistry,  # pylint: disable=super-init-not-called
                 check_route: Optional[Callable[[Any], None]] = None):
        # The same configuration, clients, locks and failure memory as the task's registry.
        self.__dict__.update(registry.__dict__)
        self._seen: Dict[str, Any] = {}
        self._seen_lock = threading.Lock()
        self._check_route = check_route

    def _checked(self, route):
        if route is not None and self._check_route is not None:
            self._check_route(route)  # raises ClusterError: this guest fails, nothing of it is written
        return route

    def select(self, *args, **kwargs):
        """The router's choice, then ``check_route`` on it (the MCP server: may this server write there?)."""
        return self._checked(ClusterRegistry.select(self, *args, **kwargs))

    def follow_move(self, *args, **kwargs):
        return self._checked(ClusterRegistry.follow_move(self, *args, **kwargs))

    def guests(self, names=None, deadline=None):
        names = list(names) if names is not None else self.names
        with self._seen_lock:
            missing = [n for n in names if n not in self._seen]
            fetched = ClusterRegistry.guests(self, missing, deadline) if missing else {}
            for name, result in fetched.items():
                if result.ok:  # an unreadable cluster is asked again by the next lookup
                    self._seen[name] = result
            return dict((n, self._seen[n] if n in self._seen else fetched[n]) for n in names)


@dataclass
class Entry:
    """One guest of the list: its kind, state and spec."""

    index: int
    kind: GuestKind
    state: str
    spec: GuestSpec

    @property
    def type(self) -> str:
        return 'lxc' if self.kind.type == 'lxc' else 'vm'


def listed_twice(entries: Sequence[Entry], label: str = 'guests') -> List[str]:
    """A problem for each entry whose name an earlier entry has too, unless both name different clusters.

    One run's checks across clusters read each cluster once (RunRegistry): they would not see another entry's new
    guest of the same name, so the same name on several clusters needs an explicit, different cluster in each.
    """
    problems, seen = [], {}
    for entry in entries:
        key, cluster = str(entry.spec.name).lower(), entry.spec.cluster
        earlier = seen.setdefault(key, [])
        if earlier and (not cluster or any(c is None or c == cluster for i, c in earlier)):
            problems.append('%s[%d] (%s) is listed twice (also %s[%d]); the same name on several clusters needs an '
                            'explicit cluster in each entry' % (label, entry.index, entry.spec.name, label,
                                                                earlier[0][0]))
            continue
        earlier.append((entry.index, cluster))
    return problems


def converge(registry: Any, entries: Sequence[Entry], check_mode: bool = False, bounds: Optional[Bounds] = None,
             stop_on_failure: bool = False, scrub: Callable[[str], str] = str,
             manager: Callable[..., GuestManager] = GuestManager,
             check_route: Optional[Callable[[Any], None]] = None) -> List[Dict]:
    """Bring every entry to its state, concurrently within ``bounds``; one result per entry, in order.

    ``check_route(route)`` is called on each guest's route before anything of it is read or written; a
    ClusterError it raises is that guest's failure.

    A result is the guest manager's (cluster, route_reason, changed, plan, tasks, diff...) with ``name``,
    ``type``, ``failed``, ``skipped`` and ``error`` (None, or the failure as data). With ``stop_on_failure``
    no guest is begun after the first failure (those are ``skipped``).
    """
    bounds = bounds or Bounds()
    registry = RunRegistry(registry, check_route)
    runner = Runner(MAX_WORKERS, max_failures=0 if stop_on_failure else None)
    gate = runner.gate(bounds)
    creations = Creations()  # the run's guests know each other's creations: no waiting for, no racing with them

    def base(entry: Entry) -> Dict[str, Any]:
        return {'name': entry.spec.name, 'type': entry.type, 'state': entry.state, 'cluster': entry.spec.cluster,
                'route_reason': None, 'vmid': entry.spec.vmid, 'changed': False, 'plan': [], 'tasks': [],
                'warnings': [], 'error': None, 'failed': False, 'skipped': False}

    def job(entry: Entry) -> Dict[str, Any]:
        out = base(entry)
        try:
            result = manager(registry, entry.kind, check_mode=check_mode, creations=creations).ensure(
                entry.state, entry.spec, gate=gate)
        except ClusterError as exc:
            out.update(failed=True, error=failure(exc, scrub), cluster=exc.cluster or entry.spec.cluster)
            return out
        out.update(result)
        return out

    def skipped(entry: Entry) -> Dict[str, Any]:
        return dict(base(entry), skipped=True)

    return runner.run(entries, job, skipped)
