"""Migration of guests for the lab's fake clusters: within a cluster, between clusters, and by HA.

fakepve answers ``POST /nodes/{node}/qemu/{vmid}/migrate``, ``GET`` of the same path and ``remote_migrate`` only
from the API schema: nothing moves. ``PveMigrate`` is a mixin of the lab's FakePve subclass (pmxlab.LabPve) that
does what PVE does. Its sources, cited per behaviour below:

- qm(1), "Migration" (https://pve.proxmox.com/pve-docs/qm.1.html#qm_migration): online and offline migration,
  local resources block live migration, local disks are copied; ``qm remote-migrate`` in the same page.
- pct(1), "Migration" (https://pve.proxmox.com/pve-docs/pct.1.html#pct_migration): no live migration of
  containers, restart mode with its timeout (default 180 s).
- ha-manager(1) (https://pve.proxmox.com/pve-docs/ha-manager.1.html): ``ha-manager migrate vm:100 node2``, the
  ``migrate`` service state.
- The API viewer (https://pve.proxmox.com/pve-docs/api-viewer/), ``/nodes/{node}/qemu/{vmid}/migrate`` (GET and
  POST), ``.../remote_migrate``, ``/nodes/{node}/lxc/{vmid}/migrate``, ``/cluster/ha/resources``,
  ``/nodes/{node}/certificates/info``: parameters and answers.
- The code behind those pages: qemu-server ``src/PVE/API2/Qemu.pm`` (migrate_vm_precondition, migrate_vm,
  remote_migrate_vm, mtunnel), ``src/PVE/QemuMigrate.pm`` (prepare, scan_local_volumes, phase1..3, the log
  lines), ``src/PVE/QemuMigrate/Helpers.pm`` (check_local_resources); pve-container ``src/PVE/API2/LXC.pm`` and
  ``src/PVE/LXC/Migrate.pm``; pve-guest-common ``src/PVE/AbstractMigrate.pm`` (the phases, the log format,
  ``migration aborted``); pve-common ``src/PVE/JSONSchema.pm`` (parse_idmap, the ``proxmox-remote`` format) and
  ``src/PVE/Network.pm`` (read_bridge_mtu); pve-apiclient ``PVE/APIClient/LWP.pm`` (fingerprint checks, the
  errors of a failed call); pve-ha-manager ``src/PVE/HA/Resources/PVEVM.pm`` and ``PVECT.pm`` (how the LRM
  migrates).

Nothing here needs fakepve at import time: ``pmxlab`` imports this module, and fakepve is only needed once a lab
starts (``_load`` runs when the first cluster is built).
"""

import asyncio
import hashlib
import ipaddress
import json
import re
import time
import urllib.parse

__all__ = ['LabMigrationHooks', 'PveMigrate', 'cert_fingerprint', 'join', 'map_id', 'parse_idmap', 'parse_remote']

# Bridges every node starts with (PVE's default vmbr0, and one more for bridge maps).
DEFAULT_BRIDGES = ('vmbr0', 'vmbr1')
# Storage types PVE treats as shared whatever storage.cfg says (network storages).
SHARED_TYPES = ('rbd', 'nfs', 'cifs', 'cephfs', 'glusterfs', 'iscsi', 'iscsidirect', 'pbs')
# The migration task types; their task_secs duration is spent inside the task, after the lock is taken.
MIGRATION_TASKS = ('qmigrate', 'vzmigrate', 'hamigrate', 'qmtunnel', 'vzmtunnel')
# PVE::QemuMigrate / PVE::LXC::Migrate $WS_TUNNEL_VERSION.
WS_TUNNEL_VERSION = 2
# check_local_resources: keys that keep a VM on its node.
LOCAL_RESOURCE = re.compile(r'^(usb|hostpci|serial|parallel|virtiofs)\d+$')
NET_KEY = re.compile(r'^net\d+$')
PVE_ID = re.compile(r'^[a-z][a-z0-9\-_.]*[a-z0-9]$', re.I)

PveError = TaskError = None
_qemu = None


def _load():
    """Import fakepve's pieces once (a lab is starting, so fakepve is there)."""
    global PveError, TaskError, _qemu
    if _qemu is not None:
        return
    from fakepve import qemu as qemu_module
    from fakepve.model import PveError, TaskError  # noqa: F811 - fills the module globals
    _qemu = qemu_module


class Abort(Exception):
    """A die() inside a migration phase: the message PVE logs."""


# ------------------------------------------------------------------ PVE's parsers

def parse_idmap(text, what='storage'):
    """PVE::JSONSchema::parse_idmap: ``src:dst,...``, one default id, or ``1`` (identity).

    Returns {'identity': bool, 'default': id or None, 'entries': {src: dst}}; raises ValueError with PVE's text.
    """
    out = {'identity': False, 'default': None, 'entries': {}}
    for entry in [e for e in re.split(r'[\s,;]+', str(text or '')) if e]:
        if entry == '1':
            out['identity'] = True
            continue
        pair = re.fullmatch(r'([^:]+):([^:]+)', entry)
        ids = pair.groups() if pair else (entry,)
        for one in ids:
            problem = _check_id(one, what)
            if problem:
                raise ValueError("entry '{0}' contains invalid ID - {1}".format(entry, problem))
        if pair:
            if ids[0] in out['entries']:
                raise ValueError("duplicate mapping for source '{0}'".format(ids[0]))
            out['entries'][ids[0]] = ids[1]
        else:
            if out['default'] is not None:
                raise ValueError('default target ID can only be provided once')
            out['default'] = entry
    if out['identity'] and (out['default'] or out['entries']):
        raise ValueError('identity mapping cannot be combined with other mappings')
    return out


def _check_id(one, what):
    """parse_storage_id (parse_id) and parse_bridge_id of pve-common JSONSchema.pm: the error, or None."""
    if what == 'bridge':
        return None if re.fullmatch(r'[-_.\w]+', one) else "invalid bridge ID '{0}'".format(one)
    if len(one) < 2:
        return "{0} ID '{1}' cannot be shorter than 2 characters".format(what, one)
    if not PVE_ID.match(one):
        return "{0} ID '{1}' contains illegal characters".format(what, one)
    return None


def map_id(idmap, source):
    """PVE::JSONSchema::map_id."""
    if idmap is None or idmap['identity']:
        return source
    return idmap['entries'].get(source) or idmap['default'] or source


def parse_remote(text):
    """The ``proxmox-remote`` property string (pve-common JSONSchema.pm): host, port, apitoken, fingerprint.

    Raises ValueError with the property's error, never with the token's value.
    """
    out = {}
    for part in [p for p in str(text or '').split(',') if p]:
        key, sep, value = part.partition('=')
        key = key.strip()
        if not sep:
            # Never echoed: a stray part may be a piece of the token.
            raise ValueError('invalid format - format error\nvalue without key, but schema does not define a '
                             'default key')
        if key not in ('host', 'port', 'apitoken', 'fingerprint'):
            shown = key if re.fullmatch(r'[a-z][a-z-]{0,19}', key) else '<key>'
            raise ValueError('invalid format - format error\n{0}: property is not defined in schema and the '
                             'schema does not allow additional properties'.format(shown))
        if key in out:
            raise ValueError("invalid format - format error: duplicate key in comma-separated list property: "
                             "{0}".format(key))
        out[key] = value
    for key in ('host', 'apitoken'):
        if not out.get(key):
            raise ValueError('invalid format - format error\n{0}: property is missing and it is not optional'
                             .format(key))
    if 'port' in out:
        if not re.fullmatch(r'\d+', out['port']) or not 0 < int(out['port']) < 65536:
            raise ValueError('invalid format - format error\nport: type check (\'integer\') failed')
        out['port'] = int(out['port'])
    if out.get('fingerprint') and not re.fullmatch(r'([A-Fa-f0-9]{2}:){31}[A-Fa-f0-9]{2}', out['fingerprint']):
        raise ValueError("invalid format - format error\nfingerprint: value does not match the regex pattern")
    return out


def cert_fingerprint(pem):
    """The SHA-256 fingerprint of a PEM certificate, as ``pvenode cert info`` prints it (``AA:BB:...``)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    if isinstance(pem, str):
        pem = pem.encode()
    cert = x509.load_pem_x509_certificate(pem)
    return ':'.join('{0:02X}'.format(b) for b in cert.fingerprint(hashes.SHA256()))


def join(clusters, certfile):
    """Introduce the lab's clusters to each other (a remote migration finds its target by host and port) and
    give each one the certificate it serves. ``clusters`` are pmxlab.LabCluster objects."""
    with open(certfile, 'rb') as fh:
        pem = fh.read()
    fingerprint = cert_fingerprint(pem)
    fakes = [c.pve for c in clusters]
    peers = dict(((pve.host, int(pve.port)), pve) for pve in fakes)
    for pve in fakes:
        pve.lab_peers = peers
        pve.cert_pem = pem
        pve.cert_fingerprint = fingerprint
    return fingerprint


def flag(value):
    return str(value).strip().lower() in ('1', 'true', 'yes', 'on')


def _duration(secs):
    secs = int(secs)
    return '{0:02d}:{1:02d}:{2:02d}'.format(secs // 3600, secs // 60 % 60, secs % 60)


def _render_bytes(n):
    """PVE::Tools::render_bytes."""
    units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
    n = float(n)
    unit = 0
    while n >= 1024 and unit < len(units) - 1:
        n /= 1024
        unit += 1
    return '{0:.2f} {1}'.format(n, units[unit])


# ------------------------------------------------------------------ the mixin

class PveMigrate(object):
    """Mixin of the lab's FakePve: migration within a cluster, to another lab cluster, and by HA.

    State: ``bridges`` (node -> set of bridge names, vmbr0 and vmbr1 at first), ``lab_peers`` ((host, port) ->
    fake, set by join()), ``cert_pem`` / ``cert_fingerprint``, ``migration_faults`` (vmid -> fault for the next
    migration task), ``migrations`` (a journal of every migration run).
    """

    def __init__(self, *args, **kwargs):
        _load()
        super(PveMigrate, self).__init__(*args, **kwargs)
        self.bridges = {}
        self.lab_peers = {}
        self.cert_pem = None
        self.cert_fingerprint = None
        self.migration_faults = {}
        self.migrations = []
        # LabPve.task: these types spend their task_secs themselves (after the lock is taken).
        self.self_timed_tasks = MIGRATION_TASKS

    def _routes_migrate(self):
        qm, ct = '/nodes/{node}/qemu/{vmid}', '/nodes/{node}/lxc/{vmid}'
        return [('GET', qm + '/migrate', self._mig_qm_precondition), ('POST', qm + '/migrate', self._mig_qm_post),
                ('POST', qm + '/remote_migrate', self._mig_qm_remote),
                ('POST', ct + '/remote_migrate', self._mig_ct_remote),
                ('GET', '/cluster/ha/resources', self._mig_ha_list),
                ('GET', '/cluster/ha/resources/{sid}', self._mig_ha_one),
                ('GET', '/cluster/ha/status/current', self._mig_ha_status),
                ('GET', '/nodes/{node}/network', self._mig_network),
                ('GET', '/nodes/{node}/certificates/info', self._mig_cert_info)]

    # -------------------------------------------------------------- lookups

    def node_bridges(self, node):
        """The bridges of a node (a set; every node starts with vmbr0 and vmbr1)."""
        return self.bridges.setdefault(node, set(DEFAULT_BRIDGES))

    def _mig_guest(self, kind, node, vmid):
        if kind == 'qemu':
            return self.find(node, vmid)
        return self._find_ct(node, vmid)

    @staticmethod
    def _mig_kind(guest):
        return 'lxc' if guest.guest.startswith('lxc/') else 'qemu'

    def _mig_shared(self, sid):
        store = self.storages.get(sid) or {}
        return flag(store.get('shared', 0)) or store.get('type') in SHARED_TYPES

    def _mig_volumes(self, guest):
        """(key, volid, size in bytes, attached) of the guest's volumes (VM drives and unused disks, container
        mount points), cdroms and volumes without storage left out."""
        out = []
        if self._mig_kind(guest) == 'qemu':
            for key in sorted(guest.config, key=_qemu.natural):
                if not (_qemu.DRIVE_KEY.match(key) or re.fullmatch(r'unused\d+', key)):
                    continue
                volume, props = _qemu.split_drive(guest.config[key])
                if _qemu.is_cdrom(volume, props) or _qemu.volume_ref(volume)[0] is None:
                    continue
                out.append((key, volume, self._mig_size(volume, props.get('size')), not key.startswith('unused')))
        else:
            for key, mount in guest.volumes():
                out.append((key, mount['volume'], self._mig_size(mount['volume'], mount.get('size')), True))
        return out

    def _mig_size(self, volid, size_text):
        sid, name = _qemu.volume_ref(volid)
        vol = (self.storages.get(sid) or {}).get('volumes', {}).get(name) if sid else None
        if vol and vol.get('size'):
            return int(vol['size'])
        found = re.fullmatch(r'(\d+(?:\.\d+)?)([KMGT]?)', str(size_text or ''))
        if not found:
            return 0
        return int(float(found.group(1)) * 1024 ** (' KMGT'.index(found.group(2) or 'G')))

    def _mig_local_resources(self, guest):
        """check_local_resources (QemuMigrate/Helpers.pm): passthrough and other host-bound devices."""
        out = [k for k in ('hostusb', 'hostpci', 'ivshmem') if guest.config.get(k)]
        for key in sorted(guest.config, key=_qemu.natural):
            value = str(guest.config[key])
            if key.startswith('usb') and re.search(r'(^|,)host=spice(,|$)', value, re.I):
                continue
            if key.startswith('serial') and value == 'socket':
                continue
            if LOCAL_RESOURCE.match(key):
                out.append(key)
        return out

    def _mig_ct_local_mounts(self, guest):
        """LXC/Migrate.pm prepare: bind and device mount points that are not marked shared."""
        from fakepve.lxc import mount_type, parse_mount
        out = []
        for key in sorted(guest.config):
            if not re.fullmatch(r'mp\d+', key):
                continue
            mount = parse_mount(guest.config[key])
            kind = mount_type(mount.get('volume', ''))
            if kind != 'volume' and not flag(mount.get('shared', 0)):
                out.append((key, kind))
        return out

    def _mig_storage_on(self, sid, node, content='images'):
        """check_storage_access_migrate (Qemu.pm / LXC.pm): enabled on the node and for that content."""
        if sid not in self.storages:
            raise PveError(500, "storage '{0}' does not exist".format(sid))
        self._check_enabled(sid, node)
        if content not in re.split(r'[\s,;]+', str(self.storages[sid].get('content', ''))):
            raise PveError(500, "storage '{0}' does not support {1}".format(
                sid, 'vm images' if content == 'images' else 'CT rootdirs'))

    def _mig_node_ip(self, node):
        """The address PVE logs for a node (fakepve's /cluster/status ip)."""
        for idx, name in enumerate(sorted(self.nodes), 1):
            if name == node:
                return '192.0.2.{0}'.format(10 + idx)
        return '192.0.2.1'

    # -------------------------------------------------------------- task plumbing

    def _mig_record(self, ttype, vmid):
        """The running task record of this type and id (the newest): the body's own task."""
        for record in reversed(self.tasklog):
            if record['type'] == ttype and record['id'] == str(vmid) and record['status'] == 'running':
                return record
        return None

    @staticmethod
    def _mig_log(record, message, level='info'):
        """AbstractMigrate->log: every line prefixed with the local time, errors with ERROR:."""
        if record is None:
            return
        prefix = time.strftime('%Y-%m-%d %H:%M:%S')
        if level == 'err':
            prefix += ' ERROR:'
        for line in str(message).rstrip('\n').split('\n'):
            record['log'].append('{0} {1}'.format(prefix, line))

    async def _mig_wait(self, upid):
        """Until the task has ended; its exit status."""
        record = self.tasks[upid]
        while record['status'] != 'stopped':
            await asyncio.sleep(max(self.time_scale / 2, 0.001))
        return record.get('exitstatus')

    def _mig_take_fault(self, vmid):
        return self.migration_faults.pop(int(vmid), None)

    def _mig_lock(self, guest, lock):
        if self._mig_kind(guest) == 'qemu':
            _qemu.QemuApi._qm_lock(guest, lock)
        else:
            guest.lock = lock

    def _mig_journal(self, upid, kind, ttype, guest, source, target, params, target_vmid=None):
        entry = {'upid': upid, 'kind': kind, 'type': ttype, 'vmid': guest.vmid, 'source_node': source,
                 'target': target, 'target_vmid': target_vmid, 'params': dict(params), 'result': None}
        self.migrations.append(entry)
        return entry

    # ============================================================== within a cluster

    async def _mig_qm_precondition(self, v, user):
        """GET /nodes/{node}/qemu/{vmid}/migrate: Qemu.pm migrate_vm_precondition.

        ``running``; ``allowed_nodes`` are the other nodes of the cluster (online or not: PVE does not look)
        without a blocker; ``not_allowed_nodes`` lists per node the disk storages not available there
        (check_local_storage_availability: a disabled storage, or one whose ``nodes`` leave the node out);
        ``local_disks`` every volume on a storage without ``shared``; ``local_resources`` what
        check_local_resources finds (hostpci*, usb* unless spice, serial* unless socket, parallel*,
        virtiofs*, ivshmem). HA-managed VMs add ``dependent-ha-resources`` (empty: the lab has no affinity rules).
        """
        self.need_quorum()
        vm = self.find(v['node'], v['vmid'])
        self._check_lock(vm)
        running = 1 if vm.status == 'running' else 0
        allowed, not_allowed = [], {}
        sids = sorted(set(_qemu.volume_ref(volid)[0] for _k, volid, _s, _a in self._mig_volumes(vm)))
        for sid in sids:  # check_local_storage_availability reads each storage's config: it must exist
            if sid not in self.storages:
                raise PveError(500, "storage '{0}' does not exist".format(sid))
        for node in sorted(self.nodes):
            if node == v['node']:
                continue
            missing = [sid for sid in sids if not self._storage_enabled(sid, node)]
            if missing:
                not_allowed[node] = {'unavailable_storages': missing}
            else:
                allowed.append(node)
        disks = []
        for key, volid, size, attached in self._mig_volumes(vm):
            if self._mig_shared(_qemu.volume_ref(volid)[0]):
                continue
            disk = {'volid': volid, 'size': size, 'drivename': key, 'referenced_in_config': 1, 'replicate': 1}
            disk['is_attached' if attached else 'is_unused'] = 1
            disks.append(disk)
        out = {'running': running, 'allowed_nodes': allowed, 'not_allowed_nodes': not_allowed,
               'local_disks': disks, 'local_resources': self._mig_local_resources(vm),
               'mapped-resources': [], 'mapped-resource-info': {}, 'has-dbus-vmstate': 1}
        if vm.ha_managed:
            out['dependent-ha-resources'] = []
        return out

    async def _lxc_migrate_check(self, user, v):
        """GET /nodes/{node}/lxc/{vmid}/migrate: LXC.pm migrate_vm_precondition. PVE has one for containers, with
        hyphenated keys: ``running``, ``allowed-nodes`` (every other node), ``not-allowed-nodes`` (only blocking HA
        rules, none in the lab), ``dependent-ha-resources`` when HA-managed. No disk or resource lists: PVE finds
        those in the task."""
        ct = self._find_ct(v['node'], v['vmid'])
        self.need_quorum()
        self._ct_check_lock(ct)
        out = {'running': 1 if ct.status == 'running' else 0,
               'allowed-nodes': [n for n in sorted(self.nodes) if n != v['node']], 'not-allowed-nodes': {}}
        if ct.ha_managed:
            out['dependent-ha-resources'] = []
        return out

    def _mig_api_checks(self, kind, v, user):
        """The checks migrate_vm makes before it forks the task (Qemu.pm and LXC.pm), in PVE's order.

        Returns (guest, the options of the task, with the parsed storage map)."""
        node, target = v['node'], v['target']
        if target == node:
            raise PveError(400, 'Parameter verification failed.', {'target': 'target is local node.'})
        self.need_quorum()
        if target not in self.nodes:
            raise PveError(500, "no such cluster node '{0}'".format(target))
        opts = {'online': flag(v.get('online', 0)), 'bwlimit': v.get('bwlimit')}
        if kind == 'qemu':
            for name in ('force', 'migration_type', 'migration_network'):
                given = flag(v.get(name, 0)) if name == 'force' else v.get(name) not in (None, '')
                if given and user != 'root@pam':
                    raise PveError(400, 'Parameter verification failed.', {name: 'Only root may use this option.'})
            guest = self.find(node, v['vmid'])
            self._check_lock(guest)
            opts.update({'with-local-disks': flag(v.get('with-local-disks', 0)), 'force': flag(v.get('force', 0))})
            if guest.status == 'running':
                if not opts['online']:
                    raise PveError(500, "can't migrate running VM without --online")
            else:
                opts['online'] = False  # "VM isn't running. Doing offline migration instead."
            maptext = v.get('targetstorage')
        else:
            guest = self._find_ct(node, v['vmid'])
            opts.update({'restart': flag(v.get('restart', 0)),
                         'timeout': int(v['timeout']) if v.get('timeout') not in (None, '') else 180})
            if guest.status == 'running' and not opts['online'] and not opts['restart']:
                raise PveError(500, "can't migrate running container without --online or --restart")
            maptext = v.get('target-storage')
        storagemap = None
        param = 'targetstorage' if kind == 'qemu' else 'target-storage'
        if maptext:
            try:
                storagemap = parse_idmap(maptext, 'storage')
            except ValueError as exc:
                raise PveError(400, 'Parameter verification failed.',
                               {param: 'failed to parse storage map: {0}'.format(exc)}) from None
            content = 'images' if kind == 'qemu' else 'rootdir'
            for sid in list(storagemap['entries'].values()) + ([storagemap['default']] if storagemap['default']
                                                              else []):
                self.require(user, '/storage/' + sid, 'Datastore.AllocateSpace')
                self._mig_storage_on(sid, target, content)
        if kind == 'qemu' and (storagemap is None or storagemap['identity']):
            # check_storage_availability: every disk's storage must be there on the target node.
            for _key, volid, _size, _attached in self._mig_volumes(guest):
                sid = _qemu.volume_ref(volid)[0]
                if sid not in self.storages:
                    raise PveError(500, "storage '{0}' does not exist".format(sid))
                self._check_enabled(sid, target)
        opts['storagemap'] = storagemap
        return guest, opts

    async def _mig_qm_post(self, v, user):
        """POST /nodes/{node}/qemu/{vmid}/migrate: Qemu.pm migrate_vm. The API-side refusals (target is local
        node, no quorum, no such cluster node, locked, running without online, storages not on the target,
        root-only options), then a ``qmigrate`` task, or ``hamigrate`` for an HA-managed VM (qm(1)
        "Migration"; ha-manager(1))."""
        guest, opts = self._mig_api_checks('qemu', v, user)
        if guest.ha_managed:
            return await self._mig_ha_request(guest, v['target'], user)
        return await self._mig_start_local(guest, v['target'], opts, user, dict(v))

    async def _lxc_migrate(self, user, v):
        """POST /nodes/{node}/lxc/{vmid}/migrate: LXC.pm migrate_vm (pct(1) "Migration"): ``vzmigrate``, or
        ``hamigrate`` for an HA-managed container. ``online`` for a running container passes the API and fails in
        the task (``lxc live migration is currently not implemented``), as in PVE."""
        guest, opts = self._mig_api_checks('lxc', v, user)
        if guest.ha_managed:
            return await self._mig_ha_request(guest, v['target'], user)
        return await self._mig_start_local(guest, v['target'], opts, user, dict(v))

    async def _mig_start_local(self, guest, target, opts, user, params, kind='local'):
        ttype = 'qmigrate' if self._mig_kind(guest) == 'qemu' else 'vzmigrate'
        source = guest.node
        box = {}

        async def body():
            return await self._mig_local_body(guest, source, target, opts, ttype, box)
        upid = await self.task(source, ttype, guest.vmid, user, body, vm=guest, lock=False)
        box['entry'] = entry = self._mig_journal(upid, kind, ttype, guest, source, target, params)
        if self.tasks[upid]['status'] == 'stopped':
            entry['result'] = self.tasks[upid]['exitstatus']
        return upid

    async def _mig_local_body(self, guest, source, target, opts, ttype, box):
        """PVE::AbstractMigrate->migrate with QemuMigrate / LXC::Migrate: prepare, phase 1 (lock ``migrate``, scan
        and copy local volumes), phase 2 (a live migration), phase 3 (the guest is on the target, unlocked).

        A die in prepare ends the task (``migration aborted``) before the lock; one in phase 1 runs
        phase1_cleanup (the lock is removed, a container in restart mode is started again on the source)."""
        record = self._mig_record(ttype, guest.vmid)
        qemu = ttype == 'qmigrate'
        what = 'VM' if qemu else 'CT'
        log = lambda msg, level='info': self._mig_log(record, msg, level)  # noqa: E731
        state = {'secs': 0.0, 'was_running': guest.status == 'running'}
        fault = self._mig_take_fault(guest.vmid)
        storagemap = opts.get('storagemap')
        try:
            running = self._mig_prepare_local(guest, target, opts, state)
            if not self.nodes.get(target, {}).get('online', True):
                raise Abort("Can't connect to destination address using public key")
            if not qemu and opts.get('restart') and running:
                log('shutdown CT {0}'.format(guest.vmid))
                await self._ct_powerdown(guest, opts.get('timeout') or 180, True)
                running = False
        except Abort as exc:
            log('migration aborted (duration {0}): {1}'.format(_duration(state['secs']), exc), 'err')
            self._mig_result(box, 'migration aborted')
            raise TaskError('migration aborted') from None
        moves = []
        try:
            log("starting migration of {0} {1} to node '{2}' ({3})".format(what, guest.vmid, target,
                                                                         self._mig_node_ip(target)))
            self._mig_lock(guest, 'migrate')
            local = [(k, vol, size, att) for k, vol, size, att in self._mig_volumes(guest)
                     if not self._mig_shared(_qemu.volume_ref(vol)[0])]
            problems = False
            for key, volid, _size, attached in local:
                if qemu:
                    log("found local disk '{0}' ({1})".format(volid, 'attached' if attached else 'unused'))
                    if attached and running and not opts.get('with-local-disks'):
                        log("can't migrate local disk '{0}': can't live migrate attached local disks without "
                            "with-local-disks option".format(volid), 'warn')
                        problems = True
                else:
                    log("found local volume '{0}' (in current VM config)".format(volid))
            if problems:
                raise Abort("Problem found while scanning volumes - can't migrate VM - check log")
            if fault and fault[0] == 'fail':
                raise Abort(fault[1])
            secs = self.task_secs.get(ttype) or 0
            state['secs'] += secs
            await self.pause(secs)
            online_disks = [(k, vol, s) for k, vol, s, att in local if qemu and running and att]
            offline = [(k, vol, s) for k, vol, s, att in local if (k, vol, s) not in online_disks]
            if offline and qemu:
                log('copying local disk images')
            for key, volid, size in offline + online_disks:
                sid = _qemu.volume_ref(volid)[0]
                dest = map_id(storagemap, sid)
                if fault and fault[0] == 'network':
                    raise Abort("storage migration for '{0}' to storage '{1}' failed - command 'set -o pipefail && "
                                "pvesm export {0} raw+size - -with-snapshots 0 | /usr/bin/ssh -e none -o "
                                "'BatchMode=yes' -o 'HostKeyAlias={2}' root@{3} -- pvesm import {4}' failed: exit "
                                "code 255".format(volid, dest, target, self._mig_node_ip(target), volid))
                new = self._mig_move_volume(guest, key, volid, size, dest) if dest != sid else volid
                moves.append((key, volid, new))
                if (key, volid, size) in online_disks:
                    continue
                log("volume '{0}' is '{1}' on the target".format(volid, new))
        except Abort as exc:
            log(str(exc), 'err')
            log('aborting phase 1 - cleanup resources')
            self._mig_undo_moves(guest, moves)
            self._mig_lock(guest, None)
            if not qemu:
                log('start final cleanup')
                if opts.get('restart') and state['was_running']:
                    log('start container on source node')
                    self._mig_ct_running(guest)
            log('migration aborted (duration {0}): {1}'.format(_duration(state['secs']), exc), 'err')
            self._mig_result(box, 'migration aborted')
            raise TaskError('migration aborted') from None
        if qemu and running:
            self._mig_phase2_log(log, guest.vmid, target, [(k, v, n) for k, v, n in moves
                                                           if any(k == d[0] for d in online_disks)], opts)
        for key, old, new in moves:
            self._mig_free_old(old, new)
        guest.node = target
        self._mig_lock(guest, None)
        if not qemu:
            log('start final cleanup')
            if opts.get('restart') and state['was_running']:
                log('start container on target node')
                self._mig_ct_running(guest)
        log('migration finished successfully (duration {0})'.format(_duration(state['secs'])))
        self._mig_result(box, 'OK')
        return None

    @staticmethod
    def _mig_result(box, status):
        entry = box.get('entry')
        if entry is not None:
            entry['result'] = status
        else:
            box['result'] = status

    def _mig_prepare_local(self, guest, target, opts, state):
        """QemuMigrate / LXC::Migrate prepare: the task's own checks. Returns whether the guest runs."""
        qemu = self._mig_kind(guest) == 'qemu'
        if guest.lock:
            raise Abort('{0} is locked ({1})'.format('VM' if qemu else 'CT', guest.lock))
        running = guest.status == 'running'
        if qemu:
            if running and not opts.get('online'):
                raise Abort("can't migrate running VM without --online")
            blocking = self._mig_local_resources(guest)
            # QemuMigrate prepare: only root's force lets an offline VM with local devices go.
            if blocking and (running or not opts.get('force')):
                raise Abort("can't migrate VM which uses local devices: " + ', '.join(blocking))
        else:
            if running and opts.get('online'):
                raise Abort('lxc live migration is currently not implemented')
            if running and not opts.get('restart'):
                raise Abort('running container can only be migrated in restart mode')
            for key, kind in self._mig_ct_local_mounts(guest):
                raise Abort("cannot migrate local {0} mount point '{1}'".format(kind, key))
        content = 'images' if qemu else 'rootdir'
        for _key, volid, _size, _attached in self._mig_volumes(guest):
            sid = _qemu.volume_ref(volid)[0]
            if sid not in self.storages:
                raise Abort("storage '{0}' does not exist".format(sid))
            dest = sid if self._mig_shared(sid) else map_id(opts.get('storagemap'), sid)
            if dest not in self.storages:
                raise Abort("storage '{0}' does not exist".format(dest))
            try:
                self._check_enabled(dest, target)
            except PveError as exc:
                raise Abort(exc.message) from None
            if content not in re.split(r'[\s,;]+', str(self.storages[dest].get('content', ''))):
                raise Abort("{0}: content type '{1}' is not available on storage '{2}'".format(volid, content, dest))
        return running

    def _mig_phase2_log(self, log, vmid, target, moved, opts):
        """QemuMigrate phase2: the lines of a live migration with its disks mirrored."""
        log("starting VM {0} on remote node '{1}'".format(vmid, target))
        for key, old, new in moved:
            log("volume '{0}' is '{1}' on the target".format(old, new))
        log('start remote tunnel')
        log('ssh tunnel ver 1')
        if moved:
            log('starting storage migration')
            for key, _old, _new in moved:
                log('{0}: start migration to nbd:unix:/run/qemu-server/{1}_nbd.migrate:exportname=drive-{0}'
                    .format(key, vmid))
                log('drive mirror is starting for drive-{0}'.format(key))
            log("all 'mirror' jobs are ready")
        log('starting online/live migration on unix:/run/qemu-server/{0}.migrate'.format(vmid))
        log('set migration capabilities')
        if opts.get('bwlimit') not in (None, ''):
            log('migration speed limit: {0}/s'.format(_render_bytes(int(float(opts['bwlimit'])) * 1024)))
        log('migration downtime limit: 100 ms')
        log('migration cachesize: 512.0 MiB')
        log('set migration parameters')
        log('start migrate command to unix:/run/qemu-server/{0}.migrate'.format(vmid))
        log('average migration speed: 1.0 GiB/s - downtime 42 ms')
        log('migration status: completed')
        for key, _old, _new in moved:
            log('drive-{0}: mirror-job finished'.format(key))
        if moved:
            log('stopping NBD storage migration server on target.')

    def _mig_move_volume(self, guest, key, volid, size, dest):
        """Allocate the volume's copy on the mapped storage and point the config at it; returns the new volid."""
        if self._mig_kind(guest) == 'qemu':
            vol = self._qm_volume(volid) or {}
            try:
                new, _fmt = self._qm_alloc(dest, guest.vmid, vol.get('format'), size)
            except PveError as exc:
                raise Abort(exc.message) from None
            volume, props = _qemu.split_drive(guest.config[key])
            guest.config[key] = _qemu.join_drive(new, props)
        else:
            from fakepve.lxc import parse_mount, print_mount
            new = self._allocate(guest.vmid, dest, self._taken_volumes())
            mount = parse_mount(guest.config[key])
            mount['volume'] = new
            guest.config[key] = print_mount(mount, key == 'rootfs')
        return new

    def _mig_undo_moves(self, guest, moves):
        """phase1_cleanup: the copies made so far are freed and the config points at the originals again."""
        for key, old, new in moves:
            if old == new:
                continue
            self._qm_free(new)
            value = str(guest.config.get(key, ''))
            guest.config[key] = value.replace(new, old, 1)

    def _mig_free_old(self, old, new):
        if old != new:
            self._qm_free(old)

    def _mig_ct_running(self, ct):
        ct.status = 'running'
        ct.started_at = time.time()
        ct.pid = next(self._ct_pids)

    # ============================================================== between clusters

    async def _mig_qm_remote(self, v, user):
        """POST /nodes/{node}/qemu/{vmid}/remote_migrate: Qemu.pm remote_migrate_vm (``qm remote-migrate`` in
        qm(1); "EXPERIMENTAL" in the API viewer)."""
        return await self._mig_remote('qemu', v, user)

    async def _mig_ct_remote(self, v, user):
        """POST /nodes/{node}/lxc/{vmid}/remote_migrate: LXC.pm remote_migrate_vm (``pct remote-migrate``)."""
        return await self._mig_remote('lxc', v, user)

    async def _mig_remote(self, kind, v, user):
        """remote_migrate_vm, in PVE's order: quorum, the guest and its lock, HA (refused), the endpoint string,
        the connection to the target (at once without a fingerprint: PVE then fetches the target's
        certificates/info and the lab's self-signed certificate is not trusted; with one, at the first call,
        /cluster/status, after the map checks), running without online (VM) or online/restart (CT), the storage
        and bridge maps (an identity storage map is refused), then the ``qmigrate``/``vzmigrate`` task. The
        target node is the ``local`` node of the target's /cluster/status: the target cluster's first node."""
        self.need_quorum()
        qemu = kind == 'qemu'
        guest = self.find(v['node'], v['vmid']) if qemu else self._find_ct(v['node'], v['vmid'])
        if qemu:
            self._check_lock(guest)
        else:
            self._ct_check_lock(guest)
        online = flag(v.get('online', 0))
        restart = flag(v.get('restart', 0))
        if not qemu and guest.status == 'running' and not online and not restart:
            raise PveError(500, "can't migrate running container without --online or --restart")
        if guest.ha_managed:
            raise PveError(400, 'Parameter verification failed.', {'vmid': 'cannot remote-migrate {0} that is '
                                                                             'configured for HA'.format(
                                                                                 'VM' if qemu else 'CT')})
        try:
            remote = parse_remote(v.get('target-endpoint'))
        except ValueError as exc:
            raise PveError(400, 'Parameter verification failed.', {'target-endpoint': str(exc)}) from None
        conn = _Remote(self, remote)
        if not remote.get('fingerprint'):
            conn.connect()
        if qemu and guest.status == 'running' and not online:
            raise PveError(500, "can't migrate running VM without --online")
        if qemu and guest.status != 'running':
            online = False
        maps = {}
        for param, what in (('target-storage', 'storage'), ('target-bridge', 'bridge')):
            try:
                maps[what] = parse_idmap(v.get(param), what)
            except ValueError as exc:
                raise PveError(400, 'Parameter verification failed.',
                               {param: 'failed to parse {0} map: {1}'.format(what, exc)}) from None
        if maps['storage']['identity']:
            raise PveError(500, 'remote migration requires explicit storage mapping!')
        conn.connect()
        target_node = conn.local_node()
        target_vmid = int(v.get('target-vmid') or guest.vmid)
        opts = {'online': online, 'restart': restart, 'delete': flag(v.get('delete', 0)),
                'timeout': int(v['timeout']) if v.get('timeout') not in (None, '') else 180,
                'bwlimit': v.get('bwlimit'), 'storagemap': maps['storage'], 'bridgemap': maps['bridge']}
        ttype = 'qmigrate' if qemu else 'vzmigrate'
        source = guest.node
        box = {}
        params = dict(v)
        params['target-endpoint'] = _scrub_endpoint(params.get('target-endpoint', ''))

        async def body():
            return await self._mig_remote_body(guest, conn, target_node, target_vmid, opts, ttype, box)
        upid = await self.task(source, ttype, guest.vmid, user, body, vm=guest, lock=False)
        entry = self._mig_journal(upid, 'remote', ttype, guest, source,
                                  '{0}:{1}'.format(conn.peer.cluster_name, target_node), params, target_vmid)
        entry['result'] = box.get('result')
        box['entry'] = entry
        return upid

    async def _mig_remote_body(self, guest, conn, tnode, tvmid, opts, ttype, box):
        """QemuMigrate / LXC::Migrate with ``remote``: prepare (the task's checks, then the websocket tunnel: the
        target's mtunnel call checks every mapped storage and bridge and creates the guest, or fails), phase 1
        (lock ``migrate``, disks allocated on the target, config sent with mapped bridges), phase 2 (live),
        phase 3 (the target unlocked; the source stopped and kept locked ``migrate``, or destroyed with
        ``delete``). A failure in phase 1 unlocks the source and removes everything made on the target."""
        record = self._mig_record(ttype, guest.vmid)
        qemu = ttype == 'qmigrate'
        what = 'VM' if qemu else 'CT'
        log = lambda msg, level='info': self._mig_log(record, msg, level)  # noqa: E731
        state = {'secs': 0.0, 'was_running': guest.status == 'running'}
        fault = self._mig_take_fault(guest.vmid)
        peer = conn.peer
        tunnel = None
        try:
            running = self._mig_prepare_remote(guest, opts)
            volumes = self._mig_volumes(guest)
            storages = sorted(set(map_id(opts['storagemap'], _qemu.volume_ref(vol)[0]) for _k, vol, _s, _a in volumes))
            bridges = self._mig_bridge_plan(guest, opts['bridgemap'])
            try:
                tunnel = peer._mig_mtunnel(qemu, tvmid, tnode, storages,
                                            sorted(set(d for _s, d in bridges.values())), conn.user,
                                            guest.name)
            except PveError as exc:
                raise Abort(_client_error(exc)) from None
            log('local WS tunnel version: {0}'.format(WS_TUNNEL_VERSION))
            log('remote WS tunnel version: {0}'.format(WS_TUNNEL_VERSION))
            log('minimum required WS tunnel version: {0}'.format(WS_TUNNEL_VERSION))
            log('websocket tunnel started')
            if not qemu and opts.get('restart') and running:
                log('shutdown CT {0}'.format(guest.vmid))
                await self._ct_powerdown(guest, opts.get('timeout') or 180, True)
                running = False
        except Abort as exc:
            log('migration aborted (duration {0}): {1}'.format(_duration(state['secs']), exc), 'err')
            self._mig_result(box, 'migration aborted')
            raise TaskError('migration aborted') from None
        made = []
        try:
            log("starting migration of {0} {1} to node '{2}' ({3})".format(what, guest.vmid, tnode, conn.host))
            self._mig_lock(guest, 'migrate')
            for key, volid, _size, attached in volumes:
                if qemu:
                    log("found local disk '{0}' ({1})".format(volid, 'attached' if attached else 'unused'))
                else:
                    log("found local volume '{0}' (in current VM config)".format(volid))
            if fault and fault[0] == 'fail':
                raise Abort(fault[1])
            secs = self.task_secs.get(ttype) or 0
            state['secs'] += secs
            await self.pause(secs)
            conf = dict((k, val) for k, val in guest.config.items() if k not in ('lock', 'digest'))
            for nic in sorted(bridges, key=_qemu.natural):
                src, dst = bridges[nic]
                log('mapped: {0} from {1} to {2}'.format(nic, src, dst))
                conf[nic] = re.sub(r'(^|,)bridge=[^,]*', r'\1bridge=' + dst, str(conf[nic]))
            for key, volid, size, _attached in volumes:
                dest = map_id(opts['storagemap'], _qemu.volume_ref(volid)[0])
                if qemu:
                    log("Allocating volume for drive '{0}' on remote storage '{1}'..".format(key, dest))
                if fault and fault[0] == 'network':
                    raise Abort("no reply to command 'disk': reading from tunnel failed: got timeout")
                try:
                    new = peer._mig_alloc_remote(tunnel, qemu, dest, tvmid, size, volid)
                except PveError as exc:
                    raise Abort(_client_error(exc)) from None
                made.append(new)
                log("volume '{0}' is '{1}' on the target".format(volid, new))
                conf[key] = str(conf[key]).replace(volid, new, 1)
            peer._mig_tunnel_config(tunnel, conf)
        except Abort as exc:
            log(str(exc), 'err')
            log('aborting phase 1 - cleanup resources')
            self._mig_lock(guest, None)
            broken = bool(fault and fault[0] == 'network')
            if broken:
                log('Failed to free remote volumes - no reply to command \'free\': reading from tunnel failed: got '
                    'timeout', 'err')
            peer._mig_tunnel_abort(tunnel, broken)
            if not qemu:
                log('start final cleanup')
                if opts.get('restart') and state['was_running']:
                    log('start container on source node')
                    self._mig_ct_running(guest)
            log('migration aborted (duration {0}): {1}'.format(_duration(state['secs']), exc), 'err')
            self._mig_result(box, 'migration aborted')
            raise TaskError('migration aborted') from None
        start_target = False
        if qemu and running:
            log("starting VM {0} on remote node '{1}'".format(tvmid, tnode))
            log('start remote tunnel')
            log('starting storage migration')
            for key, _volid, _size, attached in volumes:
                if attached:
                    log('{0}: start migration to nbd:unix:/run/qemu-server/{1}_nbd.migrate:exportname=drive-{0}'
                        .format(key, tvmid))
            log('starting online/live migration on unix:/run/qemu-server/{0}.migrate'.format(tvmid))
            if opts.get('bwlimit') not in (None, ''):
                log('migration speed limit: {0}/s'.format(_render_bytes(int(float(opts['bwlimit'])) * 1024)))
            log('migration status: completed')
            start_target = True
        guest.status = 'stopped'
        if qemu:
            guest.qmpstatus = 'stopped'
        else:
            guest.pid = None
            log('start final cleanup')
            if opts.get('restart') and state['was_running']:
                log('start container on target node')
                start_target = True
        peer._mig_tunnel_finish(tunnel, start_target)
        if opts.get('delete'):
            self._mig_destroy(guest)
        log('migration finished successfully (duration {0})'.format(_duration(state['secs'])))
        self._mig_result(box, 'OK')
        return None

    def _mig_prepare_remote(self, guest, opts):
        """prepare with ``remote``: lock, running, local devices (no force for a remote migration), mounts."""
        qemu = self._mig_kind(guest) == 'qemu'
        if guest.lock:
            raise Abort('{0} is locked ({1})'.format('VM' if qemu else 'CT', guest.lock))
        running = guest.status == 'running'
        if qemu:
            if running and not opts.get('online'):
                raise Abort("can't migrate running VM without --online")
            blocking = self._mig_local_resources(guest)
            if blocking:
                raise Abort("can't migrate VM which uses local devices: " + ', '.join(blocking))
        else:
            if running and opts.get('online'):
                raise Abort('lxc live migration is currently not implemented')
            if running and not opts.get('restart'):
                raise Abort('running container can only be migrated in restart mode')
            for key, kind in self._mig_ct_local_mounts(guest):
                raise Abort("cannot migrate local {0} mount point '{1}'".format(kind, key))
        for _key, volid, _size, _attached in self._mig_volumes(guest):
            sid = _qemu.volume_ref(volid)[0]
            if sid not in self.storages:
                raise Abort("storage '{0}' does not exist".format(sid))
        return running

    def _mig_bridge_plan(self, guest, bridgemap):
        """map_bridges (QemuMigrate.pm / LXC/Migrate.pm): {nic: (source bridge, target bridge)}."""
        nics = {}
        for key in sorted(guest.config, key=_qemu.natural):
            if not NET_KEY.match(key):
                continue
            found = re.search(r'(?:^|,)bridge=([^,]+)', str(guest.config[key]))
            if found:
                nics[key] = (found.group(1), map_id(bridgemap, found.group(1)))
        return nics

    def _mig_destroy(self, guest):
        """destroy_vm / destroy_lxc_container after ``delete``: the source guest and its volumes go."""
        for _key, volid, _size, _attached in self._mig_volumes(guest):
            self._qm_free(volid)
        if guest in self.vms:
            self.vms.remove(guest)
        if guest in getattr(self, 'cts', []):
            self.cts.remove(guest)
        self._pool_leave(guest.vmid)

    # -------------------------------------------------------------- the target's side (mtunnel)

    def _mig_mtunnel(self, qemu, vmid, node, storages, bridges, user, name):
        """The target's POST /nodes/{node}/{qemu|lxc}/{vmid}/mtunnel (Qemu.pm / LXC.pm mtunnel): permissions,
        every storage (check_storage_access_migrate), every bridge (read_bridge_mtu: ``bridge 'x' does not
        exist``), quorum, then create_and_lock_config (a taken vmid: ``unable to create empty VM config - VM 100
        already exists on node 'x'``). Starts the ``qmtunnel`` / ``vzmtunnel`` task on the target node."""
        for path, priv in (('/vms/{0}'.format(vmid), 'VM.Allocate'), ('/', 'Sys.Incoming')):
            if not self.allowed(user, path, priv):
                raise PveError(403, 'Permission check failed ({0}, {1})'.format(path, priv))
        for sid in [s for s in storages if s]:
            self.require(user, '/storage/' + sid, 'Datastore.AllocateSpace')
            self._mig_storage_on(sid, node, 'images' if qemu else 'rootdir')
        for bridge in bridges:
            if bridge not in self.node_bridges(node):
                raise PveError(500, "bridge '{0}' does not exist".format(bridge))
        self.need_quorum()
        other = self.guest(vmid)
        if other is not None:
            kind = 'VM' if self._mig_kind(other) == 'qemu' else 'CT'
            raise PveError(400, 'Parameter verification failed.', {'vmid': 'unable to create empty {0} config - {1} '
                                                                           '{2} already exists on node \'{3}\''.format(
                                                                               'VM' if qemu else 'CT', kind, vmid,
                                                                               other.node)})
        if qemu:
            from fakepve.model import FakeVm
            guest = FakeVm(vmid, name, node=node)
            guest.config = {'lock': 'create'}
            guest.lock = 'create'
            self.vms.append(guest)
        else:
            from fakepve.lxc import FakeCt
            guest = FakeCt(vmid, node=node, config={'lock': 'create'}, defaults=False)
            self.cts.append(guest)
        ttype = 'qmtunnel' if qemu else 'vzmtunnel'
        upid, pid, start = self._upid(node, ttype, vmid, user)
        record = {'upid': upid, 'node': node, 'pid': pid, 'pstart': pid * 7, 'starttime': start, 'type': ttype,
                  'id': str(vmid), 'user': user, 'status': 'running', 'log': ['mtunnel started']}
        self.tasks[upid] = record
        self.tasklog.append(record)
        return {'guest': guest, 'record': record, 'volumes': [], 'qemu': qemu}

    def _mig_alloc_remote(self, tunnel, qemu, sid, vmid, size, old_volid):
        """The tunnel's ``disk`` command: a new volume for the guest on the target storage."""
        if qemu:
            fmt = None
            new, _fmt = self._qm_alloc(sid, vmid, fmt, size)
        else:
            new = self._allocate(vmid, sid, self._taken_volumes())
        tunnel['volumes'].append(new)
        tunnel['record']['log'].append("received command 'disk'")
        return new

    def _mig_tunnel_config(self, tunnel, conf):
        """The tunnel's ``config`` command: the source's config, adapted, with lock ``migrate``."""
        guest = tunnel['guest']
        conf = dict(conf)
        conf['lock'] = 'migrate'
        guest.config = conf
        if tunnel['qemu']:
            guest.lock = 'migrate'
            guest.name = conf.get('name') or 'VM {0}'.format(guest.vmid)
        tunnel['record']['log'].append("received command 'config'")

    def _mig_tunnel_finish(self, tunnel, start):
        """``unlock`` (and ``start``), then ``quit``: the guest is the target's, the tunnel task ends OK."""
        guest = tunnel['guest']
        if tunnel['qemu']:
            _qemu.QemuApi._qm_lock(guest, None)
        else:
            guest.lock = None
        if start:
            guest.status = 'running'
            guest.started_at = time.time()
            if tunnel['qemu']:
                guest.qmpstatus = 'running'
            else:
                guest.pid = next(self._ct_pids)
        record = tunnel['record']
        record['log'] += ["received command 'unlock'"] + (["received command 'start'"] if start else []) + \
            ["received command 'quit'", 'mtunnel exited']
        self._mig_end_task(record, 'OK')

    def _mig_tunnel_abort(self, tunnel, broken):
        """The mtunnel's cleanup when the migration fails: the volumes and the guest made here are removed."""
        if tunnel is None:
            return
        for volid in tunnel['volumes']:
            self._qm_free(volid)
        guest = tunnel['guest']
        for pool in (self.vms, getattr(self, 'cts', [])):
            if guest in pool:
                pool.remove(guest)
        record = tunnel['record']
        if broken:
            record['log'].append('mtunnel exited unexpectedly')
            self._mig_end_task(record, 'mtunnel exited unexpectedly')
        else:
            record['log'] += ["received command 'quit'", 'mtunnel exited']
            self._mig_end_task(record, 'OK')

    @staticmethod
    def _mig_end_task(record, status):
        record['status'] = 'stopped'
        record['exitstatus'] = status
        record['endtime'] = int(time.time())
        record['log'].append('TASK OK' if status == 'OK' else 'TASK ERROR: ' + status)

    # ============================================================== HA

    def _mig_sid(self, guest):
        return '{0}:{1}'.format('vm' if self._mig_kind(guest) == 'qemu' else 'ct', guest.vmid)

    def _mig_ha_guests(self):
        return [g for g in list(self.vms) + list(getattr(self, 'cts', [])) if g.ha_managed]

    @staticmethod
    def _mig_ha_request_state(guest):
        return getattr(guest, 'ha_request', None) or guest.ha_state

    def _mig_ha_entry(self, guest):
        sid = self._mig_sid(guest)
        out = {'sid': sid, 'type': sid.split(':')[0], 'state': self._mig_ha_request_state(guest),
               'max_restart': 1, 'max_relocate': 1, 'failback': 1}
        out['digest'] = hashlib.sha1(json.dumps(out, sort_keys=True).encode()).hexdigest()
        return out

    async def _mig_ha_list(self, v, user):
        """GET /cluster/ha/resources (API viewer; ha-manager(1) "Resources"): one entry per HA-managed guest."""
        kind = v.get('type')
        return [self._mig_ha_entry(g) for g in sorted(self._mig_ha_guests(), key=lambda g: g.vmid)
                if kind in (None, '', self._mig_sid(g).split(':')[0])]

    async def _mig_ha_one(self, v, user):
        """GET /cluster/ha/resources/{sid}: ``vm:100``, ``ct:104`` or a bare vmid."""
        sid = str(v.get('sid'))
        for guest in self._mig_ha_guests():
            if sid in (self._mig_sid(guest), str(guest.vmid)):
                return self._mig_ha_entry(guest)
        raise PveError(500, "no such resource '{0}'".format(sid if ':' in sid else 'vm:' + sid))

    async def _mig_ha_status(self, v, user):
        """GET /cluster/ha/status/current (ha-manager(1) "status"): quorum, master, the LRMs and a service entry
        per HA guest, its ``state`` being the CRM's (``migrate`` while HA moves it)."""
        now = int(time.time())
        first = sorted(self.nodes)[0]
        stamp = time.strftime('%a %b %d %H:%M:%S %Y', time.localtime(now))
        out = [{'id': 'quorum', 'type': 'quorum', 'node': first, 'quorate': 1 if self.quorate else 0,
                'status': 'OK' if self.quorate else 'No quorum on node \'{0}\'!'.format(first)},
               {'id': 'master', 'type': 'master', 'node': first, 'timestamp': now,
                'status': '{0} (active, {1})'.format(first, stamp)}]
        for node in sorted(self.nodes):
            online = self.nodes[node].get('online', True)
            out.append({'id': 'lrm:' + node, 'type': 'lrm', 'node': node, 'timestamp': now,
                        'status': '{0} ({1}, {2})'.format(node, 'active' if online else 'old timestamp - dead?',
                                                          stamp)})
        for guest in sorted(self._mig_ha_guests(), key=lambda g: g.vmid):
            sid = self._mig_sid(guest)
            out.append({'id': 'service:' + sid, 'type': 'service', 'sid': sid, 'node': guest.node,
                        'state': guest.ha_state, 'crm_state': guest.ha_state,
                        'request_state': self._mig_ha_request_state(guest), 'max_restart': 1, 'max_relocate': 1,
                        'status': '{0} ({1}, {2})'.format(sid, guest.node, guest.ha_state)})
        return out

    async def _mig_ha_request(self, guest, target, user):
        """migrate_vm for an HA-managed guest: a ``hamigrate`` task that runs ``ha-manager migrate vm:100 node``
        and ends (the request is queued). ``ha_delay`` PVE seconds later the HA stack moves it: service state
        ``migrate``, then the LRM's own migration on the source node as root@pam (PVEVM.pm: online, with local
        disks, forced; PVECT.pm: shut down, migrated offline, started again). A failed LRM migration leaves the
        guest where it was, state back to the requested one."""
        what = 'VM' if self._mig_kind(guest) == 'qemu' else 'CT'
        box = {}

        async def body():
            await self.pause(self.task_secs.get('hamigrate') or 0)

            async def later():
                await self.pause(self.ha_delay)
                await self._mig_ha_move(guest, target, box)
            if self.time_scale:
                asyncio.ensure_future(later())
            else:
                await later()
        upid = await self.task(guest.node, 'hamigrate', guest.vmid, user, body, lock=False,
                               log=['Requesting HA migration for {0} {1} to node {2}'.format(what, guest.vmid, target)])
        box['entry'] = self._mig_journal(upid, 'ha', 'hamigrate', guest, guest.node, target, {'target': target})
        if 'lrm_upid' in box:
            box['entry']['lrm_upid'] = box['lrm_upid']
            box['entry']['result'] = box.get('result')
        return upid

    async def _mig_ha_move(self, guest, target, box):
        qemu = self._mig_kind(guest) == 'qemu'
        request = self._mig_ha_request_state(guest)
        guest.ha_request = request
        guest.ha_state = 'migrate'
        ok = False
        try:
            if not qemu and guest.status == 'running':
                guest.status = 'stopped'  # PVECT.pm migrate: shutdown first, the container is relocated
                guest.pid = None
                was_running = True
            else:
                was_running = False
            opts = {'online': qemu and guest.status == 'running', 'with-local-disks': True, 'force': True,
                    'restart': False, 'timeout': 180, 'storagemap': None}
            upid = await self._mig_start_local(guest, target, opts, 'root@pam', {'target': target}, kind='ha-lrm')
            box['lrm_upid'] = upid
            if box.get('entry') is not None:
                box['entry']['lrm_upid'] = upid
            status = await self._mig_wait(upid)
            ok = status == 'OK'
            box['result'] = status
            if box.get('entry') is not None:
                box['entry']['result'] = status
            if was_running:
                self._mig_ct_running(guest)
        finally:
            guest.ha_state = request
            guest.ha_request = None
        return ok

    # ============================================================== node answers

    async def _mig_network(self, v, user):
        """GET /nodes/{node}/network (API viewer): the node's bridges (``vmbr0``, ``vmbr1`` unless removed) and
        its NIC ``eno1``; ``type`` filters (bridge, any_bridge, eth)."""
        kind = v.get('type')
        out = []
        for n, bridge in enumerate(sorted(self.node_bridges(v['node']))):
            item = {'iface': bridge, 'type': 'bridge', 'method': 'manual', 'method6': 'manual', 'families': ['inet'],
                    'priority': 3 + n, 'active': 1, 'autostart': 1, 'exists': 1, 'bridge_stp': 'off',
                    'bridge_fd': '0', 'bridge_ports': 'eno1' if bridge == 'vmbr0' else ''}
            if bridge == 'vmbr0':
                item.update(method='static', address='192.0.2.11', netmask='255.255.255.0', cidr='192.0.2.11/24',
                            gateway='192.0.2.1')
            out.append(item)
        out.append({'iface': 'eno1', 'type': 'eth', 'method': 'manual', 'method6': 'manual', 'families': ['inet'],
                    'priority': 2, 'active': 1, 'exists': 1})
        if kind in ('bridge', 'any_bridge'):
            out = [i for i in out if i['type'] == 'bridge']
        elif kind:
            out = [i for i in out if i['type'] == kind]
        return out

    async def _mig_cert_info(self, v, user):
        """GET /nodes/{node}/certificates/info (``pvenode cert info``): the certificate the lab serves, as
        ``pveproxy-ssl.pem`` (a custom certificate, which is what pveproxy serves when it exists)."""
        if not self.cert_pem:
            return []
        from cryptography import x509
        cert = x509.load_pem_x509_certificate(self.cert_pem)
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            names = ['DNS:' + n for n in san.get_values_for_type(x509.DNSName)] + \
                ['IP Address:' + str(n) for n in san.get_values_for_type(x509.IPAddress)]
        except x509.ExtensionNotFound:
            names = []
        key = cert.public_key()
        return [{'filename': 'pveproxy-ssl.pem', 'fingerprint': self.cert_fingerprint,
                 'subject': cert.subject.rfc4514_string(), 'issuer': cert.issuer.rfc4514_string(),
                 'notbefore': int(cert.not_valid_before_utc.timestamp()),
                 'notafter': int(cert.not_valid_after_utc.timestamp()), 'san': names,
                 'pem': self.cert_pem.decode(), 'public-key-type': type(key).__name__.replace('PublicKey', '')
                 .replace('_', '').lower() or 'rsa', 'public-key-bits': getattr(key, 'key_size', 0)}]

    async def _nodes(self, request):
        """GET /nodes with the served certificate's real ``ssl_fingerprint`` (fakepve shows a fixed one)."""
        response = await super(PveMigrate, self)._nodes(request)
        if not self.cert_fingerprint:
            return response
        body = json.loads(response.text)
        for item in body.get('data') or []:
            item['ssl_fingerprint'] = self.cert_fingerprint
        from aiohttp import web
        return web.json_response(body)

    def _record(self, request, body):
        """fakepve records request bodies with passwords redacted; the lab also hides the token secret a
        remote migration's ``target-endpoint`` carries."""
        if body and b'target-endpoint' in body:
            body = _scrub_body(body, request.content_type)
        return super(PveMigrate, self)._record(request, body)


    # ============================================================== fault hooks (run on the lab's loop)

    def _mig_any_guest(self, vmid):
        guest = self.guest(int(vmid))
        if guest is None:
            raise KeyError('no guest {0} in cluster {1}'.format(vmid, self.cluster_name))
        return guest

    def fail_next_migration(self, vmid, message=None):
        """The next migration task of the guest fails in phase 1 (after the lock and the volume scan)."""
        self._mig_any_guest(vmid)
        self.migration_faults[int(vmid)] = ('fail', message or 'migration failed: injected fault')

    def break_migration_network(self, vmid):
        """The next migration of the guest loses its connection to the target while it copies a disk."""
        self._mig_any_guest(vmid)
        self.migration_faults[int(vmid)] = ('network', None)

    def remove_storage(self, sid, node=None):
        """storage.cfg without the storage (its volumes stay referenced by configs), or without this node in
        the storage's ``nodes``."""
        if sid not in self.storages:
            raise KeyError('no storage {0} in cluster {1}'.format(sid, self.cluster_name))
        if node is None:
            del self.storages[sid]
            return
        current = [n for n in re.split(r'[\s,;]+', str(self.storages[sid].get('nodes') or '')) if n] or \
            sorted(self.nodes)
        self.storages[sid]['nodes'] = ','.join(n for n in current if n != node)

    def remove_bridge(self, bridge, node=None):
        """The bridge is gone from one node, or from every node."""
        for name in ([node] if node else sorted(self.nodes)):
            self.node_bridges(name).discard(bridge)

    def take_vmid(self, vmid):
        """A stopped VM ``taken-<vmid>`` holds the id, on the first node."""
        if self.guest(int(vmid)) is not None:
            raise ValueError('vmid {0} is already taken in {1}'.format(vmid, self.cluster_name))
        return self.add_vm(int(vmid), 'taken-{0}'.format(vmid), node=sorted(self.nodes)[0], status='stopped',
                           config={'memory': 512, 'cores': 1, 'ostype': 'l26'})

    def set_ha(self, vmid, state='started'):
        """The guest becomes an HA resource with this requested state (None: no longer HA-managed)."""
        guest = self._mig_any_guest(vmid)
        guest.ha_state = state
        guest.ha_request = None

    def add_local_disk(self, vmid, storage='local-lvm', size_gb=1):
        """A new disk on the storage: ``scsiN`` (VM) or ``mpN`` (container). Returns the config key."""
        guest = self._mig_any_guest(vmid)
        size = int(size_gb * 1024 ** 3)
        if self._mig_kind(guest) == 'qemu':
            key = next('scsi{0}'.format(n) for n in range(31) if 'scsi{0}'.format(n) not in guest.config)
            volid, _fmt = self._qm_alloc(storage, guest.vmid, None, size)
            guest.config[key] = '{0},size={1}G'.format(volid, size_gb)
        else:
            key = next('mp{0}'.format(n) for n in range(256) if 'mp{0}'.format(n) not in guest.config)
            volid = self._allocate(guest.vmid, storage, self._taken_volumes())
            guest.config[key] = '{0},mp=/mnt/{1},size={2}G'.format(volid, key, size_gb)
        return key

    def add_passthrough(self, vmid, key=None, value=None):
        """A host-bound device: ``hostpci0: 0000:01:00.0`` on a VM, a bind mount ``mp9: /srv/data,mp=/data``
        on a container (or the key and value given). Returns the key."""
        guest = self._mig_any_guest(vmid)
        if self._mig_kind(guest) == 'qemu':
            key, value = key or 'hostpci0', value or '0000:01:00.0'
        else:
            key, value = key or 'mp9', value or '/srv/data,mp=/data'
        guest.config[key] = value
        return key


# ------------------------------------------------------------------ the connection to a remote

class _Remote(object):
    """PVE::APIClient::LWP towards the target endpoint, checked the way it checks: the peer must answer at
    host:port, its certificate must match the fingerprint (the lab's self-signed one is not in a node's
    system store), the token must be valid there. Errors are the die() texts PVE passes on."""

    def __init__(self, pve, remote):
        self.pve = pve
        self.host = remote['host']
        self.port = int(remote.get('port') or 8006)
        self.apitoken = remote['apitoken']
        self.fingerprint = (remote.get('fingerprint') or '').upper() or None
        self.peer = None
        self.user = None

    def connect(self):
        if self.peer is not None:
            return self.peer
        peer = self.pve.lab_peers.get((self.host, self.port))
        if peer is None or not getattr(peer, 'runner', True):
            try:
                ipaddress.ip_address(self.host)
                why = 'Connection refused'
            except ValueError:
                why = 'Name or service not known'
            raise PveError(500, "500 Can't connect to {0}:{1} ({2})".format(self.host, self.port, why))
        if not peer.nodes.get(sorted(peer.nodes)[0], {}).get('online', True):
            # The endpoint is a node's address: that node is down.
            raise PveError(500, "500 Can't connect to {0}:{1} (No route to host)".format(self.host, self.port))
        if self.fingerprint != peer.cert_fingerprint:
            raise PveError(500, "fingerprint '{0}' not verified, abort!".format(peer.cert_fingerprint))
        # fakepve's own token check (server.FakePve._authenticate), as the target answers it.
        header = self.apitoken
        if not header.startswith('PVEAPIToken='):
            raise PveError(500, '401 permission denied - invalid PVE ticket')
        tokenid, _, secret = header[len('PVEAPIToken='):].partition('=')
        if peer.apitokens.get(tokenid) != secret:
            raise PveError(500, '401 authentication failure')
        self.peer, self.user = peer, tokenid
        return peer

    def local_node(self):
        """The ``local`` node of the target's /cluster/status (fakepve: the first node)."""
        return sorted(self.peer.nodes)[0]


def _client_error(exc):
    """A target's API error as PVE::APIClient::Exception stringifies it: ``<code> <message>`` and the fields."""
    text = '{0} {1}'.format(exc.status, exc.message)
    for key, value in sorted((exc.errors or {}).items()):
        text += '\n{0}: {1}'.format(key, value)
    return text


def _scrub_endpoint(text):
    """A target-endpoint with the token secret (whatever the apitoken value looks like) replaced by ***."""
    def hide(match):
        head, sep, _secret = match.group(2).rpartition('=')
        if sep and head not in ('', 'PVEAPIToken'):
            return match.group(1) + head + '=***'
        return match.group(1) + '***'
    return re.sub(r'(apitoken=)([^,]*)', hide, str(text))


def _scrub_body(body, content_type):
    """The request body with the secret of any target-endpoint replaced by ***."""
    try:
        if content_type == 'application/json':
            data = json.loads(body)
            if isinstance(data, dict) and 'target-endpoint' in data:
                data['target-endpoint'] = _scrub_endpoint(data['target-endpoint'])
            return json.dumps(data).encode()
        pairs = urllib.parse.parse_qsl(body.decode(), keep_blank_values=True)
        return urllib.parse.urlencode([(k, _scrub_endpoint(v) if k == 'target-endpoint' else v)
                                       for k, v in pairs]).encode()
    except (ValueError, UnicodeDecodeError):
        return b''


# ------------------------------------------------------------------ Lab methods

class LabMigrationHooks(object):
    """Mixin of pmxlab.Lab: the migration faults, run on the lab's loop (see lab/README.md, "Migration")."""

    _fingerprint = None

    @property
    def fingerprint(self):
        """SHA-256 fingerprint of the certificate every cluster serves, as ``pvenode cert info`` prints it."""
        return self._fingerprint

    def _migration_hook(self, cluster, name, *args):
        pve = self.clusters[cluster].pve
        return self.call(getattr(pve, name), *args)

    def fail_next_migration(self, cluster, vmid, message=None):
        """The next migration task of the guest (local, remote or by HA) fails midway: task error, the guest
        stays on the source, unlocked, nothing on the target."""
        return self._migration_hook(cluster, 'fail_next_migration', vmid, message)

    def break_migration_network(self, cluster, vmid):
        """The next migration of the guest loses the network to the target while copying: same cleanup."""
        return self._migration_hook(cluster, 'break_migration_network', vmid)

    def remove_storage(self, cluster, storage, node=None):
        """Remove a storage from the cluster, or from one node (its ``nodes`` list)."""
        return self._migration_hook(cluster, 'remove_storage', storage, node)

    def remove_bridge(self, cluster, bridge, node=None):
        """Remove a bridge from every node of the cluster, or from one."""
        return self._migration_hook(cluster, 'remove_bridge', bridge, node)

    def take_vmid(self, cluster, vmid):
        """A stopped VM ``taken-<vmid>`` takes the id in the cluster."""
        return self._migration_hook(cluster, 'take_vmid', vmid)

    def set_ha(self, cluster, vmid, state='started'):
        """Mark the guest HA-managed (state None: not any more)."""
        return self._migration_hook(cluster, 'set_ha', vmid, state)

    def add_local_disk(self, cluster, vmid, storage='local-lvm', size_gb=1):
        """Add a disk on a (local) storage to the guest; returns its config key."""
        return self._migration_hook(cluster, 'add_local_disk', vmid, storage, size_gb)

    def add_passthrough(self, cluster, vmid, key=None, value=None):
        """Add a passthrough device (VM) or bind mount (container); returns its config key."""
        return self._migration_hook(cluster, 'add_passthrough', vmid, key, value)
