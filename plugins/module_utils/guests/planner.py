# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The planner: what has to happen to bring one guest to a state, decided from what was read. Pure.

``plan_guest(kind, state, spec, current, resources, cluster, defaults)`` reads nothing and writes
nothing: it takes the guest as it is (``Current``, already fetched), the cluster's guests and nodes and
the request, and returns a ``Plan``: ordered steps (create, clone, update, resize, move_disk, detach,
start, shutdown, stop, reboot, template, delete), the config before and after, warnings, and the state
the guest will be in.
Check mode returns the plan; the executor applies it; the MCP server's previews are the same plan.
A request that cannot be right (nothing to create from, a template to start, an offline node) is an
error here, before any write. The table tests in tests/unit/plugins/module_utils/test_planner.py need no lab.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from ansible_collections.pmx.multicluster.plugins.module_utils.errors import GuestConflictError, GuestNotFoundError
from ansible_collections.pmx.multicluster.plugins.module_utils.guests.lookup import (
    check_node,
    choose_node,
    describe,
    find_source,
)
from ansible_collections.pmx.multicluster.plugins.module_utils.guests.spec import GuestSpec
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.checks import check_new_disk
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.diff import (
    ConfigDiff,
    config_diff,
    with_cluster_defaults,
)
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.kinds import KINDS, GuestKind
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.values import api_value, disk_removal

# Config keys PVE never shows (a cloud-init or root password): a plan shows them masked.
WRITE_ONLY = frozenset(key for kind in KINDS.values() for key in kind.write_only)
MASK = '********'


@dataclass
class Current:
    """What was read of a guest before planning; ``guest`` is None when it does not exist."""

    guest: Optional[Dict] = None                           # its /cluster/resources entry
    config: Dict[str, Any] = field(default_factory=dict)     # the running config
    effective: Dict[str, Any] = field(default_factory=dict)  # the config of the next boot
    pending: List[str] = field(default_factory=list)         # keys waiting for a reboot

    @property
    def status(self) -> Optional[str]:
        return self.guest.get('status') if self.guest else None

    @property
    def running(self) -> bool:
        return self.status == 'running'

    @property
    def template(self) -> bool:
        return bool(self.guest and self.guest.get('template'))


@dataclass
class ClusterDefaults:
    """The cluster's defaults for new guests (DEFAULT_NODE, DEFAULT_STORAGE, DEFAULT_BRIDGE, or fallbacks)."""

    node: Optional[str] = None
    storage: Optional[str] = None
    bridge: Optional[str] = None


@dataclass
class Step:
    """One thing to do: an action and what it needs."""

    action: str
    params: Dict[str, Any] = field(default_factory=dict)
    # Only if keys wait for a reboot once the steps before have run (restart_on_change after an update).
    if_pending: bool = False

    def as_dict(self) -> Dict[str, Any]:
        """The step as the front ends show it (no guest objects, no secrets: write-only values are masked)."""
        out: Dict[str, Any] = {'action': self.action}
        shown = dict((k, _masked(v) if k in ('params', 'changes') else v) for k, v in self.params.items()
                     if k not in ('source', 'desired'))
        if 'source' in self.params:
            shown['source'] = self.params['source'].get('name') or self.params['source'].get('vmid')
        if shown:
            out['params'] = shown
        if self.if_pending:
            out['if_pending'] = True
        return out


def _masked(values: Dict[str, Any]) -> Dict[str, Any]:
    """Config values with the write-only ones (a password) masked."""
    return dict((k, MASK if k in WRITE_ONLY else v) for k, v in values.items())


@dataclass
class Plan:
    """What has to happen to one guest, in order, and what it will look like then."""

    state: str
    cluster: str
    steps: List[Step] = field(default_factory=list)
    before: Dict[str, Any] = field(default_factory=dict)
    after: Dict[str, Any] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)
    node: Optional[str] = None
    node_reason: Optional[str] = None
    clone_source: Optional[Dict[str, Any]] = None
    status: Optional[str] = None          # the power state the guest will be in ('absent' when deleted)
    template: bool = False

    @property
    def changed(self) -> bool:
        """Whether applying it changes anything (a reboot that only happens if keys turn out pending does not count)."""
        return any(not step.if_pending for step in self.steps)

    @property
    def actions(self) -> List[str]:
        return [step.action for step in self.steps]

    def power(self, step: Step, before: Optional[str], after: Optional[str]) -> None:
        """Add a power step and its before/after status."""
        self.steps.append(step)
        self.before['status'], self.after['status'] = before, after


def plan_guest(kind: GuestKind, state: str, spec: GuestSpec, current: Current, resources: List[Dict], cluster: str,
               defaults: Optional[ClusterDefaults] = None) -> Plan:
    """The plan that brings the guest ``spec`` names to ``state``.

    :raises GuestNotFoundError: the guest is missing and the task gives nothing to create it from.
    :raises GuestConflictError: a template to start, a missing node, a new guest without what it needs...
    :raises NodeOfflineError: the guest's node (or the one asked for) is offline.
    """
    defaults = defaults or ClusterDefaults()
    plan = Plan(state=state, cluster=cluster)
    guest = current.guest
    if guest is not None:
        plan.node, plan.template = guest.get('node'), current.template
        check_node(resources, cluster, guest['node'], ' of %s' % describe(kind, guest.get('name'), guest.get('vmid')))
    if state == 'absent':
        plan.status = 'absent'
        if guest is not None:
            plan.before, plan.after = dict(current.config), {}
            if current.running:
                plan.steps.append(Step('stop'))  # the disks are destroyed next: a shutdown would only delay it
            plan.steps.append(Step('delete', {'purge': spec.purge}))
        return plan
    if guest is None:
        _plan_new(kind, state, spec, resources, cluster, defaults, plan)
        return plan
    if spec.update:
        desired = with_cluster_defaults(kind, spec.config, current.effective, defaults.storage, defaults.bridge,
                                        cluster=cluster)
        label = describe(kind, guest.get('name'), guest['vmid'])
        diff = config_diff(kind, desired, current.effective, label, spec.move_disks)
        plan.warnings.extend(diff.warnings)
        plan.before, plan.after = diff.before, diff.after
        if diff.changes:
            plan.steps.append(Step('update', {'changes': diff.changes}))
        _plan_disks(kind, spec, current, cluster, diff, label, plan)
    _plan_power(kind, state, spec, current, cluster, plan)
    return plan


def _plan_disks(kind: GuestKind, spec: GuestSpec, current: Current, cluster: str, diff: ConfigDiff, label: str,
                plan: Plan) -> None:
    """Resizes, moves and removals of existing disks, after the config update; what PVE would refuse is
    refused here, before any write."""
    for key in sorted(diff.resizes):
        plan.steps.append(Step('resize', {'disk': key, 'size': diff.resizes[key]}))
    stopped_first = "stop it first (state: stopped), then run again; nothing was changed"
    if diff.moves and kind.type == 'lxc' and current.running:
        raise GuestConflictError("cluster '%s': %s is running, and Proxmox VE moves the volumes of a stopped "
                                 "container only (%s): %s" % (cluster, label, ', '.join(sorted(diff.moves)),
                                                              stopped_first), cluster)
    for key in sorted(diff.moves):
        plan.steps.append(Step('move_disk', {'disk': key, 'storage': diff.moves[key],
                                             'delete_source': spec.delete_moved_source}))
    for key in sorted(diff.removals):
        if key == 'rootfs':
            raise GuestConflictError("cluster '%s': %s: rootfs cannot be detached or removed (a container needs "
                                     "its root file system); nothing was changed" % (cluster, label), cluster)
        if kind.type == 'lxc' and current.running:
            raise GuestConflictError("cluster '%s': %s is running, and Proxmox VE takes a mount point out of a "
                                     "stopped container only (%s): %s" % (cluster, label, key, stopped_first),
                                     cluster)
        plan.steps.append(Step('detach', {'disk': key, 'remove': diff.removals[key] == 'absent'}))


def _plan_new(kind: GuestKind, state: str, spec: GuestSpec, resources: List[Dict], cluster: str,
              defaults: ClusterDefaults, plan: Plan) -> None:
    """A guest that does not exist: its create or clone, then what its state needs (it starts stopped)."""
    if state != 'present' and not (spec.clone or spec.config):
        raise GuestNotFoundError(
            "cluster '%s': %s does not exist, and the task gives nothing to create it from (no clone and no config); "
            "use state=present with its settings, or check the name" % (cluster, describe(kind, spec.name, spec.vmid)),
            cluster, 404)
    name_key = kind.name_key
    if spec.clone is not None:
        source = find_source(kind, resources, cluster, spec.clone)
        check_node(resources, cluster, source['node'], ' of the clone source')
        node, why = (spec.node, 'explicit') if spec.node else (source['node'], 'clone source node')
        if spec.node:
            check_node(resources, cluster, spec.node)
        plan.clone_source = {'vmid': int(source['vmid']), 'name': source.get('name'), 'node': source.get('node'),
                             'template': bool(source.get('template'))}
        plan.after = dict((k, api_value(k, v)) for k, v in spec.config.items())
        params: Dict[str, Any] = {}
        if spec.name:
            plan.after[name_key] = params[name_key] = spec.name
        if spec.full is not None:
            params['full'] = 1 if spec.full else 0
        if node != source['node']:
            params['target'] = node
        if spec.target_storage:
            params['storage'] = spec.target_storage
        if spec.pool:
            params['pool'] = spec.pool
        # The clone has the source's config: brought to what was asked afterwards, as a later update would.
        plan.steps += [Step('clone', {'source': source, 'params': params}),
                       Step('update', {'desired': spec.config, 'created': True})]
    else:
        missing = [k for k in kind.create_requires if spec.config.get(k) in (None, '')]
        if missing:
            raise GuestConflictError(
                "cluster '%s': %s does not exist, and a new %s needs %s (or clone: a %s template)"
                % (cluster, describe(kind, spec.name, spec.vmid), kind.label, ' and '.join(missing), kind.label),
                cluster)
        config = with_cluster_defaults(kind, spec.config, {}, defaults.storage, defaults.bridge, True, cluster)
        # A disk to take out of a guest that does not exist yet: nothing to do.
        config = dict((k, v) for k, v in config.items() if not (kind.is_disk(k) and disk_removal(v)))
        for key in sorted(config):
            check_new_disk(kind, key, config[key])
        node, why = choose_node(resources, cluster, spec.node, defaults.node)
        params = dict((k, api_value(k, v)) for k, v in config.items())
        if spec.name:
            params[name_key] = spec.name
        plan.after = dict(params)
        if spec.pool:
            params['pool'] = spec.pool
        plan.steps.append(Step('create', {'node': node, 'params': params}))
    plan.node, plan.node_reason, plan.status = node, why, 'stopped'
    if state in ('started', 'restarted'):
        plan.power(Step('start'), 'stopped', 'running')
        plan.status = 'running'
    elif state == 'template':
        plan.steps.append(Step('template'))
        plan.before['template'], plan.after['template'] = False, True
        plan.template = True


def _plan_power(kind: GuestKind, state: str, spec: GuestSpec, current: Current, cluster: str, plan: Plan) -> None:
    """An existing guest's power state (and template conversion) after its update."""
    guest = current.guest
    plan.status = current.status
    if state == 'started':
        if current.template:
            raise GuestConflictError("cluster '%s': %s is a template; a template cannot be started"
                                     % (cluster, describe(kind, guest.get('name'), guest['vmid'])), cluster)
        if not current.running:
            plan.power(Step('start'), current.status, 'running')
            plan.status = 'running'
    elif state == 'stopped':
        if current.running:
            plan.power(Step('stop' if spec.hard_stop else 'shutdown', {'force': spec.force}), 'running', 'stopped')
            plan.status = 'stopped'
    elif state == 'restarted':
        if current.running:
            plan.power(Step('reboot', {'force': spec.force}), 'running', 'running')
        else:
            plan.power(Step('start'), current.status, 'running')
        plan.status = 'running'
    elif state == 'template':
        if not current.template:
            if current.running:
                plan.power(Step('shutdown', {'force': spec.force}), 'running', 'stopped')
            plan.steps.append(Step('template'))
            plan.before['template'], plan.after['template'] = False, True
            plan.status, plan.template = 'stopped', True
    elif spec.restart_on_change and current.running:
        if current.pending:
            plan.power(Step('reboot', {'force': spec.force}), 'running', 'running')
        elif any(step.action == 'update' for step in plan.steps):
            plan.steps.append(Step('reboot', {'force': spec.force}, if_pending=True))
