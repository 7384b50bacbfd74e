# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The executor: applies a plan's steps to one guest, each write through the locked writer (tasks.py).

It is where the cluster's other actors are met: a guest another run is still creating is waited for, a
vmid taken meanwhile is retried with a fresh one, two runs that created one name leave one guest (the
lowest vmid stays), a start or destroy that an interrupted run left running is waited for instead of
sent again, and PVE's "already running" counts as done. What it did is collected in an ``Outcome``; the
manager turns that into the module's result in one place.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from ansible_collections.pmx.multicluster.plugins.module_utils.errors import (
    ApiError,
    GuestConflictError,
    GuestLockedError,
    ResourceNotFoundError,
    TaskError,
    TaskTimeoutError,
    already_done,
    shutdown_timed_out,
    vmid_taken,
)
from ansible_collections.pmx.multicluster.plugins.module_utils.guests.lookup import (
    CREATING_LOCKS,
    describe,
    find,
    in_creation,
)
from ansible_collections.pmx.multicluster.plugins.module_utils.guests.planner import Plan, Step
from ansible_collections.pmx.multicluster.plugins.module_utils.guests.spec import GuestSpec
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.diff import (
    config_diff,
    pending_state,
    with_cluster_defaults,
)
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.kinds import GuestKind, guests_path
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.values import api_value, split_props, word
from ansible_collections.pmx.multicluster.plugins.module_utils.router import same_name
from ansible_collections.pmx.multicluster.plugins.module_utils.tasks import LOCK_POLL, LockedWriter, poll, task_record

# How often a create takes a fresh vmid when another create took the one /cluster/nextid gave.
VMID_ATTEMPTS = 5
# Extra seconds to wait for a shutdown or reboot task, which itself waits up to the timeout.
POWER_MARGIN = 30


@dataclass
class Outcome:
    """What applying a plan did."""

    guest: Optional[Dict] = None              # the guest afterwards: vmid, node, status, template
    changed: bool = False
    tasks: List[Dict] = field(default_factory=list)
    waited_for: List[Dict] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    pending: Optional[List[str]] = None       # keys waiting for a reboot, when read again
    forced: bool = False
    rebooted_if_pending: bool = False
    gone: bool = False                        # a destroy that was already running removed it
    adopted: Optional[Dict] = None            # another run's guest of this name was kept instead of this run's
    continue_with: Optional[Dict] = None      # the guest to plan again for (another run's), when set


class Creations:
    """The creates and clones this process has in flight (cluster, vmid -> name), shared by the executors of one
    many-guest run.

    A guest PVE is still creating shows no name, so a run waits for it in case it is the guest the run is about to
    create (``in_creation``). A creation of this very process is known by name, and is waited for only if it is
    that name; and two guests of one run are given different free vmids instead of racing for the same one.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._names: Dict[tuple, Optional[str]] = {}

    def claim(self, cluster: str, first_free: int, name: Optional[str]) -> int:
        """The lowest vmid from ``first_free`` up that no creation of this process holds, now held for ``name``."""
        with self._lock:
            vmid = int(first_free)
            while (cluster, vmid) in self._names:
                vmid += 1
            self._names[(cluster, vmid)] = name
            return vmid

    def hold(self, cluster: str, vmid: int, name: Optional[str]) -> None:
        with self._lock:
            self._names[(cluster, int(vmid))] = name

    def drop(self, cluster: str, vmid: int) -> None:
        with self._lock:
            self._names.pop((cluster, int(vmid)), None)

    def names(self, cluster: str) -> Dict[int, Optional[str]]:
        """vmid -> name of this process's creations on ``cluster``."""
        with self._lock:
            return dict((vmid, name) for (where, vmid), name in self._names.items() if where == cluster)


class Executor:
    """Applies plans to guests of one kind on one cluster."""

    def __init__(self, client: Any, cluster: str, kind: GuestKind, spec: GuestSpec, storage: Optional[str] = None,
                 bridge: Optional[str] = None, sleep=time.sleep, clock=time.monotonic,
                 creations: Optional[Creations] = None):
        self.client = client
        self.cluster = cluster
        self.kind = kind
        self.spec = spec
        self.storage = storage
        self.bridge = bridge
        self.sleep = sleep
        self.clock = clock
        self.writer = LockedWriter(client, cluster, kind, sleep, clock)
        self.creations = creations
        self.out = Outcome()
        self._prepared = False

    # ------------------------------------------------------------ reading

    def resources(self) -> List[Dict]:
        """The cluster's guests and nodes (one request)."""
        return self.client.get('cluster/resources') or []

    def read(self, guest: Dict) -> Dict[str, Any]:
        """Running config, next-boot config and pending keys of a guest."""
        running, effective, waiting = pending_state(self.client.get(self.writer.path(guest, 'pending')))
        return {'config': running, 'effective': effective, 'pending': waiting}

    def refresh(self, guest: Dict) -> None:
        """Read the guest's status (and template flag) again."""
        current = self.client.get(self.writer.path(guest, 'status/current')) or {}
        guest['status'] = current.get('status', guest.get('status'))
        if current.get('template'):
            guest['template'] = 1

    def wait_for_creations(self, resources: List[Dict], exclude: Optional[int] = None) -> List[Dict]:
        """Wait until no guest that may be the spec's is being created; returns the cluster's resources then.

        :raises GuestLockedError: still being created after the spec's timeout (nothing was changed).
        """
        spec, seen = self.spec, [resources]

        def probe():
            if seen[-1] is None:
                seen[-1] = self.resources()
            known = self.creations.names(self.cluster) if self.creations is not None else None
            pending = in_creation(self.kind, seen[-1], spec.name, spec.vmid, exclude, known)
            if not pending:
                return True, seen[-1]
            seen.append(None)  # read again after the pause
            return False, pending

        def expired(pending):
            vmids = ', '.join(str(g['vmid']) for g in pending)
            return GuestLockedError(
                "cluster '%s': guest(s) %s are still being created after %ss (lock %s), and may be %s (the create of "
                "an interrupted run, or of another run at this moment). Nothing was changed. Run again once that task "
                "has finished; if it is stale, unlock it with '%s unlock %s'."
                % (self.cluster, vmids, spec.timeout, pending[0].get('lock'), describe(self.kind, spec.name, spec.vmid),
                   self.kind.cli, pending[0]['vmid']), self.cluster)

        return poll(probe, spec.timeout, expired, interval=LOCK_POLL, sleep=self.sleep, clock=self.clock)

    def wait_active_tasks(self, guest: Dict) -> List[str]:
        """Wait for power or destroy tasks of this guest still running in PVE; the types waited for.

        A rerun after an interrupted or timed-out run finds that run's start, shutdown or destroy still
        going: acting again at once would fail on the guest's lock or act twice. After waiting, the
        guest's status is read again (``guest['gone']`` when a destroy removed it).

        :raises TaskTimeoutError: such a task still runs after the timeout (nothing was changed).
        """
        timeout = self.spec.timeout
        entries = self.client.get('nodes/%s/tasks' % guest['node'], vmid=int(guest['vmid']), source='active') or []
        running = [t for t in entries if t.get('type') in self.kind.task_types and t.get('upid')
                   and not t.get('endtime') and t.get('status') in (None, '', 'running')]
        waited = []
        for task in running:
            try:
                exitstatus = self.client.wait_task(task['upid'], timeout).get('exitstatus')
            except TaskTimeoutError as exc:
                raise TaskTimeoutError(
                    "cluster '%s': %s has a %s task running in PVE (%s, started by %s) that did not end within %ss; "
                    "nothing was changed. A rerun waits for it again: raise timeout, or check the task in the "
                    "Proxmox UI." % (self.cluster, self.writer.describe(guest), task['type'], task['upid'],
                                     task.get('user'), timeout), self.cluster, exc.upid)
            except TaskError as exc:  # its failure is not this run's: this run acts itself next
                exitstatus = exc.exitstatus
            except ApiError:  # a task this token may not read: nothing to wait for
                continue
            waited.append(task['type'])
            self.out.waited_for.append({'action': task['type'], 'upid': task['upid'], 'exitstatus': exitstatus})
        if waited:
            try:
                self.refresh(guest)
            except ResourceNotFoundError:
                guest['gone'] = True
        return waited

    # ------------------------------------------------------------ applying

    def apply(self, plan: Plan, guest: Optional[Dict]) -> Outcome:
        """Apply ``plan`` to ``guest`` (None: the plan creates it). Stops early when another run's guest is
        to be managed instead (``Outcome.continue_with``)."""
        self.out.guest = guest
        for step in plan.steps:
            getattr(self, '_' + step.action)(step, self.out.guest)
            if self.out.continue_with is not None or self.out.gone:
                break
        return self.out

    def _write(self, guest: Dict, action: str, method: str, tail: str, margin: float = 0, **params) -> Dict:
        task = self.writer.write(guest, self.spec.timeout, method, tail, margin, **params)
        self.out.tasks.append(task_record(action, task))
        self.out.changed = True
        return task

    def _power(self, guest: Dict, action: str, **params) -> None:
        """One power action and its task; PVE's "already running" / "not running" for it counts as done."""
        margin = POWER_MARGIN if action in ('shutdown', 'reboot') else 0
        try:
            self._write(guest, action, 'POST', 'status/' + action, margin, **params)
        except (ApiError, TaskError) as exc:
            if not already_done(action, exc):
                raise
            # Another task (an earlier run's, or another run's) got there first: the state is what was asked.
            self.out.tasks.append({'action': action, 'upid': getattr(exc, 'upid', None),
                                   'exitstatus': 'already done: %s' % word(exc)})

    # -------------------------------------------------- create and clone

    def _create(self, step: Step, guest: None) -> None:
        node, params = step.params['node'], step.params['params']
        path = guests_path(self.kind.type, node)
        self._make('create', node, lambda vmid: self.client.run_task('POST', path, dict(params, vmid=vmid),
                                                                     self.spec.timeout))

    def _clone(self, step: Step, guest: None) -> None:
        source, params = step.params['source'], step.params['params']
        node = params.get('target') or source['node']
        self._make('clone', node, lambda vmid: self.writer.write(source, self.spec.timeout, 'POST', 'clone',
                                                                 **dict({'newid': vmid}, **params)))

    def next_vmid(self) -> int:
        """PVE's next free vmid; in a many-guest run, the next one no other guest of the run is being made with."""
        vmid = int(self.client.get('cluster/nextid'))
        if self.creations is not None:
            vmid = self.creations.claim(self.cluster, vmid, self.spec.name)
        return vmid

    def _submit(self, submit, vmid: int) -> Dict:
        """``submit(vmid)``, known to the run's other guests as this name's creation while it runs."""
        if self.creations is None:
            return submit(vmid)
        self.creations.hold(self.cluster, vmid, self.spec.name)
        try:
            return submit(vmid)
        finally:
            self.creations.drop(self.cluster, vmid)

    def _make(self, action: str, node: str, submit) -> None:
        """Create or clone with the spec's vmid or a free one; a vmid taken meanwhile is retried with a fresh one."""
        spec = self.spec
        vmid = spec.vmid if spec.vmid is not None else self.next_vmid()
        attempt = 1
        while True:
            try:
                task = self._submit(submit, vmid)
                break
            except TaskTimeoutError as exc:
                raise TaskTimeoutError(
                    "%s. The %s of %s (vmid %s) goes on in PVE: a rerun waits for it to finish and then continues "
                    "with that %s; it does not make a second one." % (str(exc).rstrip('.'), action,
                                                                      describe(self.kind, spec.name), vmid,
                                                                      self.kind.label),
                    self.cluster, exc.upid, exc.exitstatus, exc.log)
            except (ApiError, TaskError) as exc:
                if not vmid_taken(exc):
                    raise
                if spec.vmid is not None:
                    # The vmid asked for was taken meanwhile: by another run making this same guest?
                    other = find(self.kind, self.wait_for_creations(self.resources()), self.cluster, spec.name,
                                 spec.vmid)
                    if other is None:
                        raise
                    self.out.continue_with = other
                    return
                if attempt >= VMID_ATTEMPTS:
                    raise GuestConflictError(
                        "cluster '%s': another create took the free vmid %d times in a row while %s was being "
                        "created; nothing was created. Run again, or give vmid: explicitly."
                        % (self.cluster, attempt, describe(self.kind, spec.name)), self.cluster) from None
                attempt += 1
                vmid = self.next_vmid()
        self.out.tasks.append(task_record(action, task))
        self.out.changed = True
        made = {'vmid': vmid, 'node': node, 'name': spec.name, 'type': self.kind.type, 'status': 'stopped'}
        self.out.guest = made
        if spec.vmid is None and spec.name:
            twin = self._lower_twin(made)
            if twin is not None:
                self._yield_to(made, twin)
                return
        if action == 'create':
            self.out.pending = self.read(made)['pending']

    def _lower_twin(self, guest: Dict) -> Optional[Dict]:
        """After creating ``guest``: another guest of the same name with a lower vmid (another run's), or None.

        Two runs that create one new name at the same moment each make a guest. The rule that leaves exactly
        one: the lowest vmid stays; a run whose own guest is not the lowest removes it and adopts the other.
        Guests still being created are waited for first, since their name is not known yet.
        """
        resources = self.wait_for_creations(self.resources(), exclude=int(guest['vmid']))
        twins = sorted((g for g in resources if g.get('type') == self.kind.type
                        and same_name(g.get('name'), self.spec.name) and int(g['vmid']) < int(guest['vmid'])),
                       key=lambda g: int(g['vmid']))
        return twins[0] if twins else None

    def _yield_to(self, guest: Dict, twin: Dict) -> None:
        """Remove this run's just-created (never started) guest and continue with ``twin`` instead."""
        self._write(guest, 'delete', 'DELETE', '', **{'destroy-unreferenced-disks': 1})
        self.out.warnings.append(
            "cluster '%s': another run created %s (vmid %s) at the same moment; this run removed its own new vmid %s "
            "and manages vmid %s" % (self.cluster, describe(self.kind, self.spec.name), twin['vmid'], guest['vmid'],
                                     twin['vmid']))
        self.out.adopted = {'vmid': int(twin['vmid']), 'removed_vmid': int(guest['vmid'])}
        self.out.continue_with = twin

    def adopt(self, guest: Dict) -> Dict:
        """Take over a guest found while creating (another run's): wait until it is made; its fresh entry."""
        guest = dict(guest)
        if guest.get('lock') in CREATING_LOCKS:
            self.writer.wait_unlocked(guest, self.spec.timeout)
            self.refresh(guest)
            guest.pop('lock', None)
        self.out.continue_with = None
        self.out.changed = False
        return guest

    # -------------------------------------------------- update

    def _update(self, step: Step, guest: Dict) -> None:
        resizes: Dict[str, str] = {}
        if step.params.get('created'):
            changes, resizes = self._changes_after_clone(guest)
        else:
            changes = step.params['changes']
            self.writer.wait_unlocked(guest, self.spec.timeout)
        if changes:
            self._write(guest, 'update', self.kind.config_method, 'config', **changes)
        for key in sorted(resizes):  # a clone's disk asked for larger than the source's
            self._resize(Step('resize', {'disk': key, 'size': resizes[key]}), guest)
        self.out.pending = self.read(guest)['pending']

    # -------------------------------------------------- disks

    def _resize(self, step: Step, guest: Dict) -> None:
        """Grow a disk, root file system or mount point (PVE's resize task: qmresize / resize)."""
        self._write(guest, 'resize', 'PUT', 'resize', disk=step.params['disk'], size=step.params['size'])

    def _move_disk(self, step: Step, guest: Dict) -> None:
        """Copy a disk to another storage (qm's move_disk, pct's move_volume); the source volume is deleted only
        with ``delete_source``, else PVE keeps it as unusedN."""
        delete = 1 if step.params.get('delete_source') else 0
        if self.kind.type == 'lxc':
            self._write(guest, 'move_disk', 'POST', 'move_volume', volume=step.params['disk'],
                        storage=step.params['storage'], delete=delete)
        else:
            self._write(guest, 'move_disk', 'POST', 'move_disk', disk=step.params['disk'],
                        storage=step.params['storage'], delete=delete)
        self.out.pending = self.read(guest)['pending']

    def _detach(self, step: Step, guest: Dict) -> None:
        """Take a disk out of the config: its volume stays as unusedN, or with ``remove`` is destroyed.

        A VM's disk goes through qm's unlink (``force`` destroys the volume). A container's mount point is
        deleted from the config (PVE keeps its volume as unusedN), and for ``remove`` that unusedN is deleted
        too, which destroys the volume.
        """
        key, remove = step.params['disk'], step.params.get('remove')
        if self.kind.type != 'lxc':
            self._write(guest, 'remove' if remove else 'detach', 'PUT', 'unlink', idlist=key, force=1 if remove else 0)
        else:
            volume = split_props(self.read(guest)['config'].get(key, ''), self.kind.disk_default_key).get(
                self.kind.disk_default_key)
            self._write(guest, 'detach', self.kind.config_method, 'config', delete=key)
            if remove and volume:
                left = self.read(guest)['config']
                unused = [k for k, v in sorted(left.items()) if k.startswith('unused') and word(v) == volume]
                if unused:
                    self._write(guest, 'remove', self.kind.config_method, 'config', delete=unused[0])
        self.out.pending = self.read(guest)['pending']

    def _changes_after_clone(self, guest: Dict) -> Tuple[Dict[str, Any], Dict[str, str]]:
        """A fresh clone has its source's config: (what differs from what was asked plus the write-only keys,
        the disks to grow)."""
        state = self.read(guest)
        desired = with_cluster_defaults(self.kind, self.spec.config, state['effective'], self.storage, self.bridge,
                                        cluster=self.cluster)
        label = describe(self.kind, guest.get('name'), guest['vmid'])
        self.out.warnings.extend(
            '%s: %s is used when a %s is created from an OS template, not by a clone; ignored'
            % (label, k, self.kind.label)
            for k in sorted(desired) if k in self.kind.create_only and desired[k] is not None)
        diff = config_diff(self.kind, desired, state['effective'], label)
        self.out.warnings.extend(diff.warnings)
        write_only = dict((k, api_value(k, v)) for k, v in desired.items()
                          if k in self.kind.write_only and k not in self.kind.create_only)
        return dict(diff.changes, **write_only), diff.resizes

    # -------------------------------------------------- power

    def _start(self, step: Step, guest: Dict) -> None:
        if guest.get('status') != 'running' and self.wait_active_tasks(guest) and guest.get('status') == 'running':
            return
        self._power(guest, 'start')
        self.refresh(guest)
        self.out.pending = self.read(guest)['pending']

    def _shutdown(self, step: Step, guest: Dict) -> None:
        """Graceful shutdown within the timeout; with ``force``, a hard stop when it does not go down."""
        if self.wait_active_tasks(guest) and guest.get('status') != 'running':
            return
        timeout = int(self.spec.timeout)
        try:
            self._power(guest, 'shutdown', timeout=timeout)
        except TaskError as exc:
            if not shutdown_timed_out(exc):
                raise
            if not step.params.get('force'):
                raise TaskError("cluster '%s': %s did not shut down within %ss (%s). Set force: true to stop it hard, "
                                "or raise timeout." % (self.cluster, self.writer.describe(guest), timeout, exc),
                                self.cluster, exc.upid, exc.exitstatus, exc.log)
            self.out.tasks.append({'action': 'shutdown', 'upid': exc.upid, 'exitstatus': exc.exitstatus})
            self._power(guest, 'stop')
            self.out.forced = True
        self.refresh(guest)

    def _stop(self, step: Step, guest: Dict) -> None:
        """A hard stop: before a delete (after waiting for what holds the guest), or asked for (hard_stop)."""
        self._settle(guest)
        if guest.get('gone') or guest.get('status') != 'running':
            return
        self._power(guest, 'stop')
        self.refresh(guest)

    def _reboot(self, step: Step, guest: Dict) -> None:
        if step.if_pending and not self.out.pending:
            return
        waited = self.wait_active_tasks(guest)
        if guest.get('status') == 'running' and any(t.endswith(('reboot', 'start')) for t in waited):
            return  # an earlier run's reboot (or start) that was still going: restarted now
        if guest.get('status') != 'running':
            self._start(step, guest)
            return
        try:
            self._power(guest, 'reboot', timeout=int(self.spec.timeout))
        except TaskError as exc:
            if not step.params.get('force') or not shutdown_timed_out(exc):
                raise
            self.out.tasks.append({'action': 'reboot', 'upid': exc.upid, 'exitstatus': exc.exitstatus})
            self._power(guest, 'stop')
            self._power(guest, 'start')
            self.out.forced = True
        self.out.rebooted_if_pending = step.if_pending
        self.refresh(guest)
        self.out.pending = self.read(guest)['pending']

    def _template(self, step: Step, guest: Dict) -> None:
        self._write(guest, 'template', 'POST', 'template')
        guest['template'] = 1
        self.refresh(guest)

    # -------------------------------------------------- stop and delete

    def _settle(self, guest: Dict) -> None:
        """Once per plan, before a hard stop or a delete: wait out the guest's lock and what an earlier run
        left running on it."""
        if self._prepared:
            return
        self._prepared = True
        self.writer.wait_unlocked(guest, self.spec.timeout)
        self.wait_active_tasks(guest)
        if guest.get('gone'):
            # An earlier run's destroy, still running when this run began, has finished it.
            self.out.gone = True

    def _delete(self, step: Step, guest: Dict) -> None:
        self._settle(guest)
        if self.out.gone:
            return
        if guest.get('status') == 'running':
            self._power(guest, 'stop')  # started meanwhile: the disks are destroyed next
        params = {'purge': 1, 'destroy-unreferenced-disks': 1} if step.params.get('purge') else {}
        try:
            self._write(guest, 'delete', 'DELETE', '', **params)
        except ResourceNotFoundError:
            # Destroyed meanwhile (by a destroy that started after this run looked): what was asked.
            if any(int(g.get('vmid', -1)) == int(guest['vmid']) for g in self.resources()
                   if g.get('type') == self.kind.type):
                raise
            self.out.tasks.append({'action': 'delete', 'upid': None, 'exitstatus': 'already done: gone'})
            self.out.changed = True
