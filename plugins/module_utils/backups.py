# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backups and restores across clusters: run a backup now (vzdump), list and prune backups, restore an archive.

Pure Python (no Ansible import), shared by pmx_backup, pmx_restore and the MCP server. Reads a plan first and
writes only outside check mode; every write waits out the guest's config lock and waits for its task
(tasks.py), so a failed task raises TaskError with its exit status and log tail.

A backup storage may be defined in several clusters (an NFS export or a Proxmox Backup Server datastore): a
backup taken on one cluster is listed, and restored, from another. Backups carry no guest name of their own,
so the name of the guest a backup holds is read from its notes (``{{guestname}}``, the default notes here,
as in PVE's GUI) and, when the notes say otherwise, from the configuration in the archive
(``vzdump/extractconfig``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import time
from fnmatch import fnmatchcase
from typing import Any, Dict, List, Optional

from ansible_collections.pmx.multicluster.plugins.module_utils.errors import (
    ApiError,
    BackupError,
    BackupNotFoundError,
    GuestConflictError,
    GuestNotFoundError,
    TaskError,
    TaskTimeoutError,
    lock_of,
)
from ansible_collections.pmx.multicluster.plugins.module_utils.guests.lookup import choose_node, describe, find
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.checks import check_guest_name, check_vmid
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.kinds import DEFAULT_TIMEOUT, KINDS, kind_of
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.values import parse_tags
from ansible_collections.pmx.multicluster.plugins.module_utils.router import same_name
from ansible_collections.pmx.multicluster.plugins.module_utils.tasks import LockedWriter, poll, task_record

MODES = ('snapshot', 'suspend', 'stop')
COMPRESSIONS = ('zstd', 'gzip', 'lzo', '0')
KEEP_OPTIONS = ('last', 'hourly', 'daily', 'weekly', 'monthly', 'yearly')
DEFAULT_NOTES = '{{guestname}}'
# vzdump-qemu-100-2026_12_02-03_00_00.vma.zst (file storages) or backup/vm/100/2026-12-02T03:00:00Z (PBS)
FILE_ARCHIVE = re.compile(r'(?:^|/)vzdump-(qemu|lxc|openvz)-(\d+)-(\d{4}_\d\d_\d\d-\d\d_\d\d_\d\d)\.(vma|tar)')
PBS_ARCHIVE = re.compile(r'^backup/(vm|ct)/(\d+)/')


# ------------------------------------------------------------------ reading backups

def archive_type(volid: str, fmt: Optional[str] = None) -> Optional[str]:
    """qemu or lxc, from the archive's name (vzdump-qemu-..., .vma, backup/vm/...), else None."""
    volname = str(volid).split(':', 1)[-1]
    found = FILE_ARCHIVE.search(volname)
    if found:
        return 'lxc' if found.group(1) in ('lxc', 'openvz') or found.group(4) == 'tar' else 'qemu'
    found = PBS_ARCHIVE.match(volname)
    if found:
        return 'qemu' if found.group(1) == 'vm' else 'lxc'
    if fmt:
        return 'qemu' if str(fmt).startswith('vma') else 'lxc' if str(fmt).startswith('tar') else None
    return None


def _row(entry: Dict, storage: str) -> Dict:
    ctime = int(entry.get('ctime') or 0)
    return {
        'volid': entry.get('volid'), 'storage': storage, 'vmid': int(entry['vmid']) if entry.get('vmid') else None,
        'type': entry.get('subtype') or archive_type(entry.get('volid'), entry.get('format')),
        'ctime': ctime, 'time': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(ctime)),
        'size': int(entry.get('size') or 0), 'format': entry.get('format'),
        'notes': entry.get('notes') or '', 'protected': bool(int(entry.get('protected') or 0)),
    }


def backup_storages(client: Any, cluster: str, storage: Optional[str] = None) -> List[Dict]:
    """The cluster's storages with content ``backup`` (or just ``storage``): {storage, shared, nodes} each.

    :raises BackupError: ``storage`` does not exist there, or does not hold backups.
    """
    rows = [r for r in client.get('cluster/resources', type='storage') or [] if r.get('type') == 'storage']
    found: Dict[str, Dict] = {}
    for row in rows:
        name = row.get('storage')
        entry = found.setdefault(name, {'storage': name, 'shared': bool(row.get('shared')), 'nodes': [],
                                        'content': str(row.get('content') or '')})
        if row.get('status') == 'available':
            entry['nodes'].append(row.get('node'))
    backups = dict((n, s) for n, s in found.items() if 'backup' in re.split(r'[,;\s]+', s['content']))
    if storage is None:
        return [backups[n] for n in sorted(backups)]
    if storage not in found:
        raise BackupError("cluster '%s' has no storage '%s'; its backup storages: %s"
                          % (cluster, storage, ', '.join(sorted(backups)) or '(none)'), cluster)
    if storage not in backups:
        raise BackupError("cluster '%s': storage '%s' does not hold backups (content %s); its backup storages: %s"
                          % (cluster, storage, found[storage]['content'] or 'none', ', '.join(sorted(backups))
                             or '(none)'), cluster)
    return [backups[storage]]


def list_backups(client: Any, cluster: str, storage: str, vmid: Optional[int] = None,
                 node: Optional[str] = None) -> List[Dict]:
    """The backups on one storage of a cluster (of one vmid), newest first.

    A shared storage is read on one node; a local one (``local``) on every node where it is available (or on
    ``node`` only).
    """
    info = backup_storages(client, cluster, storage)[0]
    nodes = [node] if node else info['nodes'][:1] if info['shared'] else info['nodes']
    if not nodes:
        raise BackupError("cluster '%s': storage '%s' is not available on any online node" % (cluster, storage),
                          cluster)
    seen: Dict[str, Dict] = {}
    params: Dict[str, Any] = {'content': 'backup'}
    if vmid is not None:
        params['vmid'] = int(vmid)
    for one in nodes:
        for entry in client.get('nodes/%s/storage/%s/content' % (one, storage), **params) or []:
            row = _row(entry, storage)
            row['node'] = one
            seen.setdefault(row['volid'], row)
    return sorted(seen.values(), key=lambda r: (-r['ctime'], r['volid']))


def archive_config(client: Any, node: str, volid: str) -> Dict[str, str]:
    """The guest configuration an archive holds (``vzdump/extractconfig``), as key -> value."""
    text = client.get('nodes/%s/vzdump/extractconfig' % node, volume=volid) or ''
    config = {}
    for line in str(text).splitlines():
        if not line or line.startswith('#') or line.startswith('['):
            if line.startswith('['):
                break  # a snapshot section follows the current config
            continue
        key, sep, value = line.partition(':')
        if sep:
            config[key.strip()] = value.strip()
    return config


def archive_name(client: Any, row: Dict) -> Optional[str]:
    """The name of the guest a backup holds: its notes when they are a guest name, else its archived config."""
    notes = (row.get('notes') or '').strip()
    if notes and re.fullmatch(r'[A-Za-z0-9][A-Za-z0-9.-]*', notes):
        return notes
    config = archive_config(client, row['node'], row['volid'])
    return config.get('name') or config.get('hostname')


def guest_backups(client: Any, cluster: str, storage: str, name: Optional[str] = None,
                  vmid: Optional[int] = None) -> List[Dict]:
    """The backups of one guest on a storage, newest first: those holding the guest ``name`` (and of ``vmid``).

    By name, not by the guest's vmid here: on a storage several clusters share, the backups of prod-web01 have
    production's vmid, and the prod-web01 restored into disaster-recovery has another one there.
    """
    rows = list_backups(client, cluster, storage, vmid)
    if name:
        rows = [r for r in rows if same_name(archive_name(client, r), name)]
    return rows


def backups_of(client: Any, cluster: str, name: Optional[str] = None, vmid: Optional[int] = None,
               storage: Optional[str] = None) -> List[Dict]:
    """The backups of a guest (or, with neither name nor vmid, every backup) on ``storage`` or on every backup
    storage of the cluster, newest first."""
    names = [storage] if storage else [s['storage'] for s in backup_storages(client, cluster) if s['nodes']]
    rows: List[Dict] = []
    for one in names:
        rows.extend(guest_backups(client, cluster, one, name, vmid))
    return sorted(rows, key=lambda r: (-r['ctime'], r['volid']))


def find_archive(client: Any, cluster: str, volid: str) -> Dict:
    """The backup row of an archive volume id, read where it is stored.

    :raises BackupNotFoundError: it is not there (the newest backups of that storage named).
    """
    storage, colon, volname = str(volid).partition(':')
    if not (colon and storage and volname.startswith('backup/')):
        raise BackupError("archive '%s' is not a backup volume id; it looks like STORAGE:backup/vzdump-qemu-100-"
                          "2026_12_02-03_00_00.vma.zst (pmx_backup_info lists them)" % volid, cluster)
    rows = list_backups(client, cluster, storage)
    for row in rows:
        if row['volid'] == volid:
            return row
    raise BackupNotFoundError(
        "cluster '%s': archive '%s' not found on storage '%s' (deleted, or pruned?); newest backups there: %s. "
        "Nothing was changed." % (cluster, volid, storage, ', '.join(r['volid'] for r in rows[:3]) or '(none)'),
        cluster, 404)


def newest_backup_of(client: Any, cluster: str, name: str, storage: Optional[str] = None,
                     vmid: Optional[int] = None, guest_type: Optional[str] = None) -> Dict:
    """The newest backup of the guest named ``name`` on the cluster's backup storages (or on ``storage``).

    :raises BackupNotFoundError: none there (the storages searched are named).
    """
    searched, candidates = [], []
    for info in backup_storages(client, cluster, storage):
        searched.append(info['storage'])
        if not info['nodes']:
            continue
        candidates.extend(list_backups(client, cluster, info['storage'], vmid))
    candidates.sort(key=lambda r: (-r['ctime'], r['volid']))
    for row in candidates:
        if guest_type and row['type'] and row['type'] != guest_type:
            continue
        if same_name(archive_name(client, row), name):
            return row
    where = ', '.join(searched) or '(none with content backup)'
    raise BackupNotFoundError(
        "cluster '%s': no backup of '%s'%s on storage(s) %s. Nothing was changed. Give archive: explicitly, or "
        "storage: where its backups are." % (cluster, name, (' (vmid %s)' % vmid) if vmid is not None else '', where),
        cluster, 404)


# ------------------------------------------------------------------ choosing guests

def select_guests(resources: List[Dict], cluster: str, pattern: Optional[str] = None,
                  tags: Optional[List[str]] = None) -> List[Dict]:
    """Guests (VMs and containers, no templates) whose name matches the glob and that carry every tag, by vmid."""
    wanted = [t.lower() for t in tags or []]
    out = []
    for entry in resources:
        if entry.get('type') not in KINDS or entry.get('template'):
            continue
        if pattern and not fnmatchcase(str(entry.get('name') or '').lower(), pattern.lower()):
            continue
        have = [t.lower() for t in parse_tags(entry.get('tags'))]
        if any(t not in have for t in wanted):
            continue
        out.append(entry)
    if not out:
        raise GuestNotFoundError("cluster '%s': no guest matches %s" % (cluster, ' and '.join(filter(None, [
            ("name pattern '%s'" % pattern) if pattern else '', ('tags %s' % ', '.join(wanted)) if wanted else '']))),
            cluster, 404)
    return sorted(out, key=lambda e: int(e['vmid']))


def keep_counts(keep: Optional[Dict[str, Any]]) -> Dict[str, int]:
    """``{last: 3, daily: 7}`` checked, as ``{'keep-last': 3, 'keep-daily': 7}``.

    :raises BackupError: an unknown key, a count below 1, or nothing to keep by.
    """
    out = {}
    for key, value in sorted((keep or {}).items()):
        if key not in KEEP_OPTIONS:
            raise BackupError('keep: unknown key %r; the keys are %s' % (key, ', '.join(KEEP_OPTIONS)))
        if value is None:
            continue
        try:
            count = int(value)
        except (TypeError, ValueError):
            raise BackupError('keep.%s must be a number of backups, not %r' % (key, value))
        if count < 1:
            raise BackupError('keep.%s must be at least 1 (leave it out to not keep by %s)' % (key, key))
        out['keep-' + key] = count
    if not out:
        raise BackupError('keep: give at least one of %s, for example keep: {last: 3}' % ', '.join(KEEP_OPTIONS))
    return out


def keep_policy(keep: Optional[Dict[str, Any]]) -> str:
    """``{last: 3, daily: 7}`` as PVE's prune-backups string ``keep-daily=7,keep-last=3``."""
    return ','.join('%s=%d' % item for item in sorted(keep_counts(keep).items()))


def _period(key: str, ctime: int) -> str:
    when = time.gmtime(ctime)
    if key == 'keep-last':
        return ''
    if key == 'keep-weekly':
        return time.strftime('%G-%V', when)
    return time.strftime({'keep-hourly': '%Y-%m-%d %H', 'keep-daily': '%Y-%m-%d', 'keep-monthly': '%Y-%m',
                          'keep-yearly': '%Y'}[key], when)


def prune_marks(rows: List[Dict], keep: Dict[str, int]) -> Dict[str, str]:
    """Which of one guest's backups a keep policy keeps: volid -> keep, remove or protected.

    Proxmox VE's rules (pvesm(1) prune-backups, shared with Proxmox Backup Server): newest first, keep-last keeps
    the newest N; then each of hourly, daily, weekly, monthly, yearly keeps the newest backup of each of its
    next N periods, periods already covered by a kept backup not counting; protected backups are never removed
    and count for nothing. Used for one guest's backups on a storage that several clusters share, where PVE's
    own prune (by vmid) would mix guests of different clusters.
    """
    ordered = sorted(rows, key=lambda r: (-r['ctime'], r['volid']))
    marks: Dict[str, str] = {}
    for key in ('keep-last', 'keep-hourly', 'keep-daily', 'keep-weekly', 'keep-monthly', 'keep-yearly'):
        count = keep.get(key, 0)
        if not count:
            continue

        def period(row, key=key):
            return row['volid'] if key == 'keep-last' else _period(key, row['ctime'])
        covered = set(period(r) for r in ordered if marks.get(r['volid']) == 'keep')
        chosen = set()
        for row in ordered:
            if row['volid'] in marks:
                continue
            if row.get('protected'):
                marks[row['volid']] = 'protected'
                continue
            pid = period(row)
            if pid in covered:
                continue
            if pid not in chosen:
                if len(chosen) >= count:
                    break
                chosen.add(pid)
                marks[row['volid']] = 'keep'
            else:
                marks[row['volid']] = 'remove'
    for row in ordered:
        marks.setdefault(row['volid'], 'protected' if row.get('protected') else 'remove')
    return marks


# ------------------------------------------------------------------ backup now

class Backups:
    """Backups of the guests of one cluster: run now, list, prune."""

    def __init__(self, client: Any, cluster: str, check_mode: bool = False, sleep=time.sleep, clock=time.monotonic):
        self.client = client
        self.cluster = cluster
        self.check_mode = check_mode
        self.sleep = sleep
        self.clock = clock

    def _writer(self, guest: Dict) -> LockedWriter:
        return LockedWriter(self.client, self.cluster, kind_of(guest['type']), self.sleep, self.clock)

    def backup(self, guest: Dict, storage: str, mode: str = 'snapshot', compress: str = 'zstd',
               notes: Optional[str] = DEFAULT_NOTES, protected: bool = False,
               timeout: float = DEFAULT_TIMEOUT) -> Dict:
        """Back up one guest (its /cluster/resources entry) to ``storage`` now; returns the archive's row.

        Waits out the guest's config lock (another backup, a migration...) up to ``timeout``; a guest another
        vzdump holds at the node level makes PVE's task wait ``lockwait`` (the timeout, in minutes) and fail.
        In check mode nothing is sent and the row has ``volid`` None.

        :raises GuestLockedError: still locked at the timeout. :raises TaskError: the job failed (storage full...).
        """
        if mode not in MODES:
            raise BackupError("mode must be one of %s, not '%s'" % (', '.join(MODES), mode), self.cluster)
        if str(compress) not in COMPRESSIONS:
            raise BackupError("compress must be one of %s, not '%s'" % (', '.join(COMPRESSIONS), compress),
                              self.cluster)
        info = backup_storages(self.client, self.cluster, storage)[0]
        if guest['node'] not in info['nodes']:
            raise BackupError("cluster '%s': storage '%s' is not available on node '%s' of %s"
                              % (self.cluster, storage, guest['node'],
                                 describe(kind_of(guest['type']), guest.get('name'), guest.get('vmid'))), self.cluster)
        out = {'name': guest.get('name'), 'vmid': int(guest['vmid']), 'type': guest['type'], 'node': guest['node'],
               'storage': storage, 'volid': None, 'mode': mode, 'compress': str(compress), 'task': None}
        if self.check_mode:
            return out
        writer = self._writer(guest)
        deadline = self.clock() + timeout
        params: Dict[str, Any] = {'vmid': str(guest['vmid']), 'storage': storage, 'mode': mode,
                                  'compress': str(compress), 'lockwait': max(1, int(timeout // 60))}
        if notes:
            params['notes-template'] = notes
        if protected:
            params['protected'] = 1

        writer.wait_unlocked(guest, timeout)

        def probe():
            before = set(r['volid'] for r in list_backups(self.client, self.cluster, storage, guest['vmid'],
                                                          node=None if info['shared'] else guest['node']))
            try:
                status = self.client.run_task('POST', 'nodes/%s/vzdump' % guest['node'], params,
                                              max(1.0, deadline - self.clock()))
            except TaskError as exc:
                if isinstance(exc, TaskTimeoutError) or lock_of(exc) is None:
                    raise
                return False, lock_of(exc)  # locked between our read and the job: wait again
            return True, (status, before)

        status, before = poll(probe, timeout, lambda lock: writer.locked_error(guest, lock or 'backup', timeout),
                              sleep=self.sleep, clock=self.clock)
        after = list_backups(self.client, self.cluster, storage, guest['vmid'],
                             node=None if info['shared'] else guest['node'])
        made = [r for r in after if r['volid'] not in before]
        if not made:
            raise TaskError("cluster '%s': the vzdump task of %s ended %s but made no archive on storage '%s' "
                            "(the guest moved to another node?)"
                            % (self.cluster, describe(kind_of(guest['type']), guest.get('name'), guest['vmid']),
                               status.get('exitstatus'), storage), self.cluster, status.get('upid'))
        row = made[0]
        out.update(volid=row['volid'], size=row['size'], ctime=row['ctime'], time=row['time'],
                   protected=row['protected'], notes=row['notes'], task=task_record('backup', status))
        return out

    def prune(self, storage: str, keep: Dict[str, Any], rows: Optional[List[Dict]] = None) -> Dict:
        """Remove the backups a keep policy (``{last: 3}``) does not keep; protected ones always stay.

        With ``rows`` (one guest's backups, from ``guest_backups``), only those are judged and removed one by one:
        on a storage several clusters share, one vmid may hold backups of different guests (production's and
        disaster-recovery's vmid 100), which PVE's own prune, by vmid, would count together. Without ``rows``,
        PVE prunes the whole storage (``DELETE prunebackups``, every vmid by itself). Check mode removes nothing.
        Returns ``{changed, removed, kept, tasks}``.
        """
        counts = keep_counts(keep)
        info = backup_storages(self.client, self.cluster, storage)[0]
        if not info['nodes']:
            raise BackupError("cluster '%s': storage '%s' is not available on any online node"
                              % (self.cluster, storage), self.cluster)
        node = info['nodes'][0]
        tasks = []
        if rows is not None:
            marks = prune_marks(rows, counts)
            removed = sorted(v for v, m in marks.items() if m == 'remove')
            if not self.check_mode:
                where = dict((r['volid'], r.get('node') or node) for r in rows)
                for volid in removed:
                    status = self.client.run_task('DELETE', 'nodes/%s/storage/%s/content/%s'
                                                  % (where[volid], storage, volid))
                    tasks.append(task_record('delete', status))
        else:
            path = 'nodes/%s/storage/%s/prunebackups' % (node, storage)
            params = {'prune-backups': keep_policy(keep)}
            marks = dict((m['volid'], m.get('mark')) for m in self.client.get(path, **params) or [])
            removed = sorted(v for v, m in marks.items() if m == 'remove')
            if removed and not self.check_mode:
                tasks.append(task_record('prune', self.client.run_task('DELETE', path, params)))
        kept = sorted(v for v, m in marks.items() if m != 'remove')
        return {'changed': bool(removed), 'removed': removed, 'kept': kept, 'tasks': tasks}


# ------------------------------------------------------------------ restore

def bridge_override(value: str, bridge: str) -> str:
    """A net value with its bridge replaced (or added)."""
    parts = [p for p in str(value).split(',') if not p.startswith('bridge=')]
    return ','.join(parts + ['bridge=%s' % bridge])


class Restore:
    """A restore of one archive into one cluster: planned (read only), then applied."""

    def __init__(self, registry: Any, check_mode: bool = False, sleep=time.sleep, clock=time.monotonic):
        self.registry = registry
        self.check_mode = check_mode
        self.sleep = sleep
        self.clock = clock

    def plan(self, cluster: Optional[str] = None, name: Optional[str] = None, archive: Optional[str] = None,
             storage: Optional[str] = None, new_name: Optional[str] = None, vmid: Optional[int] = None,
             node: Optional[str] = None, target_storage: Optional[str] = None, bridge: Optional[str] = None,
             force: bool = False) -> Dict:
        """What a restore would do, read only: the archive, the target (cluster, node, vmid, name) and what it replaces.

        ``name`` is the guest whose backup is restored; without ``archive`` its newest backup on the target
        cluster's backup storages (or ``storage``) is taken. The restored guest is named ``new_name`` or
        ``name``. Its vmid: ``vmid``, else the archive's if free on the target cluster, else the next free one.

        :raises BackupNotFoundError: no such archive / no backup of the guest.
        :raises GuestConflictError: the vmid or name is taken by a guest and ``force`` is not set.
        """
        if not name and not archive:
            raise BackupError('give name (the guest whose newest backup to restore) or archive (a backup volume id)')
        target_name = new_name or name
        if target_name:
            check_guest_name(target_name)
        check_vmid(vmid)
        route = self.registry.select(cluster=cluster, name=target_name, vmid=None, lookup=True)
        client = self.registry.client(route.cluster)
        if archive:
            row = find_archive(client, route.cluster, archive)
        else:
            row = newest_backup_of(client, route.cluster, name, storage)
        gtype = row['type'] or 'qemu'
        kind = kind_of(gtype)
        config = archive_config(client, row['node'], row['volid'])
        archived_name = config.get(kind.name_key)
        target_name = target_name or archived_name
        resources = client.get('cluster/resources') or []
        replaced = None
        chosen_vmid_hint = None
        existing = find(kind, resources, route.cluster, name=target_name) if target_name else None
        if vmid is not None:
            holder = next((r for r in resources if r.get('type') in KINDS and int(r.get('vmid', -1)) == int(vmid)),
                          None)
            if holder is not None and (existing is None or int(existing['vmid']) != int(vmid)):
                if not force or holder.get('type') != gtype:
                    raise GuestConflictError(
                        "cluster '%s': vmid %s is taken by %s; nothing was changed. Choose another vmid, or give "
                        "force: true to replace it%s." % (route.cluster, vmid, describe(
                            kind_of(holder['type']), holder.get('name'), holder['vmid']),
                            '' if holder.get('type') == gtype else ' (it must be a %s too)' % kind.label),
                        route.cluster)
                existing = holder
        if existing is not None:
            replaced = {'vmid': int(existing['vmid']), 'name': existing.get('name'), 'node': existing.get('node'),
                        'status': existing.get('status'), 'type': existing.get('type')}
            if existing.get('type') != gtype:
                raise GuestConflictError(
                    "cluster '%s': '%s' is a %s there, and the archive holds a %s; nothing was changed."
                    % (route.cluster, target_name, kind_of(existing['type']).label, kind.label), route.cluster)
        if replaced is not None and force and replaced['status'] == 'running':
            raise BackupError(
                "cluster '%s': %s is running; a restore replaces only a stopped guest. Nothing was changed. Stop it "
                "first (pmx_vm / pmx_lxc state: stopped), then run again." % (route.cluster, describe(
                    kind, replaced['name'], replaced['vmid'])), route.cluster)
        if replaced is not None:
            chosen_vmid, chosen_node, node_reason = replaced['vmid'], replaced['node'], 'the guest it replaces'
            if node and node != chosen_node:
                raise GuestConflictError(
                    "cluster '%s': %s is on node '%s', not '%s'; a restore over it stays on its node"
                    % (route.cluster, describe(kind, replaced['name'], replaced['vmid']), chosen_node, node),
                    route.cluster)
        else:
            taken = set(int(r['vmid']) for r in resources if r.get('type') in KINDS)
            if vmid is not None:
                chosen_vmid = int(vmid)
            elif row['vmid'] is not None and int(row['vmid']) not in taken:
                chosen_vmid = int(row['vmid'])
            else:
                chosen_vmid = None  # /cluster/nextid when applied (shown as the next free one)
                chosen_vmid_hint = int(client.get('cluster/nextid'))
            conf = self.registry.cluster(route.cluster)
            chosen_node, node_reason = choose_node(resources, route.cluster, node, getattr(conf, 'default_node', None))
            # A new guest where its name routes it: no other cluster may have one of that name already.
            self.registry.check_not_elsewhere(route, target_name, kind.label)
        after = dict((k, v) for k, v in config.items() if k in ('name', 'hostname', 'cores', 'memory', 'sockets')
                     or kind.is_disk(k) or kind.is_net(k))
        if target_name:
            after[kind.name_key] = target_name
        if bridge:
            for key in [k for k in after if kind.is_net(k)]:
                after[key] = bridge_override(after[key], bridge)
        plan = {
            'cluster': route.cluster, 'route_reason': route.reason, 'archive': row['volid'],
            'archive_time': row['time'],
            'archive_vmid': row['vmid'], 'archive_name': archived_name, 'type': gtype, 'name': target_name,
            'vmid': chosen_vmid if chosen_vmid is not None else chosen_vmid_hint, 'node': chosen_node,
            'node_reason': node_reason, 'replaced': replaced, 'target_storage': target_storage, 'bridge': bridge,
            'exists': replaced is not None and not force, 'force': bool(force), 'config': config, 'after': after,
            '_fresh_vmid': chosen_vmid is None, '_client': client, '_resources': resources,
        }
        return plan

    def apply(self, plan: Dict, start: bool = False, unique: bool = False, timeout: float = DEFAULT_TIMEOUT) -> Dict:
        """Run the restore task of a plan (waiting out the lock of a guest it replaces); returns the task record."""
        client = plan['_client']
        kind = kind_of(plan['type'])
        params: Dict[str, Any] = {}
        if plan['target_storage']:
            params['storage'] = plan['target_storage']
        if plan['name']:
            params[kind.name_key] = plan['name']
        if plan['bridge']:
            for key, value in plan['config'].items():
                if kind.is_net(key):
                    params[key] = bridge_override(value, plan['bridge'])
        if start:
            params['start'] = 1
        if unique:
            params['unique'] = 1
        if plan['replaced'] is not None:
            params['force'] = 1
            guest = dict(plan['replaced'])
            LockedWriter(client, plan['cluster'], kind, self.sleep, self.clock).wait_unlocked(guest, timeout)
        if plan['type'] == 'qemu':
            params['archive'] = plan['archive']
        else:
            params.update(ostemplate=plan['archive'], restore=1)
        vmid = plan['vmid']
        for attempt in range(5):
            if plan['_fresh_vmid'] and attempt:
                vmid = int(client.get('cluster/nextid'))
            params['vmid'] = vmid
            try:
                status = client.run_task('POST', 'nodes/%s/%s' % (plan['node'], plan['type']), params, timeout)
                break
            except (ApiError, TaskError) as exc:
                if not plan['_fresh_vmid'] or 'already exists' not in str(exc) or attempt == 4:
                    raise
        plan['vmid'] = vmid
        return task_record('restore', status)


def public_plan(plan: Dict) -> Dict:
    """A restore plan without its private keys (the client, the resources read)."""
    return dict((k, v) for k, v in plan.items() if not k.startswith('_'))
