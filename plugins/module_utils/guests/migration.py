# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Moving a guest: to another node of its cluster, or to another cluster. ``Migrator.ensure`` = read, plan, apply.

Within a cluster PVE's ``POST /nodes/{node}/{qemu|lxc}/{vmid}/migrate`` moves the guest; its precondition
check (``GET .../migrate``: local disks, local resources, nodes not allowed) is read first and turned into a
clear error before any write. Between clusters ``POST .../remote_migrate`` copies the guest to the target
cluster through a *target endpoint* (``host=...,apitoken=PVEAPIToken=<id>=<secret>,fingerprint=...``) built
from the target cluster's registry entry; the source is kept (stopped, locked ``migrate``) unless
``delete_source``. PVE picks the target node of a remote move itself (the endpoint's node); a ``target_node``
given with ``target_cluster`` is then reached by a move within the target cluster.

What a rerun finds after a move that stopped midway is recognised, never repeated blindly:

* the guest already where it should be: nothing to do (``changed: false``);
* the kept source (stopped, locked ``migrate``) and a live copy on the target: the move is done; with
  ``delete_source`` the kept source is removed;
* the kept source and a copy on the target that is still locked ``migrate`` (a copy interrupted midway, or a
  move still running): refused with what is where and what to do, so that there is never a second running copy.

The pure part (``plan_move``, ``pair_list``, ``choose_vmid``, ``endpoint``) has no I/O; tests drive it with tables.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

from ansible_collections.pmx.multicluster.plugins.module_utils.errors import (
    ApiError,
    ClusterError,
    ConfigError,
    GuestConflictError,
    GuestNotFoundError,
    MigrationError,
    TaskError,
    TaskTimeoutError,
)
from ansible_collections.pmx.multicluster.plugins.module_utils.guests.lookup import check_node, describe, find, nodes
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.checks import check_guest_name, check_vmid
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.kinds import DEFAULT_TIMEOUT, KINDS, kind_of
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.values import split_props
from ansible_collections.pmx.multicluster.plugins.module_utils.redact import MASK
from ansible_collections.pmx.multicluster.plugins.module_utils.router import MIGRATE_LOCK, kept_source
from ansible_collections.pmx.multicluster.plugins.module_utils.tasks import LockedWriter, poll, task_record

# PVE's default for how long a container in restart mode may take to shut down (pct migrate --timeout).
RESTART_TIMEOUT = 180
# PVE's special value of a storage or bridge pair list: every source id maps to the same id on the target.
IDENTITY = '1'
HA_POLL = 1.0


@dataclass
class MoveSpec:
    """What the user asked for (the module's options, the MCP tool's arguments)."""

    name: Optional[str] = None
    vmid: Optional[int] = None
    type: Optional[str] = None            # qemu or lxc; found by name when None
    cluster: Optional[str] = None         # the source cluster, when given explicitly
    target_node: Optional[str] = None
    target_cluster: Optional[str] = None
    online: Optional[bool] = None         # None: a running VM moves online
    restart: Optional[bool] = None        # containers: None: a running one moves in restart mode
    restart_timeout: int = RESTART_TIMEOUT
    with_local_disks: bool = False
    target_storage: Optional[str] = None
    storage_map: Dict[str, str] = field(default_factory=dict)
    bridge_map: Dict[str, str] = field(default_factory=dict)
    bwlimit: Optional[int] = None
    target_vmid: Optional[int] = None
    delete_source: bool = False
    timeout: float = DEFAULT_TIMEOUT


@dataclass
class Side:
    """Where a guest is: cluster, node, vmid (and its name, type and status)."""

    cluster: str
    node: Optional[str]
    vmid: Optional[int]
    name: Optional[str] = None
    type: Optional[str] = None
    status: Optional[str] = None

    @classmethod
    def of(cls, cluster: str, entry: Dict) -> 'Side':
        return cls(cluster, entry.get('node'), int(entry['vmid']), entry.get('name'), entry.get('type'),
                   entry.get('status'))

    def as_dict(self) -> Dict:
        return {'cluster': self.cluster, 'node': self.node, 'vmid': self.vmid}


# ------------------------------------------------------------------ pure helpers

def pair_list(mapping: Optional[Dict[str, str]] = None, single: Optional[str] = None) -> str:
    """A PVE storage or bridge pair list: ``src:dst,...`` from a map, one id for all, or ``1`` (the same ids).

    PVE's ``storage-pair-list`` / ``bridge-pair-list``: a single id maps every source id to it; ``1`` maps
    each source id to itself (qm(1), remote-migrate --target-storage / --target-bridge).
    """
    if mapping:
        pairs = ['%s:%s' % (str(src).strip(), str(dst).strip()) for src, dst in sorted(mapping.items())]
        if single:
            pairs.append(str(single).strip())  # the rest go to this one
        return ','.join(pairs)
    return str(single).strip() if single else IDENTITY


def mapped(pairs: str, source_id: str) -> str:
    """The target id of ``source_id`` under a pair list (as PVE applies it)."""
    default = None
    for part in pairs.split(','):
        src, sep, dst = part.partition(':')
        if not sep:
            default = src
        elif src == source_id:
            return dst
    if default is None or default == IDENTITY:
        return source_id
    return default


def guest_storages(kind, config: Dict) -> List[str]:
    """The storages the guest's disks are on (a CD-ROM drive without media and path-based disks do not count)."""
    found = []
    for key, value in config.items():
        if not (kind.is_disk(key) or key.startswith('unused')):
            continue
        props = split_props(value, kind.disk_default_key)
        volume = str(props.get(kind.disk_default_key) or '')
        if props.get('media') == 'cdrom' and volume in ('none', 'cdrom', ''):
            continue
        storage = volume.split(':', 1)[0] if ':' in volume else None
        if storage and storage not in found:
            found.append(storage)
    return found


def guest_bridges(kind, config: Dict) -> List[str]:
    """The bridges the guest's network devices are on."""
    found = []
    for key, value in config.items():
        if kind.is_net(key):
            bridge = split_props(value).get('bridge')
            if bridge and bridge not in found:
                found.append(bridge)
    return found


def choose_vmid(source_vmid: int, taken: List[int], next_free: Callable[[], int],
                wanted: Optional[int] = None) -> Tuple[int, str]:
    """(vmid, why) on the target: the one asked for, the source's when free, else the target's next free id.

    :raises GuestConflictError: the vmid asked for is taken on the target.
    """
    if wanted is not None:
        if int(wanted) in taken:
            raise GuestConflictError('target_vmid %s is taken on the target cluster; nothing was changed. Give '
                                     'another target_vmid, or leave it out to get a free one.' % wanted)
        return int(wanted), 'explicit'
    if int(source_vmid) not in taken:
        return int(source_vmid), 'same as the source'
    return int(next_free()), 'source vmid taken on the target: next free id'


def endpoint(url: str, token_id: str, secret: str, fingerprint: Optional[str]) -> str:
    """PVE's ``proxmox-remote`` property string of a target cluster (it holds the token secret: never show it)."""
    parts = urlsplit(url)
    host = parts.hostname or ''
    text = 'host=%s,apitoken=PVEAPIToken=%s=%s' % (host, token_id, secret)
    if parts.port:
        text += ',port=%d' % parts.port
    if fingerprint:
        text += ',fingerprint=%s' % fingerprint
    return text


def masked_endpoint(text: str, secret: str) -> str:
    return text.replace(secret, MASK) if secret else text


def certificate_fingerprint(url: str, verify: Any, timeout: float = 10.0) -> str:
    """The SHA-256 fingerprint of the certificate ``url`` presents, read over a verified TLS connection.

    ``verify``: a ClusterConfig's ``verify`` (True: the system's CAs; a path: that CA bundle). A certificate
    that does not verify is refused: a fingerprint read from it could be anyone's.

    :raises ConfigError: verification is off (set FINGERPRINT instead). :raises ClusterError: TLS failed.
    """
    parts = urlsplit(url)
    if verify is False:
        raise ConfigError('verification is off')
    context = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
    try:
        with socket.create_connection((parts.hostname, parts.port or 8006), timeout=timeout) as raw:
            with context.wrap_socket(raw, server_hostname=parts.hostname) as tls:
                der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError) as exc:
        raise ClusterError('cannot read the certificate of %s over a verified TLS connection (%s)'
                           % ('%s://%s:%s' % (parts.scheme, parts.hostname, parts.port or 8006), exc))
    digest = hashlib.sha256(der).hexdigest().upper()
    return ':'.join(digest[i:i + 2] for i in range(0, len(digest), 2))


def precondition_errors(kind, answer: Dict, target: str, spec: MoveSpec, online: bool) -> List[str]:
    """What PVE's migrate precondition answer (``GET .../migrate?target=``) says stands in the way; [] if nothing.

    qm(1) migrate: local disks of a running VM need --with-local-disks; local resources (a passed-through PCI or
    USB device) block a move; ``not_allowed_nodes`` names nodes that lack a storage the guest needs.
    """
    problems = []
    allowed = answer.get('allowed_nodes', answer.get('allowed-nodes'))
    blocked = answer.get('not_allowed_nodes', answer.get('not-allowed-nodes')) or {}
    if isinstance(blocked, dict) and target in blocked:
        why = blocked[target] or {}
        storages = why.get('unavailable_storages') if isinstance(why, dict) else None
        if storages and not (spec.target_storage or spec.storage_map):
            problems.append("node '%s' lacks the storage(s) %s the guest needs: give target_storage (or storage_map) "
                            'to put its disks on a storage of that node' % (target, ', '.join(storages)))
        elif not storages:
            problems.append("PVE does not allow node '%s' for it (%s)" % (target, why))
    elif allowed is not None and target not in allowed and not blocked:
        problems.append("PVE does not allow node '%s' for it; allowed: %s" % (target, ', '.join(allowed) or 'none'))
    # A stopped VM's local disks are copied offline; a live move copies them only with --with-local-disks.
    disks = [d for d in answer.get('local_disks') or [] if not d.get('cdrom')]
    if disks and online and not spec.with_local_disks:
        problems.append('it runs and has disks on storage local to its node (%s), which a live move copies only '
                        'when allowed: give with_local_disks: true%s, or stop it first' % (
                            ', '.join(str(d.get('volid')) for d in disks),
                            '' if spec.target_storage else ' (and target_storage to choose where they go)'))
    resources = answer.get('local_resources') or []
    if resources and kind.type == 'qemu':
        problems.append('it uses resources local to its node (%s), which cannot move with it: remove them from its '
                        'configuration first' % ', '.join(str(r) for r in resources))
    return problems


# ------------------------------------------------------------------ the migrator

class Migrator:
    """One guest moved across the registry's clusters. ``check_mode``: plan only."""

    def __init__(self, registry, check_mode: bool = False, scrub=None, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic):
        self.registry = registry
        self.check_mode = check_mode
        self.scrub = scrub
        self._sleep = sleep
        self._clock = clock

    # ------------------------------------------------------------ find the guest

    def _check(self, spec: MoveSpec) -> None:
        check_guest_name(spec.name)
        check_vmid(spec.vmid)
        check_vmid(spec.target_vmid)
        if spec.type is not None and spec.type not in KINDS:
            raise ConfigError("type must be one of %s, got '%s'" % (', '.join(KINDS), spec.type))
        if not spec.target_node and not spec.target_cluster:
            raise ConfigError('give target_node (a move within the cluster) or target_cluster (a move to another '
                              'cluster)')
        if spec.bwlimit is not None and spec.bwlimit < 0:
            raise ConfigError('bwlimit must be 0 or more (KiB/s), got %s' % spec.bwlimit)

    def locate(self, spec: MoveSpec) -> Tuple[Any, Dict]:
        """(route, entry) of the guest to move. Where it is not found but a guest of its name is on the target
        cluster (the move was done, its source deleted), that one."""
        try:
            route, dummy, entry = self.registry.find_guest(name=spec.name, vmid=spec.vmid, cluster=spec.cluster)
        except GuestNotFoundError:
            target = self.registry.router.resolve_cluster(spec.target_cluster) if spec.target_cluster else None
            if not (target and spec.name):
                raise
            route, dummy, entry = self.registry.find_guest(name=spec.name, cluster=target)
        if spec.type and entry.get('type') != spec.type:
            raise GuestConflictError("cluster '%s': %s is a %s, not a %s (type: %s)" % (
                route.cluster, describe(kind_of(entry['type']), entry.get('name'), entry.get('vmid')),
                kind_of(entry['type']).label, kind_of(spec.type).label, spec.type), route.cluster)
        return route, entry

    # ------------------------------------------------------------ ensure

    def ensure(self, spec: MoveSpec) -> Dict:
        """Move the guest where ``spec`` says (or, in check mode, say how). Returns the result (see pmx_migrate)."""
        self._check(spec)
        route, entry = self.locate(spec)
        source_cluster = route.cluster
        target_cluster = (self.registry.router.resolve_cluster(spec.target_cluster) if spec.target_cluster
                          else source_cluster)
        if route.moved_from and target_cluster == source_cluster and (
                spec.delete_source or entry.get('lock') == MIGRATE_LOCK):
            # Routing followed the guest to its copy. The kept source it came from is what delete_source removes;
            # a copy still locked migrate is a move not finished: both are judged from the source's side.
            old = route.moved_from[0]
            try:
                kept_route, dummy, kept = self.registry.find_guest(name=spec.name, cluster=old)
            except GuestNotFoundError:
                kept = None  # deleted already
            if kept is not None:
                return self._remote(kept_route, kept, spec, old, target_cluster)
        if target_cluster == source_cluster:
            return self._within(route, entry, spec, target_cluster)
        return self._remote(route, entry, spec, source_cluster, target_cluster)

    def _result(self, route, was: Side, now: Side, plan: List[Dict], tasks: List[Dict], changed: bool,
                **extra) -> Dict:
        out = {'changed': changed, 'cluster': now.cluster, 'route_reason': route.reason, 'name': was.name,
               'type': was.type, 'vmid': now.vmid, 'node': now.node, 'was': was.as_dict(), 'now': now.as_dict(),
               'plan': plan, 'tasks': tasks, 'ha': False, 'warnings': []}
        out.update(extra)
        return out

    def _ha_managed(self, client, entry: Dict) -> bool:
        status = client.get(LockedWriter(client, '', kind_of(entry['type'])).path(entry, 'status/current')) or {}
        return bool((status.get('ha') or {}).get('managed'))

    # ------------------------------------------------------------ within a cluster

    def _within(self, route, entry: Dict, spec: MoveSpec, cluster: str, after: Optional[Dict] = None) -> Dict:
        client = self.registry.client(cluster)
        kind = kind_of(entry['type'])
        was = Side.of(route.cluster, entry)
        target = spec.target_node
        if not target:
            # A move to the guest's own cluster with no node: it is where it should be.
            return self._result(route, was, was, [], [], False, moved_from=list(route.moved_from))
        if entry.get('node') == target:
            return self._result(route, was, was, [], [], False, moved_from=list(route.moved_from))
        if entry.get('lock') and not self.check_mode:
            # Another task holds the guest (a backup, another run's move): wait for it, as every write does, then
            # look again: a move that held it may have taken it where it should go.
            LockedWriter(client, cluster, kind, self._sleep, self._clock).wait_unlocked(entry, spec.timeout)
            entry = self._entry(client, kind, int(entry['vmid'])) or entry
            if entry.get('node') == target:
                return self._result(route, was, Side.of(cluster, entry), [], [], False,
                                    moved_from=list(route.moved_from))
        resources = client.get('cluster/resources') or []
        check_node(resources, cluster, target, ' (target_node)')
        running = entry.get('status') == 'running'
        writer = LockedWriter(client, cluster, kind, self._sleep, self._clock)
        answer = client.get(writer.path(entry, 'migrate'), target=target) or {}
        online = bool(running and (spec.online if spec.online is not None else True)) and kind.type == 'qemu'
        problems = precondition_errors(kind, answer, target, spec, online)
        params: Dict[str, Any] = {'target': target}
        if kind.type == 'qemu':
            online = spec.online if spec.online is not None else running
            if running and not online:
                problems.append('it is running and online is false: stop it first, or move it online')
            if online and running:
                params['online'] = 1
            if spec.with_local_disks:
                params['with-local-disks'] = 1
            if spec.target_storage or spec.storage_map:
                params['targetstorage'] = pair_list(spec.storage_map, spec.target_storage)
        else:
            if spec.online:
                problems.append('containers cannot move online (PVE has no live migration for them): leave online '
                                'unset and let it restart on the target node (restart mode)')
            restart = spec.restart if spec.restart is not None else running
            if running and not restart:
                problems.append('it is running and restart is false: a running container moves in restart mode '
                                '(shut down, moved, started again); stop it first or allow the restart')
            if running and restart:
                params['restart'] = 1
                params['timeout'] = int(spec.restart_timeout)
            if spec.target_storage or spec.storage_map:
                params['target-storage'] = pair_list(spec.storage_map, spec.target_storage)
        if spec.bwlimit is not None:
            params['bwlimit'] = int(spec.bwlimit)
        ha = self._ha_managed(client, entry)
        if problems:
            raise MigrationError("cluster '%s': %s cannot move from node '%s' to node '%s'; nothing was changed: %s."
                                 % (cluster, describe(kind, entry.get('name'), entry.get('vmid')), entry.get('node'),
                                    target, '; '.join(problems)), cluster)
        plan = [{'action': 'migrate', 'cluster': cluster, 'from_node': entry.get('node'), 'to_node': target,
                 'ha': ha, 'params': dict(params)}]
        preconditions = {'running': running, 'local_disks': [d.get('volid') for d in answer.get('local_disks') or []],
                         'allowed_nodes': answer.get('allowed_nodes', answer.get('allowed-nodes'))}
        base = {'preconditions': preconditions, 'moved_from': list(route.moved_from)}
        if after is not None:
            plan = after['plan'] + plan
        if self.check_mode:
            now = Side(cluster, target, was.vmid, was.name, was.type, was.status)
            res = self._result(route, after['was'] if after else was, now, plan, after['tasks'] if after else [],
                               True, ha=ha, **base)
            return res
        status = writer.write(entry, spec.timeout, 'POST', 'migrate', **params)
        tasks = (list(after['tasks']) if after else []) + [task_record('migrate', status)]
        ha_task = str(status.get('upid') or '').split(':')[5:6] == ['hamigrate'] or ha
        moved = self._wait_on_node(client, cluster, kind, int(entry['vmid']), target, spec.timeout) if ha_task \
            else self._entry(client, kind, int(entry['vmid']))
        now = Side.of(cluster, moved) if moved else Side(cluster, target, was.vmid)
        res = self._result(route, after['was'] if after else was, now, plan, tasks, True, ha=bool(ha_task), **base)
        return res

    @staticmethod
    def _entry(client, kind, vmid: int) -> Optional[Dict]:
        for item in client.get('cluster/resources', type='vm') or []:
            if item.get('type') == kind.type and int(item.get('vmid', -1)) == vmid:
                return item
        return None

    def _wait_on_node(self, client, cluster: str, kind, vmid: int, node: str, timeout: float) -> Dict:
        """An HA migration request's task ends at once; the HA manager moves the guest afterwards: wait for it."""
        def probe():
            entry = self._entry(client, kind, vmid)
            return bool(entry and entry.get('node') == node and not entry.get('lock')), entry

        def expired(entry):
            return TaskTimeoutError("cluster '%s': the HA manager had not moved %s %s to node '%s' after %ss (it is on "
                                    "'%s'); check ha-manager status, or raise timeout"
                                    % (cluster, kind.label, vmid, node, timeout, (entry or {}).get('node')), cluster)
        return poll(probe, timeout, expired, interval=HA_POLL, sleep=self._sleep, clock=self._clock)

    # ------------------------------------------------------------ between clusters

    def _remote(self, route, entry: Dict, spec: MoveSpec, source: str, target: str) -> Dict:
        kind = kind_of(entry['type'])
        src_client = self.registry.client(source)
        dst_client = self.registry.client(target)
        conf = self.registry.cluster(target)
        was = Side.of(source, entry)
        label = describe(kind, entry.get('name'), entry.get('vmid'))
        dst_resources = dst_client.get('cluster/resources') or []
        copy = find(kind, dst_resources, target, name=entry.get('name')) if entry.get('name') else None
        if copy is not None:
            return self._already_copied(route, entry, copy, spec, source, target, src_client, dst_resources)
        if entry.get('lock') == MIGRATE_LOCK:
            raise MigrationError(
                "cluster '%s': %s is locked (migrate) and cluster '%s' has no guest named '%s': a move is running or "
                "was interrupted. Nothing was changed. Wait for the move's task to end (cluster '%s', node '%s'), "
                "then run again; if no task runs, unlock it (%s unlock %s) and run again."
                % (source, label, target, entry.get('name'), source, entry.get('node'), kind.cli, entry.get('vmid')),
                source)
        if self._ha_managed(src_client, entry):
            raise MigrationError(
                "cluster '%s': %s is managed by HA, and PVE moves no HA-managed guest to another cluster (remote "
                "migration needs HA disabled for it). Nothing was changed. Remove it from HA (ha-manager remove "
                "%s:%s), run again, then add it to HA on cluster '%s'."
                % (source, label, 'ct' if kind.type == 'lxc' else 'vm', entry.get('vmid'), target), source)
        writer = LockedWriter(src_client, source, kind, self._sleep, self._clock)
        config = src_client.get(writer.path(entry, 'config')) or {}
        running = entry.get('status') == 'running'
        # PVE wants an explicit storage map for a remote move ('1' is refused): the guest's storages, to themselves
        # unless mapped.
        own = dict((s, s) for s in guest_storages(kind, config))
        storages = pair_list(spec.storage_map or ({} if spec.target_storage else own), spec.target_storage)
        if storages == IDENTITY:
            raise MigrationError("%s has no disk on a storage to map; nothing was changed." % label, source)
        bridges = pair_list(spec.bridge_map)
        problems = self._target_problems(kind, config, storages, bridges, dst_client, dst_resources, target)
        taken = [int(g['vmid']) for g in dst_resources if g.get('vmid') is not None]
        try:
            vmid, vmid_reason = choose_vmid(int(entry['vmid']), taken, lambda: int(dst_client.get('cluster/nextid')),
                                            spec.target_vmid)
        except GuestConflictError as exc:
            raise GuestConflictError("cluster '%s': %s" % (target, exc), target)
        if spec.target_node:
            check_node(dst_resources, target, spec.target_node, ' (target_node)')
        params: Dict[str, Any] = {'target-storage': storages, 'target-bridge': bridges, 'target-vmid': vmid}
        if kind.type == 'qemu':
            online = spec.online if spec.online is not None else running
            if running and not online:
                problems.append('it is running and online is false: stop it first, or move it online')
            if running and online:
                params['online'] = 1
        else:
            if spec.online:
                problems.append('containers cannot move online: leave online unset (restart mode)')
            restart = spec.restart if spec.restart is not None else running
            if running and not restart:
                problems.append('it is running and restart is false: stop it first or allow the restart')
            if running and restart:
                params['restart'] = 1
                params['timeout'] = int(spec.restart_timeout)
        if spec.delete_source:
            params['delete'] = 1
        if spec.bwlimit is not None:
            params['bwlimit'] = int(spec.bwlimit)
        if problems:
            raise MigrationError("%s cannot move from cluster '%s' to cluster '%s'; nothing was changed: %s."
                                 % (label, source, target, '; '.join(problems)), source)
        url = conf.api_url
        fingerprint, fp_source = self._fingerprint(conf)
        text = endpoint(url, conf.token_id, conf.token_secret, fingerprint)
        if self.scrub is not None:
            self.scrub.add([text, conf.token_secret])
        shown = dict(params, **{'target-endpoint': masked_endpoint(text, conf.token_secret)})
        plan = [{'action': 'remote_migrate', 'cluster': source, 'target_cluster': target, 'params': shown}]
        preconditions = {'running': running, 'source_storages': guest_storages(kind, config),
                         'source_bridges': guest_bridges(kind, config), 'target_vmid_reason': vmid_reason,
                         'fingerprint_from': fp_source}
        mappings = {'storage': storages, 'bridge': bridges}
        base = dict(target_vmid=vmid, mappings=mappings, preconditions=preconditions,
                    source_kept=not spec.delete_source, moved_from=list(route.moved_from))
        if self.check_mode:
            now = Side(target, spec.target_node, vmid, was.name, was.type, was.status)
            if spec.target_node:
                plan.append({'action': 'migrate', 'cluster': target, 'to_node': spec.target_node,
                             'if_needed': True})
            return self._result(route, was, now, plan, [], True, **base)
        try:
            status = writer.write(entry, spec.timeout, 'POST', 'remote_migrate', **dict(params, **{
                'target-endpoint': text}))
        except TaskError as exc:
            raise self._failed_midway(exc, kind, entry, source, target, vmid, src_client, dst_client)
        tasks = [task_record('remote_migrate', status)]
        moved = self._entry(dst_client, kind, vmid)
        if moved is None:
            raise MigrationError("the move of %s to cluster '%s' ended OK (task %s) but cluster '%s' has no guest %s; "
                                 "the source on cluster '%s' was %s. Check both clusters before running again."
                                 % (label, target, status.get('upid'), target, vmid, source,
                                    'deleted' if spec.delete_source else 'kept'), target)
        now = Side.of(target, moved)
        if spec.target_node and moved.get('node') != spec.target_node:
            inner = self._within(route.__class__(target, 'explicit'), moved, MoveSpec(
                target_node=spec.target_node, online=spec.online, restart=spec.restart,
                restart_timeout=spec.restart_timeout, bwlimit=spec.bwlimit, timeout=spec.timeout,
                with_local_disks=True), target, after={'plan': plan, 'tasks': tasks, 'was': was})
            inner.update(base)
            inner['route_reason'] = route.reason
            return inner
        return self._result(route, was, now, plan, tasks, True, **base)

    def _fingerprint(self, conf) -> Tuple[Optional[str], str]:
        if conf.fingerprint:
            return conf.fingerprint, 'setting'
        try:
            return certificate_fingerprint(conf.api_url, conf.verify, conf.timeout), 'verified TLS connection'
        except ConfigError:
            raise ConfigError("cluster '%s': TLS verification is off for it, so its certificate fingerprint cannot be "
                              "read safely for the move; nothing was changed. Set PROXMOX_CLUSTER_%s_FINGERPRINT (on a "
                              "node: openssl x509 -in /etc/pve/local/pve-ssl.pem -noout -fingerprint -sha256), or "
                              "its CA_BUNDLE." % (conf.name, conf.name), conf.name)
        except ClusterError as exc:
            raise ClusterError("cluster '%s': %s; nothing was changed. Set PROXMOX_CLUSTER_%s_FINGERPRINT, or its "
                               "CA_BUNDLE." % (conf.name, exc, conf.name), conf.name)

    def _target_problems(self, kind, config: Dict, storages: str, bridges: str, client, resources: List[Dict],
                         target: str) -> List[str]:
        """What the target cluster lacks for the guest: a mapped storage, a mapped bridge."""
        problems = []
        known = [s.get('storage') for s in client.get('storage') or []]
        missing = sorted({mapped(storages, s) for s in guest_storages(kind, config)} - set(known))
        if missing:
            problems.append("cluster '%s' has no storage %s (its storages: %s): give target_storage or storage_map"
                            % (target, ', '.join(missing), ', '.join(sorted(filter(None, known)))))
        online = [n for n, e in nodes(resources).items() if e.get('status') == 'online']
        have = set()
        for node in online[:1]:
            for iface in client.get('nodes/%s/network' % node, type='any_bridge') or []:
                if iface.get('type') in ('bridge', 'OVSBridge'):
                    have.add(iface.get('iface'))
        wanted = sorted({mapped(bridges, b) for b in guest_bridges(kind, config)})
        lacking = [b for b in wanted if online and b not in have]
        if lacking:
            problems.append("cluster '%s' has no bridge %s (its bridges: %s): give bridge_map"
                            % (target, ', '.join(lacking), ', '.join(sorted(have)) or 'none'))
        return problems

    def _already_copied(self, route, entry: Dict, copy: Dict, spec: MoveSpec, source: str, target: str,
                        src_client, dst_resources) -> Dict:
        """A guest of this name is on the target cluster already: done, finish a kept source, or explain."""
        kind = kind_of(entry['type'])
        label = describe(kind, entry.get('name'), entry.get('vmid'))
        was = Side.of(source, entry)
        if entry is copy or route.cluster == target:
            # The guest found is the copy (its source deleted, or routing followed it): the move is done.
            now = Side.of(target, copy)
            if spec.target_node and copy.get('node') != spec.target_node:
                return self._within(route, copy, MoveSpec(target_node=spec.target_node, online=spec.online,
                                                          restart=spec.restart, restart_timeout=spec.restart_timeout,
                                                          bwlimit=spec.bwlimit, timeout=spec.timeout,
                                                          with_local_disks=True), target)
            return self._result(route, now, now, [], [], False, target_vmid=now.vmid, source_kept=None,
                                moved_from=list(route.moved_from))
        if copy.get('lock') == MIGRATE_LOCK:
            raise MigrationError(
                "%s is on cluster '%s' (node %s, %s) and a copy is on cluster '%s' (vmid %s, node %s) that is still "
                "locked (migrate): a move is running, or was interrupted midway. Nothing was changed. If a move task "
                "still runs on cluster '%s', wait for it and run again. If none runs, the copy is incomplete: remove "
                "it (on cluster '%s': qm destroy %s --skiplock / pct destroy %s --force), unlock the source (%s unlock "
                "%s) and run again." % (label, source, entry.get('node'), entry.get('status'), target, copy.get('vmid'),
                                        copy.get('node'), source, target, copy.get('vmid'), copy.get('vmid'), kind.cli,
                                        entry.get('vmid')), source)
        if not kept_source(entry) and not (entry.get('status') == 'stopped' and not entry.get('lock')):
            raise GuestConflictError(
                "%s is on cluster '%s' (%s, not a kept source of a move) and cluster '%s' already has a %s named "
                "'%s' (vmid %s): moving it would make two. Nothing was changed. Rename or remove one of them."
                % (label, source, entry.get('status'), target, kind.label, entry.get('name'), copy.get('vmid')),
                source)
        now = Side.of(target, copy)
        plan: List[Dict] = []
        tasks: List[Dict] = []
        if spec.delete_source:
            plan.append({'action': 'delete_source', 'cluster': source, 'node': entry.get('node'),
                         'vmid': int(entry['vmid'])})
            if not self.check_mode:
                tasks.extend(self._delete_kept(src_client, source, kind, entry, spec.timeout))
        result = None
        if spec.target_node and copy.get('node') != spec.target_node:
            result = self._within(route.__class__(target, 'explicit'), copy, MoveSpec(
                target_node=spec.target_node, online=spec.online, restart=spec.restart,
                restart_timeout=spec.restart_timeout, bwlimit=spec.bwlimit, timeout=spec.timeout,
                with_local_disks=True), target, after={'plan': plan, 'tasks': tasks, 'was': was})
            result['route_reason'] = route.reason
        if result is None:
            result = self._result(route, was, now, plan, tasks, bool(plan))
        result.update(target_vmid=now.vmid, source_kept=not spec.delete_source, moved_from=list(route.moved_from))
        return result

    def _delete_kept(self, client, cluster: str, kind, entry: Dict, timeout: float) -> List[Dict]:
        """Remove the kept source of a finished move (its copy is live on the target): unlock it, then destroy it.

        PVE keeps the source locked ``migrate``; removing that lock through the API (``PUT .../config
        delete=lock``) is refused while the lock holds unless ``skiplock`` is given, which only ``root@pam``
        itself may use, not an API token (qm(1): ``qm unlock``). When PVE refuses, the error says how to unlock it.
        """
        writer = LockedWriter(client, cluster, kind, self._sleep, self._clock)
        tasks = []
        if entry.get('lock') == MIGRATE_LOCK:
            try:
                tasks.append(task_record('unlock', client.run_task('PUT', writer.path(entry, 'config'),
                                                                   {'delete': 'lock'}, timeout)))
            except ApiError as exc:
                raise MigrationError(
                    "cluster '%s': %s is the kept source of a finished move (its copy is live on the target) and is "
                    "still locked (migrate); PVE does not let this API token unlock it (%s). Nothing was deleted. "
                    "Unlock it on a node of cluster '%s' (%s unlock %s) and run again to delete it."
                    % (cluster, describe(kind, entry.get('name'), entry.get('vmid')), exc, cluster, kind.cli,
                       entry.get('vmid')), cluster)
        tasks.append(task_record('delete', writer.write(entry, timeout, 'DELETE', '', purge=1)))
        return tasks

    def _failed_midway(self, exc: TaskError, kind, entry: Dict, source: str, target: str, vmid: int, src_client,
                       dst_client) -> ClusterError:
        """The move's task failed: say what is where now (read again), and that a rerun takes it from there."""
        label = describe(kind, entry.get('name'), entry.get('vmid'))
        try:
            src = self._entry(src_client, kind, int(entry['vmid']))
        except ClusterError:
            src = None
        try:
            dst = self._entry(dst_client, kind, vmid)
        except ClusterError:
            dst = None
        where = ["the source on cluster '%s' %s" % (source, (
            'is still there (node %s, %s%s)' % (src.get('node'), src.get('status'),
                                                ', locked %s' % src['lock'] if src.get('lock') else ''))
            if src else 'is gone')]
        where.append("cluster '%s' %s" % (target, ('has a copy, vmid %s (%s%s)' % (
            vmid, dst.get('status'), ', locked %s' % dst['lock'] if dst.get('lock') else '')) if dst
            else 'has no copy'))
        hint = 'Fix the cause and run again: the rerun starts from this state.'
        if dst is not None and dst.get('lock'):
            hint = ("Run again: the rerun finds the incomplete copy and says how to remove it (it never starts a "
                    "second copy).")
        return TaskError('%s. After the failed move of %s: %s. %s' % (exc.message, label, '; '.join(where), hint),
                         exc.cluster, exc.upid, exc.exitstatus, exc.log)


def evacuation_plan(resources: List[Dict], node: str, exclude: Tuple[str, ...] = ()) -> List[Dict]:
    """Where each guest of ``node`` goes so that the other online nodes end balanced by free memory (pure).

    Greedy: the guests, largest memory first, each to the node with most free memory after the moves planned so
    far. Templates are skipped (they move with their node's storage, not by migration), and so are the kept
    sources of moves to other clusters (stopped, locked ``migrate``: PVE moves no locked guest). Returns
    [{vmid, name, type, status, memory, target_node}], in the order to move them.
    """
    online = dict((n, e) for n, e in nodes(resources).items()
                  if e.get('status') == 'online' and n != node and n not in exclude)
    if not online:
        raise GuestConflictError("node '%s' has no other online node in its cluster to move its guests to" % node)
    free = dict((n, int(e.get('maxmem') or 0) - int(e.get('mem') or 0)) for n, e in online.items())
    guests = [g for g in resources if g.get('type') in KINDS and g.get('node') == node and not g.get('template')
              and not kept_source(g)]
    guests.sort(key=lambda g: (-int(g.get('maxmem') or 0), int(g.get('vmid', 0))))
    plan = []
    for guest in guests:
        need = int(guest.get('maxmem') or 0)
        best = max(sorted(free), key=lambda n: free[n])
        free[best] -= need
        plan.append({'vmid': int(guest['vmid']), 'name': guest.get('name'), 'type': guest.get('type'),
                     'status': guest.get('status'), 'memory': need, 'target_node': best})
    return plan


def evacuation(registry: Any, cluster: str, node: str, exclude: Tuple[str, ...] = ()) -> Dict:
    """The plan to empty ``node`` of ``cluster`` (nothing moves): {cluster, node, targets, moves}, ``moves`` as
    ``evacuation_plan`` gives them. For pmx_cluster_info's ``evacuate`` and the MCP server's evacuate_node."""
    cluster = registry.router.resolve_cluster(cluster)
    resources = registry.client(cluster).get('cluster/resources') or []
    check_node(resources, cluster, node)
    exclude = tuple(exclude or ())
    moves = evacuation_plan(resources, node, exclude)
    targets = sorted(n for n, e in nodes(resources).items()
                     if e.get('status') == 'online' and n != node and n not in exclude)
    return {'cluster': cluster, 'node': node, 'targets': targets, 'moves': moves}
