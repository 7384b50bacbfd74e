"""pvebackup: backup (vzdump), prune and restore for the lab's fake clusters, and a backup storage they share.

fakepve answers ``POST /nodes/{node}/vzdump`` and the prune endpoints from the schema only (nothing
changes) and refuses ``POST /nodes/{node}/qemu`` with ``archive``. ``BackupModel`` (a mixin of the lab's
FakePve) models them from PVE's documentation:

- vzdump(1), https://pve.proxmox.com/pve-docs-7/vzdump.1.html, and the Backup and Restore chapter,
  https://raw.githubusercontent.com/proxmox/pve-docs/master/vzdump.adoc
  (https://pve.proxmox.com/mediawiki/index.php?title=Backup_and_Restore): a backup is a full backup of the
  guest's configuration and data, one file per guest named ``vzdump-{qemu,lxc}-<vmid>-<Y_m_d-H_M_S>`` with
  ``.vma`` (VMs) or ``.tar`` (containers) and the compressor's extension (``.gz``, ``.lzo``, ``.zst``) in
  the ``dump`` directory of a storage with content ``backup``; modes snapshot, suspend, stop; one vzdump
  at a time per node (the global lock ``/var/run/vzdump.lock``, waited for up to ``lockwait`` minutes);
  ``notes-template`` with ``{{cluster}}``, ``{{guestname}}``, ``{{node}}`` and ``{{vmid}}``; ``protected``;
  ``prune-backups`` instead of the storage's retention; guests on other nodes are skipped.
- Restore: qmrestore(1) (``qm create --archive``, task ``qmrestore``; ``--force`` overwrites an existing
  VM, ``--unique`` gives new MAC addresses, ``--storage`` puts the disks elsewhere) and pct(1) restore
  (``pct create --restore --ostemplate <archive>``, task ``vzrestore``), both in the chapter above; options
  given with the restore override the archive's configuration ("override settings" of PVE 7.2+).
- ``GET /nodes/{node}/vzdump/extractconfig``: the configuration a backup holds (the API viewer,
  https://pve.proxmox.com/pve-docs/api-viewer/, /nodes/{node}/vzdump/extractconfig).
- Prune: pvesm(1) ``prune-backups`` (quoted in https://forum.proxmox.com/threads/backups-trigger-pruning-manually.109938/)
  and the retention rules PVE shares with Proxmox Backup Server (https://pbs.proxmox.com/docs-2/maintenance.html):
  keep-last, then keep-hourly/daily/weekly/monthly/yearly, each over the backups not kept yet, the newest
  of each period; protected backups are never removed; without options the storage's own
  ``prune-backups`` applies, and without that everything is kept (``keep-all=1``).
- A storage shared by several clusters (``share_backup_storage``): an NFS storage defined with the same
  server and export in every cluster, as the chapter suggests for backups; each cluster sees the same
  files, so a backup taken on one is listed and restorable on the others.

What the lab adds to PVE: the archive's data is not stored, only its size (half the guest's disks when
compressed) and the guest's configuration; archive names use UTC, and two backups of one guest in the same
second get the next free second (PVE would overwrite).
"""

import asyncio
import copy
import datetime
import itertools
import re
import time

SHARED_BACKUP_STORAGE = 'backup-nfs'
GIB = 1024 ** 3
COMPRESS_EXT = {'0': '', '1': '.lzo', 'lzo': '.lzo', 'gzip': '.gz', 'zstd': '.zst'}
VZDUMP_LOCK = '/var/run/vzdump.lock'
DRIVE_KEY = re.compile(r'^(?:ide|sata|scsi|virtio|efidisk|tpmstate)\d+$')
MOUNT_KEY = re.compile(r'^(?:rootfs|mp\d+)$')
PRUNE_KEYS = ('keep-last', 'keep-hourly', 'keep-daily', 'keep-weekly', 'keep-monthly', 'keep-yearly')


def share_backup_storage(pves, name=SHARED_BACKUP_STORAGE, shared_with=()):
    """Define one NFS backup storage in every fake of ``pves``: the very same storage entry (files, space) as
    the lab clusters of ``shared_with`` already have, or a new one."""
    store = next((c.pve.storages[name] for c in shared_with if name in c.pve.storages), None)
    if store is None:
        store = {'type': 'nfs', 'server': '10.99.0.10', 'export': '/export/pve-backup', 'path': '/mnt/pve/' + name,
                 'content': 'backup', 'shared': 1, 'active': 1, 'files': set(), 'volumes': {}, 'avail': 500 * GIB}
    for pve in pves:
        pve.storages[name] = store
    return store


def _size_bytes(text):
    found = re.match(r'^(\d+(?:\.\d+)?)([KMGT]?)$', str(text or ''))
    if not found:
        return 0
    return int(float(found.group(1)) * {'': 1, 'K': 1024, 'M': 1024 ** 2, 'G': GIB, 'T': 1024 ** 4}[found.group(2)])


def _props(value):
    """'vol,k=v,...' as (volume, {k: v})."""
    parts = str(value).split(',')
    props = {}
    for part in parts[1:]:
        key, sep, val = part.partition('=')
        if sep:
            props[key] = val
    return parts[0], props


def _is_disk(key, value):
    volume, props = _props(value)
    return volume not in ('', 'none', 'cdrom') and props.get('media') != 'cdrom' and ':' in volume \
        and not volume.endswith(':cloudinit')


def parse_prune(text):
    """A prune-backups property string (keep-last=3,keep-daily=2) as a dict of ints; {} for keep-all."""
    out = {}
    for part in filter(None, str(text or '').split(',')):
        key, _sep, value = part.partition('=')
        key = key.strip()
        if key == 'keep-all':
            if int(value or 1):
                return {}
            continue
        if key in PRUNE_KEYS and int(value) > 0:
            out[key] = int(value)
    return out


def _period(key, ctime):
    when = datetime.datetime.fromtimestamp(ctime, datetime.timezone.utc)
    if key == 'keep-hourly':
        return when.strftime('%Y-%m-%d %H')
    if key == 'keep-daily':
        return when.strftime('%Y-%m-%d')
    if key == 'keep-weekly':
        iso = when.isocalendar()
        return '%d-%02d' % (iso[0], iso[1])
    if key == 'keep-monthly':
        return when.strftime('%Y-%m')
    return when.strftime('%Y')


def prune_marks(backups, keep):
    """PVE's prune selection over one guest's backups (dicts with volid, ctime, protected): volid -> mark.

    As Proxmox Backup Server's prune (the rules PVE shares): newest first; keep-last keeps the newest N; each
    later option keeps the newest backup of each of its next N periods, where periods already covered by a
    kept backup do not count; protected backups are 'protected' and count for nothing; the rest 'remove'.
    With no keep option everything is kept.
    """
    ordered = sorted(backups, key=lambda b: (-b['ctime'], b['volid']))
    marks = {}
    if not keep:
        return dict((b['volid'], 'protected' if b.get('protected') else 'keep') for b in ordered)
    for key in PRUNE_KEYS:
        count = keep.get(key, 0)
        if not count:
            continue
        def period(b, key=key):
            return b['volid'] if key == 'keep-last' else _period(key, b['ctime'])
        covered = set(period(b) for b in ordered if marks.get(b['volid']) == 'keep')
        chosen = set()
        for b in ordered:
            if b['volid'] in marks:
                continue
            if b.get('protected'):
                marks[b['volid']] = 'protected'
                continue
            pid = period(b)
            if pid in covered:
                continue
            if pid not in chosen:
                if len(chosen) >= count:
                    break
                chosen.add(pid)
                marks[b['volid']] = 'keep'
            else:
                marks[b['volid']] = 'remove'
    for b in ordered:
        marks.setdefault(b['volid'], 'protected' if b.get('protected') else 'remove')
    return marks


class BackupModel(object):
    """Mixin of the lab's FakePve: vzdump, extractconfig, prune and restore (see the module docstring)."""

    def __init__(self, *args, **kwargs):
        super(BackupModel, self).__init__(*args, **kwargs)
        # node -> the vmid whose vzdump holds the node's vzdump lock (another vzdump running)
        self.vzdump_locks = {}
        # PVE seconds the backup of one guest takes, its config lock 'backup' held (needs time_scale > 0).
        self.backup_secs = 0
        self._backup_jobs = itertools.count(1)

    def _routes_backup(self):
        prune = '/nodes/{node}/storage/{storage}/prunebackups'
        return [('POST', '/nodes/{node}/vzdump', self._vzdump),
                ('GET', '/nodes/{node}/vzdump/extractconfig', self._vzdump_extractconfig),
                ('GET', prune, self._prune_list), ('DELETE', prune, self._prune_delete)]

    # ------------------------------------------------------------ helpers

    def _routing(self):
        from fakepve import routing
        return routing

    def _backup_volume(self, volid):
        """(storage id, volname, volume dict or None) of a backup volume id."""
        sid, _sep, volname = str(volid).partition(':')
        store = self.storages.get(sid)
        if store is None:
            raise self._routing().die("storage '{0}' does not exist".format(sid))
        return sid, volname, store.get('volumes', {}).get(volname)

    def _backups_on(self, sid):
        """The backup volumes of a storage that this model made (with the guest's config)."""
        store = self.storages.get(sid) or {}
        out = []
        for volname, vol in store.get('volumes', {}).items():
            if vol.get('content') == 'backup' and vol.get('guest'):
                out.append(dict(vol, volid='{0}:{1}'.format(sid, volname), volname=volname))
        return out

    @staticmethod
    def _take_lock(guest, lock):
        guest.lock = lock
        guest.config['lock'] = lock

    @staticmethod
    def _drop_lock(guest):
        guest.lock = None
        guest.config.pop('lock', None)

    def _guest_disks_bytes(self, guest, kind):
        total = 0
        for key, value in guest.config.items():
            if (kind == 'qemu' and DRIVE_KEY.match(key) and _is_disk(key, value)) or \
                    (kind == 'lxc' and MOUNT_KEY.match(key)):
                total += _size_bytes(_props(value)[1].get('size'))
        return total

    # ------------------------------------------------------------ vzdump

    async def _vzdump(self, v, user):
        """POST /nodes/{node}/vzdump: one task (type vzdump) backing up each guest given on this node."""
        routing = self._routing()
        node = v['node']
        if v.get('all') or v.get('pool') or v.get('stdout'):
            raise routing.die('the lab models vzdump of guests given by vmid only')
        vmids = [int(x) for x in routing.split_list(v.get('vmid'))]
        if not vmids:
            raise routing.param_error(vmid="you need to specify 'vmid', 'all' or 'pool'")
        sid = v.get('storage') or 'local'
        store = self._active_store(sid, node)
        if 'backup' not in routing.split_list(store.get('content')):
            raise routing.die("can't use storage '{0}' for backups - wrong content type".format(sid))
        self.require(user, '/storage/' + sid, 'Datastore.AllocateSpace')
        for vmid in vmids:
            self.require(user, '/vms/{0}'.format(vmid), 'VM.Backup')
        local, skipped = [], []
        for vmid in vmids:
            guest = self.guest(vmid)
            if guest is None:
                raise routing.die('Unable to find VM {0}'.format(vmid))
            (local if guest.node == node else skipped).append(guest)
        mode = v.get('mode') or 'snapshot'
        compress = str(v.get('compress') if v.get('compress') is not None else '0')
        lockwait = int(v.get('lockwait') if v.get('lockwait') is not None else 180)
        keep = parse_prune(v['prune-backups']) if v.get('prune-backups') else parse_prune(store.get('prune-backups'))
        # The job id makes the first log line unique: the body finds its own task record by it.
        log = ['INFO: starting new backup job: vzdump {0} --mode {1} --storage {2} --job-id {3}'.format(
            ' '.join(str(x) for x in vmids), mode, sid, v.get('job-id') or 'lab-%d' % next(self._backup_jobs))]
        if skipped:
            log.append('INFO: skip external VMs: ' + ' '.join(str(g.vmid) for g in skipped))

        async def body():
            # The task's own record (made just before its body runs), to log each step as PVE does.
            record = next(r for r in reversed(self.tasklog) if r['type'] == 'vzdump' and r['node'] == node
                          and r['status'] == 'running' and r['log'] and r['log'][0] == log[0])
            holder = self.vzdump_locks.get(node)
            if holder is not None:
                record['log'].append('INFO: trying to get global lock - waiting...')
                await self.pause(lockwait * 60)
                if self.vzdump_locks.get(node) is not None:
                    raise self._task_error("can't acquire lock '{0}' - got timeout".format(VZDUMP_LOCK))
            self.vzdump_locks[node] = 'job'
            errors = []
            try:
                for guest in local:
                    error = await self._backup_one(guest, node, sid, mode, compress, v, keep, record['log'].append)
                    if error:
                        errors.append(guest.vmid)
            finally:
                self.vzdump_locks.pop(node, None)
            if errors:
                raise self._task_error('job errors')
            return 'INFO: Backup job finished successfully'
        tid = str(vmids[0]) if len(vmids) == 1 else ''
        return await self.task(node, 'vzdump', tid, user, body, lock=False, log=log)

    @staticmethod
    def _task_error(message):
        from fakepve.model import TaskError
        return TaskError(message)

    def _archive_name(self, store, kind, vmid, ctime, compress):
        ext = ('.vma' if kind == 'qemu' else '.tar') + COMPRESS_EXT.get(compress, '.zst')
        volumes = store.setdefault('volumes', {})
        while True:
            stamp = time.strftime('%Y_%m_%d-%H_%M_%S', time.gmtime(ctime))
            volname = 'backup/vzdump-{0}-{1}-{2}{3}'.format(kind, vmid, stamp, ext)
            if volname not in volumes:
                return volname, ctime, ext.lstrip('.')
            ctime += 1

    async def _backup_one(self, guest, node, sid, mode, compress, v, keep, log):
        """Back up one guest to the storage; returns an error line (the job goes on with the next guest)."""
        kind = 'lxc' if guest in getattr(self, 'cts', []) else 'qemu'
        label = 'CT' if kind == 'lxc' else 'VM'
        log('INFO: Starting Backup of VM {0} ({1})'.format(guest.vmid, kind))
        if guest.lock:
            line = 'ERROR: Backup of VM {0} failed - {1} is locked ({2})'.format(guest.vmid, label, guest.lock)
            log(line)
            return line
        running = guest.status == 'running'
        store = self.storages[sid]
        self._take_lock(guest, 'backup')
        try:
            log('INFO: backup mode: {0}'.format(mode))
            if running and mode == 'stop':
                log('INFO: stopping virtual guest')
                guest.status = 'stopped'
            elif running and mode == 'suspend':
                log('INFO: suspending guest')
            await self.pause(self.backup_secs)
            size = self._guest_disks_bytes(guest, kind)
            if compress != '0':
                size //= 2
            if 'avail' in store and size > store['avail']:
                line = ('ERROR: Backup of VM {0} failed - vma_queue_write: write error - No space left on device'
                        .format(guest.vmid))
                log(line)
                return line
            volname, ctime, fmt = self._archive_name(store, kind, guest.vmid, int(time.time()), compress)
            if 'avail' in store:
                store['avail'] -= size
            vol = {'content': 'backup', 'format': fmt, 'size': size, 'ctime': ctime, 'vmid': guest.vmid,
                   'guest': {'type': kind, 'name': guest.name, 'node': node, 'cluster': self.cluster_name,
                             'config': dict((k, x) for k, x in copy.deepcopy(guest.config).items()
                                            if k not in ('lock', 'digest'))}}
            if v.get('notes-template'):
                vol['notes'] = self._notes(v['notes-template'], guest, node)
            if v.get('protected'):
                vol['protected'] = True
            store['volumes'][volname] = vol
            log("INFO: creating vzdump archive '/mnt/pve/{0}/dump/{1}'".format(sid, volname.split('/', 1)[1]))
        finally:
            self._drop_lock(guest)
            if running and mode == 'stop':
                log('INFO: restarting guest')
                guest.status = 'running'
            elif running and mode == 'suspend':
                log('INFO: resuming guest')
        if keep:
            self._prune(sid, kind, guest.vmid, keep)
        log('INFO: Finished Backup of VM {0}'.format(guest.vmid))
        return None

    def _notes(self, template, guest, node):
        values = {'cluster': self.cluster_name, 'guestname': guest.name, 'node': node, 'vmid': str(guest.vmid)}
        text = re.sub(r'\{\{(cluster|guestname|node|vmid)\}\}', lambda m: values[m.group(1)], template)
        return text.replace('\\n', '\n').replace('\\\\', '\\')

    async def _vzdump_extractconfig(self, v, user):
        """GET /nodes/{node}/vzdump/extractconfig: the guest configuration the archive holds, as its file text."""
        sid, _volname, vol = self._backup_volume(v['volume'])
        self.require(user, '/storage/' + sid, 'Datastore.AllocateSpace')
        if vol is None or not vol.get('guest'):
            raise self._routing().die("volume '{0}' does not exist".format(v['volume']))
        config = vol['guest']['config']
        return ''.join('{0}: {1}\n'.format(k, config[k]) for k in sorted(config))

    # ------------------------------------------------------------ prune

    def _prune_selection(self, sid, kind, vmid, keep):
        backups = [b for b in self._backups_on(sid)
                   if (kind is None or b['guest']['type'] == kind) and (vmid is None or b['vmid'] == vmid)]
        groups = {}
        for b in backups:
            groups.setdefault((b['guest']['type'], b['vmid']), []).append(b)
        out = []
        for (gtype, gvmid), group in sorted(groups.items()):
            marks = prune_marks(group, keep)
            for b in sorted(group, key=lambda b: -b['ctime']):
                out.append({'volid': b['volid'], 'ctime': b['ctime'], 'mark': marks[b['volid']], 'type': gtype,
                            'vmid': gvmid})
        return out

    def _prune(self, sid, kind, vmid, keep):
        store = self.storages[sid]
        removed = []
        for item in self._prune_selection(sid, kind, vmid, keep):
            if item['mark'] == 'remove':
                vol = store['volumes'].pop(item['volid'].split(':', 1)[1], None)
                if vol and 'avail' in store:
                    store['avail'] += int(vol.get('size') or 0)
                removed.append(item['volid'])
        return removed

    def _prune_keep(self, v):
        store = self._store(v['storage'])
        return parse_prune(v['prune-backups']) if v.get('prune-backups') else parse_prune(store.get('prune-backups'))

    async def _prune_list(self, v, user):
        """GET .../prunebackups: what a prune would keep and remove (a dry run)."""
        self._active_store(v['storage'], v['node'])
        return self._prune_selection(v['storage'], v.get('type'), v.get('vmid'), self._prune_keep(v))

    async def _prune_delete(self, v, user):
        """DELETE .../prunebackups: a task (type prunebackups) removing what the selection marks 'remove'."""
        sid = v['storage']
        self._active_store(sid, v['node'])
        self.require(user, '/storage/' + sid, 'Datastore.Allocate')
        keep = self._prune_keep(v)

        async def body():
            removed = self._prune(sid, v.get('type'), v.get('vmid'), keep)
            return '\n'.join("removing backup '{0}'".format(volid) for volid in removed) or None
        return await self.task(v['node'], 'prunebackups', sid, user, body, lock=False)

    # ------------------------------------------------------------ restore

    async def _qm_create(self, v, user):
        if v.get('archive'):
            return await self._qm_restore(v, user)
        return await super(BackupModel, self)._qm_create(v, user)

    async def _qm_restore(self, v, user):
        """POST /nodes/{node}/qemu with archive: a qmrestore task making the VM from the archive's config."""
        from fakepve import qemu
        routing = self._routing()
        node, vmid = v['node'], int(v['vmid'])
        self.need_quorum()
        emsg = 'unable to restore VM {0} -'.format(vmid)
        sid, _volname, vol = self._backup_volume(v['archive'])
        self.require(user, '/storage/' + sid, 'Datastore.AllocateSpace')
        existing = self.guest(vmid)
        force = bool(v.get('force'))
        if existing is not None:
            is_vm = self.vm(vmid) is not None
            if not force or not is_vm or existing.node != node:
                raise routing.die("{0} {1} {2} already exists on node '{3}'".format(
                    emsg, 'VM' if is_vm else 'CT', vmid, existing.node))
            if existing.status == 'running':
                raise routing.die('{0} VM is running'.format(emsg))
            if str(existing.config.get('protection')) in ('1', 'True'):
                raise routing.die('{0} protection mode enabled'.format(emsg))
            self.require(user, '/vms/{0}'.format(vmid), 'VM.Backup')
        else:
            self.require(user, '/vms/{0}'.format(vmid), 'VM.Allocate')
        target = v.get('storage')
        if target:
            self._qm_image_store(target, user)
        overrides = dict((k, x) for k, x in v.items() if k not in qemu.CREATE_ONLY)
        vm = existing if existing is not None else qemu.FakeVm(vmid, 'VM {0}'.format(vmid), node=node)
        if existing is None:
            vm.config.pop('name', None)
            self.vms.append(vm)
        self._qm_lock(vm, 'create')

        async def body():
            made = []
            try:
                if vol is None or not vol.get('guest'):
                    raise self._task_error("volume '{0}' does not exist".format(v['archive']))
                if vol['guest']['type'] != 'qemu':
                    raise self._task_error("archive '{0}' is not a VM backup".format(v['archive']))
                if existing is not None:
                    for _key, volume, _drive in qemu.drives_of(existing.config):
                        self._qm_free(volume)
                conf = {}
                for key, value in vol['guest']['config'].items():
                    if DRIVE_KEY.match(key) and _is_disk(key, value):
                        volume, props = _props(value)
                        gib = max(1, _size_bytes(props.pop('size', '')) // GIB)
                        spec = ','.join(['{0}:{1}'.format(target or volume.split(':')[0], gib)]
                                        + ['{0}={1}'.format(k, x) for k, x in props.items()])
                        conf[key], volids = self._qm_new_drive(vmid, key, spec, target)
                        made.extend(volids)
                    elif re.fullmatch(r'net\d+', key) and v.get('unique'):
                        conf[key] = qemu.with_mac(re.sub(r'^(\w+)=[0-9A-Fa-f:]{17}', r'\1', str(value)))
                    else:
                        conf[key] = value
                for key, value in overrides.items():
                    conf[key] = qemu.with_mac(value) if re.fullmatch(r'net\d+', key) else value
                vm.config = conf
            except Exception as exc:
                for volid in made:
                    self._qm_free(volid)
                if existing is None and vm in self.vms:
                    self.vms.remove(vm)
                raise self._task_error('{0} {1}'.format(emsg, getattr(exc, 'message', None) or exc)) from exc
            vm.name = conf.get('name') or 'VM {0}'.format(vmid)
            vm.template = bool(conf.get('template'))
            self._qm_lock(vm, None)
            if v.get('start'):
                vm.status = vm.qmpstatus = 'running'
                vm.started_at = time.time()
            return "restore vma archive: vma extract -v -r /var/tmp/vzdumptmp.fifo {0}".format(v['archive'])
        return await self.task(node, 'qmrestore', vmid, user, body, vm=vm)

    async def _lxc_create(self, user, v):
        if v.get('restore'):
            v = self._lxc_restore_params(v)
        return await super(BackupModel, self)._lxc_create(user, v)

    def _lxc_restore_params(self, v):
        """pct restore: the archive's container config, with what the request gives on top, for fakepve's create.

        Mount points are allocated again (on ``storage`` when given, else where they were). A missing archive
        is left to the create task, which fails with "volume ... does not exist".
        """
        sid, _volname, vol = self._backup_volume(v['ostemplate'])
        if vol is None or not vol.get('guest'):
            return v
        if vol['guest']['type'] != 'lxc':
            raise self._routing().die("unable to restore CT {0} - archive '{1}' is not a container backup".format(
                v['vmid'], v['ostemplate']))
        out = dict(v)
        for key, value in vol['guest']['config'].items():
            if key in out or key in ('ostype', 'arch'):
                continue
            if MOUNT_KEY.match(key):
                volume, props = _props(value)
                gib = max(1, _size_bytes(props.pop('size', '')) // GIB)
                out[key] = ','.join(['{0}:{1}'.format(v.get('storage') or volume.split(':')[0], gib)]
                                    + ['{0}={1}'.format(k, x) for k, x in props.items()])
            else:
                out[key] = value
        return out

    # ------------------------------------------------------------ fault: another vzdump holds the lock

    def hold_backup(self, vmid, hold):
        """Another vzdump of a guest: its config lock 'backup' and its node's vzdump lock, until hold is released."""
        guest = self.guest(int(vmid))

        async def body():
            self._take_lock(guest, 'backup')
            self.vzdump_locks[guest.node] = guest.vmid
            try:
                await hold.wait_here()
            finally:
                self._drop_lock(guest)
                self.vzdump_locks.pop(guest.node, None)
            return 'INFO: Finished Backup of VM {0}'.format(guest.vmid)
        asyncio.ensure_future(self.task(guest.node, 'vzdump', guest.vmid, 'root@pam', body, lock=False,
                                        log=['INFO: starting new backup job: vzdump {0}'.format(guest.vmid)]))
