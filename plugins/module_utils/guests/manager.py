# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""GuestManager: one guest brought to a state across the registry's clusters. ``ensure`` = read, plan, apply.

1. Check what needs no cluster (name, vmid, config keys, property strings); route (strictly: a lookup that
   could not read every cluster is refused); read the cluster's guests once, waiting for a guest another
   run is still creating; read the guest's config when the plan needs it.
2. Plan (``planner.plan_guest``, pure). A create by pattern is first checked against the other clusters.
3. Check mode: the plan is the answer. Otherwise the executor applies it; when it meets another run's
   guest of the same name, that one is planned for and managed instead.
4. The result is built here, in one place, from the plan and what the executor did.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from ansible_collections.pmx.multicluster.plugins.module_utils.guests.executor import Creations, Executor, Outcome
from ansible_collections.pmx.multicluster.plugins.module_utils.guests.lookup import (
    CREATING_LOCKS,
    check_node,
    choose_node,
    describe,
    find,
    find_source,
)
from ansible_collections.pmx.multicluster.plugins.module_utils.guests.planner import (
    ClusterDefaults,
    Current,
    Plan,
    plan_guest,
)
from ansible_collections.pmx.multicluster.plugins.module_utils.guests.spec import GuestSpec
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.checks import (
    check_config_keys,
    check_guest_name,
    check_property_strings,
    check_vmid,
)
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.kinds import QEMU, GuestKind
from ansible_collections.pmx.multicluster.plugins.module_utils.router import kept_source
from ansible_collections.pmx.multicluster.plugins.module_utils.tasks import LockedWriter


def check_spec(kind: GuestKind, spec: GuestSpec) -> None:
    """What can be checked without the cluster: name, vmid, raw config keys and property strings."""
    check_guest_name(spec.name, kind.label)
    check_vmid(spec.vmid)
    check_config_keys(kind, spec.config)
    check_property_strings(kind, spec.config)


class GuestManager:
    """The lifecycle of guests of one kind, across the registry's clusters."""

    def __init__(self, registry, kind: GuestKind = QEMU, check_mode: bool = False,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 creations: Optional[Creations] = None):
        """``creations``: the creations in flight shared by the guests of one many-guest run (see Creations)."""
        self.registry = registry
        self.kind = kind
        self.check_mode = check_mode
        self.creations = creations
        self._sleep = sleep
        self._clock = clock

    # ------------------------------------------------------------ ensure = read, plan, apply

    def prepare(self, state: str, spec: GuestSpec, route=None) -> Tuple[Any, Executor, Current, Plan]:
        """Route, read and plan, writing nothing: (route, executor, current, plan). The MCP server's previews."""
        check_spec(self.kind, spec)
        if route is None:
            route = self.registry.select(cluster=spec.cluster, name=spec.name, vmid=spec.vmid, lookup=True)
        cluster = route.cluster
        conf = self.registry.cluster(cluster)
        defaults = ClusterDefaults(node=getattr(conf, 'default_node', None),
                                   storage=getattr(conf, 'default_storage', None) or spec.fallback_storage,
                                   bridge=getattr(conf, 'default_bridge', None) or spec.fallback_bridge)
        executor = Executor(self.registry.client(cluster), cluster, self.kind, spec, defaults.storage,
                            defaults.bridge, self._sleep, self._clock, self.creations)
        resources = executor.resources()
        guest = find(self.kind, resources, cluster, spec.name, spec.vmid)
        if guest is None or guest.get('lock') in CREATING_LOCKS:
            # A create or clone still running (an interrupted run's, or another run's at this moment) may be this
            # very guest: wait for it to finish, then look again, so that it is never made twice.
            resources = executor.wait_for_creations(resources)
            guest = find(self.kind, resources, cluster, spec.name, spec.vmid)
        if guest is not None and spec.vmid is None and kept_source(guest):
            # The name's pattern points here, but the guest was moved to another cluster and this is its kept source.
            moved = self.registry.follow_move(route, spec.name, guest)
            if moved is not None:
                return self.prepare(state, spec, moved)
        current = self._current(executor, guest, state, spec, resources)
        plan = plan_guest(self.kind, state, spec, current, resources, cluster, defaults)
        if plan.steps and plan.steps[0].action in ('create', 'clone'):
            self.registry.check_not_elsewhere(route, spec.name, self.kind.label)
        return route, executor, current, plan

    def ensure(self, state: str, spec: GuestSpec, route=None, gate=None) -> Dict:
        """Bring one guest to ``state`` (present, absent, started, stopped, restarted, template).

        :param route: a route the caller already chose (the MCP server checks its write settings against it
            first); by default the guest is routed here, strictly.
        :param gate: ``gate(cluster, nodes)``, a context manager held while a plan with steps is applied (the
            many-guest task's bounds per cluster and per node; ``nodes``: where the plan's tasks run).
        """
        route, executor, current, plan = self.prepare(state, spec, route)
        if self.check_mode:
            vmid = None
            if plan.steps and plan.steps[0].action in ('create', 'clone') and spec.vmid is None:
                vmid = executor.next_vmid()
            return self.result(route, spec, plan, current, None, vmid)
        if gate is None or not plan.steps:
            return self._apply(state, spec, route, executor, current, plan)
        nodes = set(filter(None, [plan.node, (plan.clone_source or {}).get('node'),
                                  (current.guest or {}).get('node')]))
        with gate(route.cluster, sorted(nodes)):
            return self._apply(state, spec, route, executor, current, plan)

    def _apply(self, state: str, spec: GuestSpec, route, executor: Executor, current: Current, plan: Plan) -> Dict:
        outcome = executor.apply(plan, dict(current.guest) if current.guest else None)
        while outcome.continue_with is not None:
            # Another run's guest of this name (it made it at the same moment): manage that one, as if found.
            guest = executor.adopt(outcome.continue_with)
            resources = executor.resources()
            current = self._current(executor, guest, state, spec, resources)
            plan = plan_guest(self.kind, state, spec, current, resources, route.cluster,
                              ClusterDefaults(None, executor.storage, executor.bridge))
            outcome = executor.apply(plan, guest)
        return self.result(route, spec, plan, current, outcome)

    def _current(self, executor: Executor, guest: Optional[Dict], state: str, spec: GuestSpec,
                 resources: List[Dict]) -> Current:
        """The guest as the planner needs it: its config only when the plan compares or shows it.

        Its node is checked first: a guest on an offline node cannot be read (PVE answers 595).
        """
        if guest is None:
            return Current()
        check_node(resources, executor.cluster, guest['node'], ' of %s' % describe(self.kind, guest.get('name'),
                                                                                   guest.get('vmid')))
        if not (spec.update or spec.restart_on_change or state == 'absent'):
            return Current(guest=dict(guest))
        read = executor.read(guest)
        return Current(guest=dict(guest), config=read['config'], effective=read['effective'], pending=read['pending'])

    def result(self, route, spec: GuestSpec, plan: Plan, current: Current, outcome: Optional[Outcome],
               vmid: Optional[int] = None) -> Dict:
        """The module's result (and the MCP server's): the plan, and what applying it did."""
        applied = outcome is not None
        guest = (outcome.guest if applied else None) or current.guest
        diff = {'before': dict(plan.before), 'after': dict(plan.after)}
        if applied and outcome.rebooted_if_pending:
            diff['before']['status'] = diff['after']['status'] = 'running'
        if applied and outcome.gone:
            diff = {'before': {}, 'after': {}}
        if guest is not None:
            vmid = int(guest['vmid'])
        elif vmid is None:
            vmid = spec.vmid
        result = {
            'changed': outcome.changed if applied else plan.changed,
            'cluster': route.cluster, 'route_reason': route.reason, 'vmid': vmid,
            'name': current.guest.get('name') if current.guest else spec.name,
            'node': guest.get('node') if guest else plan.node,  # where it is now (a migration may have moved it)
            'node_reason': plan.node_reason,
            'status': plan.status if not applied or plan.state == 'absent' else guest.get('status'),
            'template': plan.template if not applied else bool(guest and guest.get('template')),
            'pending': outcome.pending if applied and outcome.pending is not None else list(current.pending),
            'diff': diff,
            'tasks': list(outcome.tasks) if applied else [],
            'waited_for': list(outcome.waited_for) if applied else [],
            'warnings': list(plan.warnings) + (list(outcome.warnings) if applied else []),
            'plan': [step.as_dict() for step in plan.steps],
        }
        if plan.clone_source is not None:
            result['clone_source'] = plan.clone_source
        if applied and outcome.forced:
            result['forced'] = True
        if applied and outcome.adopted:
            result['adopted'] = outcome.adopted
        return result

    # ------------------------------------------------------------ the pieces, for callers and tests

    def describe(self, name: Optional[str] = None, vmid: Optional[int] = None) -> str:
        return describe(self.kind, name, vmid)

    def resources(self, client) -> List[Dict]:
        """The cluster's guests and nodes (one request)."""
        return client.get('cluster/resources') or []

    def find(self, resources: List[Dict], cluster: str, name: Optional[str] = None,
             vmid: Optional[int] = None) -> Optional[Dict]:
        """See ``lookup.find``."""
        return find(self.kind, resources, cluster, name, vmid)

    def find_source(self, resources: List[Dict], cluster: str, source: Any) -> Dict:
        """See ``lookup.find_source``."""
        return find_source(self.kind, resources, cluster, source)

    def choose_node(self, resources: List[Dict], cluster: str, node: Optional[str] = None) -> Tuple[str, str]:
        """See ``lookup.choose_node``, with the cluster's default node."""
        return choose_node(resources, cluster, node, getattr(self.registry.cluster(cluster), 'default_node', None))

    def writer(self, client, cluster: str) -> LockedWriter:
        return LockedWriter(client, cluster, self.kind, self._sleep, self._clock)

    def call(self, client, cluster: str, guest: Dict, wait: float, method: str, tail: str, margin: float = 0,
             **params) -> Dict:
        """One locked write and its task: see ``tasks.LockedWriter.write``."""
        return self.writer(client, cluster).write(guest, wait, method, tail, margin, **params)

    def wait_unlocked(self, client, cluster: str, guest: Dict, timeout: float) -> None:
        """See ``tasks.LockedWriter.wait_unlocked``."""
        self.writer(client, cluster).wait_unlocked(guest, timeout)

    def wait_for_creations(self, client, cluster: str, resources: List[Dict], spec: GuestSpec,
                           exclude: Optional[int] = None) -> List[Dict]:
        """See ``executor.Executor.wait_for_creations``."""
        return Executor(client, cluster, self.kind, spec, sleep=self._sleep,
                        clock=self._clock).wait_for_creations(resources, exclude)
