# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Proxmox tasks and locked writes: wait for a task (UPID), and write to a guest that another task holds.

One poll helper, ``poll``, with an injectable sleep and clock, serves every wait of the core: a task's
end, a guest's lock, a guest another run is still creating, a task another run left running. Tests
pass a fake clock and never sleep.

``LockedWriter`` is the one way the core writes to a guest: it waits out the guest's config lock (a
backup, a migration, a snapshot), follows a guest that a migration moved to another node meanwhile,
and waits for the task the write started.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from ansible_collections.pmx.multicluster.plugins.module_utils.errors import (
    ApiError,
    ClusterConnectionError,
    GuestLockedError,
    ResourceNotFoundError,
    TaskError,
    TaskTimeoutError,
    lock_of,
    permission_failure,
)
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.kinds import DEFAULT_TIMEOUT, GuestKind, guest_path

TASK_LOG_TAIL = 20
TASK_OK_PREFIXES = ('OK', 'WARNINGS')
# A task's status is read again after a pause of a tenth of the time it has run so far (at least TASK_POLL,
# at most TASK_POLL_CAP seconds): its end is noticed within 10% of its duration (0.2 s for a short one), and a
# long task costs few reads (a 5-minute one about 60, where a fixed 2 s pause made 150).
TASK_POLL = 0.2
TASK_POLL_SHARE = 0.1
TASK_POLL_CAP = 30.0
LOCK_POLL = 0.5       # the pause between reads of a guest's lock
Sleep = Callable[[float], Any]
Clock = Callable[[], float]


def poll(probe: Callable[[], Tuple[bool, Any]], timeout: float, expired: Callable[[Any], Exception],
         interval: float = LOCK_POLL, share: float = 0.0, cap: float = TASK_POLL_CAP,
         sleep: Sleep = time.sleep, clock: Clock = time.monotonic) -> Any:
    """Call ``probe()`` until it answers ``(True, value)`` and return that value.

    After ``timeout`` seconds, raise ``expired(last value)``. The pause is ``interval``, or with ``share``
    that share of the time waited so far when it is longer (at most ``cap``); it never runs past the deadline.
    """
    start = clock()
    deadline = start + timeout
    while True:
        done, value = probe()
        if done:
            return value
        now = clock()
        remaining = deadline - now
        if remaining <= 0:
            raise expired(value)
        sleep(min(max(interval, min(cap, share * (now - start))), remaining))


# ------------------------------------------------------------------ tasks

def task_node(upid: str) -> str:
    """The node a UPID ran on (``UPID:node:pid:pstart:start:type:id:user:``)."""
    parts = str(upid).split(':')
    if len(parts) < 3 or parts[0] != 'UPID':
        raise ApiError('not a Proxmox task id: %r' % upid)
    return parts[1]


def task_log_tail(client: Any, upid: str, lines: int = TASK_LOG_TAIL) -> List[str]:
    """The last lines of a task's log (best effort: an empty list if it cannot be read)."""
    node = task_node(upid)
    try:
        total = client.get('nodes/%s/tasks/%s/status' % (node, upid)).get('log_lines')
        start = max(0, int(total) - lines) if total else 0
    except (ApiError, ClusterConnectionError, TypeError, ValueError, AttributeError):
        start = 0
    try:
        entries = client.get('nodes/%s/tasks/%s/log' % (node, upid), start=start, limit=10000) or []
    except (ApiError, ClusterConnectionError):
        return []
    return [str(entry.get('t', '')) for entry in entries][-lines:]


def wait_task(client: Any, upid: str, timeout: float = DEFAULT_TIMEOUT, poll_interval: float = TASK_POLL,
              sleep: Sleep = time.sleep, clock: Clock = time.monotonic) -> Dict:
    """Wait for a task to stop; returns its status.

    :raises TaskError: the task ended other than OK (exit status and log tail in the message).
    :raises TaskTimeoutError: it still ran after ``timeout`` seconds (it is not stopped).
    """
    node = task_node(upid)
    name = client.cluster.name

    def probe():
        status = client.get('nodes/%s/tasks/%s/status' % (node, upid)) or {}
        return status.get('status') == 'stopped', status

    def expired(status):
        return TaskTimeoutError(
            "cluster '%s': task %s on node %s was still running after %ss; it goes on in the background. "
            "Raise timeout, or check the task in the Proxmox UI." % (name, status.get('type') or upid, node, timeout),
            name, upid)

    status = poll(probe, timeout, expired, interval=poll_interval, share=TASK_POLL_SHARE, sleep=sleep, clock=clock)
    exitstatus = str(status.get('exitstatus') or '')
    if not exitstatus.startswith(TASK_OK_PREFIXES):
        log = task_log_tail(client, upid)
        tail = ' | '.join(line for line in log if line)
        hint = ''
        if permission_failure(exitstatus):
            # PVE checks some privileges inside the task: say which token lacks it and how to grant it.
            hint = '. The token %s lacks this privilege. %s' % (client.cluster.token_id, client.grant_hint())
        raise TaskError("cluster '%s': task %s on node %s failed: %s%s%s"
                        % (name, status.get('type') or '', node, exitstatus or 'unknown status', hint,
                           ('. Last log lines: ' + tail) if tail else ''), name, upid, exitstatus, log)
    return status


def run_task(client: Any, method: str, path: str, params: Optional[Dict] = None, timeout: float = DEFAULT_TIMEOUT,
             sleep: Sleep = time.sleep, clock: Clock = time.monotonic) -> Dict:
    """Call an endpoint that starts a task and wait for it; returns the task status (with ``upid``).

    The API parameters are a dict, so that PVE's own ``timeout`` parameter (of a shutdown, say) never
    collides with how long to wait for the task. An endpoint that answers without a task (a container's
    config PUT) returns an OK status at once.
    """
    upid = client.request(method, path, **(params or {}))
    if not (isinstance(upid, str) and upid.startswith('UPID:')):
        return {'upid': None, 'status': 'stopped', 'exitstatus': 'OK', 'data': upid}
    status = dict(wait_task(client, upid, timeout, sleep=sleep, clock=clock))
    status['upid'] = upid
    return status


def task_record(action: str, status: Dict) -> Dict:
    """A task as the modules return it: ``{action, upid, exitstatus}``."""
    return {'action': action, 'upid': status.get('upid'), 'exitstatus': status.get('exitstatus')}


# ------------------------------------------------------------------ writes to a guest

class LockedWriter:
    """Writes to guests of one kind on one cluster, each waiting out the guest's lock and its own task.

    A guest is its /cluster/resources entry (``vmid``, ``node``, ``name``); ``node`` is updated when a
    migration moved the guest while the write waited.
    """

    def __init__(self, client: Any, cluster: str, kind: GuestKind, sleep: Sleep = time.sleep,
                 clock: Clock = time.monotonic):
        self.client = client
        self.cluster = cluster
        self.kind = kind
        self.sleep = sleep
        self.clock = clock

    def describe(self, guest: Dict) -> str:
        name, vmid = guest.get('name'), guest.get('vmid')
        return ("%s '%s' (vmid %s)" % (self.kind.label, name, vmid)) if name else '%s %s' % (self.kind.label, vmid)

    def locked_error(self, guest: Dict, lock: str, timeout: float) -> GuestLockedError:
        return GuestLockedError(
            "cluster '%s': %s is locked (%s) and stayed locked for %ss; nothing was changed. Wait for the "
            "%s to finish (or unlock it with '%s unlock %s' if it is stale) and run again, or raise timeout."
            % (self.cluster, self.describe(guest), lock, timeout,
               'task' if lock == 'config lock held by another task' else lock, self.kind.cli, guest.get('vmid')),
            self.cluster)

    def path(self, guest: Dict, tail: str = '') -> str:
        return guest_path(self.kind.type, guest['node'], guest['vmid'], tail)

    def relocate(self, guest: Dict) -> bool:
        """Read the guest's node again (a migration may have moved it); True when it changed."""
        for entry in self.client.get('cluster/resources', type='vm') or []:
            if int(entry.get('vmid', -1)) == int(guest['vmid']) and entry.get('type') == self.kind.type:
                moved = entry.get('node') != guest['node']
                guest['node'] = entry.get('node')
                return moved
        return False

    def wait_unlocked(self, guest: Dict, timeout: float) -> None:
        """Wait until the guest's config has no ``lock``; :raises GuestLockedError: past the timeout.

        A guest that was migrated meanwhile is followed to its new node.
        """
        def probe():
            try:
                config = self.client.get(self.path(guest, 'config')) or {}
            except ResourceNotFoundError:
                if not self.relocate(guest):
                    raise
                return False, None
            return not config.get('lock'), config.get('lock')

        poll(probe, timeout, lambda lock: self.locked_error(guest, lock or 'config lock held by another task', timeout),
             sleep=self.sleep, clock=self.clock)

    def write(self, guest: Dict, wait: float, method: str, tail: str, margin: float = 0, **params) -> Dict:
        """Write (and wait for the task of) one request; retried while PVE answers that the guest is locked.

        ``margin`` extends the wait for tasks that themselves wait ``wait`` seconds (a shutdown).

        :raises GuestLockedError: still locked at the timeout. :raises TaskError: the task failed.
        """
        deadline = self.clock() + wait

        def probe():
            try:
                # The path is built for each attempt: a migration that held the lock may have moved the guest.
                return True, self.client.run_task(method, self.path(guest, tail), params,
                                                  max(1.0, deadline - self.clock()) + margin)
            except (ApiError, TaskError) as exc:
                if isinstance(exc, TaskTimeoutError):
                    raise
                if isinstance(exc, ResourceNotFoundError) and 'node' in guest and self.relocate(guest):
                    return False, 'migrate'  # moved while we waited: the request never reached it, send it again
                lock = lock_of(exc)
                if lock is None:
                    raise
                return False, lock

        return poll(probe, wait, lambda lock: self.locked_error(guest, lock, wait), sleep=self.sleep, clock=self.clock)
