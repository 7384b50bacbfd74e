#!/usr/bin/env python3
"""pmxlab: a local lab of several fake Proxmox VE clusters (fakepve), for pmx.multicluster.

Every cluster is a fakepve instance on its own loopback address and port 8006, served over TLS with one
certificate (ca.pem) and one API token (root@pam!pmx). The lab writes a .env in the format the
collection reads (PROXMOX_CLUSTERS, PROXMOX_CLUSTER_<name>_API_URL, ...).

Command line:

    python lab/pmxlab.py up  [--dir .lab] [--clusters 3] [--guests 0] [--first-host 127.0.0.2] ...
    python lab/pmxlab.py run [--dir .lab] ... -- ansible-playbook playbooks/demo.yml

Python:

    import pmxlab
    with pmxlab.Lab(tmpdir, clusters=3, first_host='127.0.1.2') as lab:
        lab.env_file, lab.ca_bundle, lab.clusters['production'].pve, lab.call(coro), lab.env()

Needs Python 3.11+, fakepve with its crypto extra (pip install 'fakepve[crypto]') and requests.
"""

import argparse
import asyncio
import dataclasses
import errno
import importlib
import inspect
import ipaddress
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import pvefleet
import pvemigrate
from pvebackup import SHARED_BACKUP_STORAGE, share_backup_storage

__all__ = ['Hold', 'Lab', 'LabCluster', 'LabError', 'CLUSTER_LAYOUT', 'TOKEN_ID', 'main']

PORT = 8006
USER = 'root@pam'
TOKEN_ID = 'root@pam!pmx'
START_TIMEOUT = 30
CALL_TIMEOUT = 60
ENV_HEADER = '# pmx.multicluster local lab (fakepve): generated, do not edit'
# Proxmox's own MAC prefix (BC:24:11), as PVE gives new NICs.
MAC_PREFIX = 'BC:24:11'

# (name, guest prefix, region, tier) of the first clusters; later ones are lab4, lab5, ...
CLUSTER_LAYOUT = (
    ('production', 'prod', 'eu-west', 'production'),
    ('staging', 'stg', 'eu-central', 'staging'),
    ('disaster-recovery', 'dr', 'us-east', 'dr'),
)

# The sample guests of every cluster: (suffix, kind, vmid, status, role tag, cores, memory MiB, disk GiB).
SAMPLE_GUESTS = (
    ('web01', 'qemu', 100, 'running', 'web', 2, 4096, 32),
    ('web02', 'qemu', 101, 'running', 'web', 2, 4096, 32),
    ('db01', 'qemu', 102, 'running', 'db', 4, 8192, 32),
    ('batch01', 'qemu', 103, 'stopped', 'batch', 2, 2048, 32),
    ('tpl-debian12', 'template', 9000, 'stopped', 'template', 2, 2048, 32),
    ('cache01', 'lxc', 104, 'running', 'cache', 1, 1024, 8),
    ('proxy01', 'lxc', 105, 'stopped', 'proxy', 1, 512, 8),
)
# Bulk guests get vmids from here up ({p}-bulk0001 is 10001), clear of the samples and the template.
BULK_VMID_BASE = 10000


class LabError(RuntimeError):
    """The lab cannot start or is not running; the message is one clear line."""


@dataclasses.dataclass
class LabCluster:
    """One fake cluster of the lab."""
    name: str
    host: str
    url: str
    pve: object
    token_id: str
    token_secret: str
    region: str
    tier: str
    patterns: list
    prefix: str
    # Extra: the node names (prefix-pve1, ...), the index (1-based) and the root password.
    nodes: list = dataclasses.field(default_factory=list)
    index: int = 0
    password: str = dataclasses.field(default='', repr=False)

    def guests(self):
        """Every VM and container of the fake, as FakeVm / FakeCt objects."""
        return list(self.pve.vms) + list(self.pve.cts)

    @property
    def headers(self):
        """The Authorization header of the cluster's API token."""
        return {'Authorization': 'PVEAPIToken={0}={1}'.format(self.token_id, self.token_secret)}


# ------------------------------------------------------------------ layout and guests

def cluster_meta(index):
    """(name, prefix, region, tier) of the cluster with this 1-based index."""
    if index <= len(CLUSTER_LAYOUT):
        return CLUSTER_LAYOUT[index - 1]
    name = 'lab{0}'.format(index)
    return name, name, 'lab', 'lab'


def lab_hosts(first_host, count):
    """count IPv4 addresses from first_host up, incrementing the last octet."""
    try:
        first = ipaddress.IPv4Address(first_host)
    except ValueError:
        raise LabError('first host {0!r} is not an IPv4 address'.format(first_host)) from None
    last_octet = int(first) & 0xFF
    if last_octet + count - 1 > 254:
        raise LabError('{0} clusters from {1} run past .254 of that /24: use a lower --first-host'.format(
            count, first_host))
    return [str(first + n) for n in range(count)]


def _mac(index, vmid):
    return '{0}:{1:02X}:{2:02X}:{3:02X}'.format(MAC_PREFIX, index & 0xFF, (vmid >> 8) & 0xFF, vmid & 0xFF)


def _ip(index, vmid):
    return '10.{0}.{1}.{2}'.format(index & 0xFF, (vmid // 100) % 256, vmid % 100 + 10)


def _smbios_uuid(cluster, vmid):
    return str(uuid.uuid5(uuid.NAMESPACE_URL, 'pmxlab:{0}:{1}'.format(cluster, vmid)))


def qemu_config(cluster, index, vmid, name, cores, memory, disk_gb, tags, template=False):
    """A plausible qemu-server config."""
    disk = 'base' if template else 'vm'
    cfg = {
        'name': name,
        'cores': cores,
        'sockets': 1,
        'cpu': 'x86-64-v2-AES',
        'memory': memory,
        'ostype': 'l26',
        'scsihw': 'virtio-scsi-single',
        'scsi0': 'local-lvm:{0}-{1}-disk-0,iothread=1,size={2}G'.format(disk, vmid, disk_gb),
        'ide2': 'none,media=cdrom',
        'net0': 'virtio={0},bridge=vmbr0'.format(_mac(index, vmid)),
        'boot': 'order=scsi0;ide2;net0',
        'agent': '1',
        'onboot': 0 if template else 1,
        'smbios1': 'uuid=' + _smbios_uuid(cluster, vmid),
        'vmgenid': _smbios_uuid(cluster + ':gen', vmid),
    }
    if tags:
        cfg['tags'] = tags
    if template:
        cfg['template'] = 1
    return cfg


def lxc_config(name, index, vmid, cores, memory, disk_gb, tags):
    """A plausible pct config."""
    cfg = {
        'hostname': name,
        'ostype': 'debian',
        'arch': 'amd64',
        'cores': cores,
        'memory': memory,
        'swap': 512,
        'rootfs': 'local-lvm:subvol-{0}-disk-0,size={1}G'.format(vmid, disk_gb),
        'net0': 'name=eth0,bridge=vmbr0,hwaddr={0},ip=dhcp,type=veth'.format(_mac(index, vmid)),
        'onboot': 1,
        'unprivileged': 1,
        'features': 'nesting=1',
    }
    if tags:
        cfg['tags'] = tags
    return cfg


def _agent_answers(index, vmid, mac):
    """What the QEMU guest agent of a VM reports: its own address on eth0."""
    return {'interfaces': [
        {'name': 'lo', 'hardware-address': '00:00:00:00:00:00',
         'ip-addresses': [{'ip-address': '127.0.0.1', 'ip-address-type': 'ipv4', 'prefix': 8}]},
        {'name': 'eth0', 'hardware-address': mac.lower(),
         'ip-addresses': [{'ip-address': _ip(index, vmid), 'ip-address-type': 'ipv4', 'prefix': 16}]}]}


def _add_guest(pve, cluster, index, node, kind, vmid, name, status, cores, memory, disk_gb, tags):
    if kind == 'lxc':
        return pve.add_ct(vmid, name, node=node, status=status,
                          config=lxc_config(name, index, vmid, cores, memory, disk_gb, tags))
    template = kind == 'template'
    vm = pve.add_vm(vmid, name, node=node, status=status, template=template,
                    config=qemu_config(cluster, index, vmid, name, cores, memory, disk_gb, tags, template))
    if not template:
        vm.agent = _agent_answers(index, vmid, _mac(index, vmid))
    return vm


def populate(pve, cluster, index, prefix, tier, nodes, bulk=0):
    """Add the sample guests and `bulk` extra ones, round-robin over the nodes."""
    n = 0
    for suffix, kind, vmid, status, role, cores, memory, disk_gb in SAMPLE_GUESTS:
        tags = '{0};{1}'.format(role, tier)
        _add_guest(pve, cluster, index, nodes[n % len(nodes)], kind, vmid, '{0}-{1}'.format(prefix, suffix),
                   status, cores, memory, disk_gb, tags)
        n += 1
    # Deterministic mix: every 5th is a container (20%), every 4th stopped (25%), every 10th tagged 'bulk;<tier>'.
    for i in range(1, bulk + 1):
        vmid = BULK_VMID_BASE + i
        kind = 'lxc' if i % 5 == 0 else 'qemu'
        status = 'stopped' if i % 4 == 0 else 'running'
        tags = 'bulk;{0}'.format(tier) if i % 10 == 0 else ('bulk' if i % 3 == 0 else '')
        if kind == 'lxc':
            _add_guest(pve, cluster, index, nodes[n % len(nodes)], kind, vmid, '{0}-bulk{1:04d}'.format(prefix, i),
                       status, 1, 512, 8, tags)
        else:
            _add_guest(pve, cluster, index, nodes[n % len(nodes)], kind, vmid, '{0}-bulk{1:04d}'.format(prefix, i),
                       status, 1 + i % 2, 1024 * (1 + i % 4), 16, tags)
        n += 1


# ------------------------------------------------------------------ hooks: hold a request or a task

class Hold(object):
    """Requests or tasks of a fake that wait until release(): the lab's way to interleave runs deterministically.

    ``reached`` is set (a threading.Event) when the first matching request or task is held; ``held`` counts
    them. Created by Lab.hold_requests() and Lab.hold_tasks(); release() lets every held one go on, and
    later matches are no longer held.
    """

    def __init__(self, lab, count):
        self._lab = lab
        self.count = count
        self.held = 0
        self.reached = threading.Event()
        self._gate = None  # the asyncio.Event, made on the lab's loop
        self.released = False

    def matches_left(self):
        return not self.released and (self.count is None or self.held < self.count)

    async def wait_here(self):
        """Called on the loop by the fake for a held request or task: wait for release()."""
        self.held += 1
        if self._gate is None:
            self._gate = asyncio.Event()
        self.reached.set()
        await self._gate.wait()

    def wait_reached(self, timeout=30):
        """Block until a request or task is held; False on timeout."""
        return self.reached.wait(timeout)

    def release(self):
        """Let every held request or task go on (safe to call more than once, and before anything was held)."""
        if self._lab.running:
            self._lab.call(self.open)

    def open(self):
        """release(), on the lab's loop."""
        self.released = True
        if self._gate is None:
            self._gate = asyncio.Event()
        self._gate.set()


_LAB_PVE = None


def lab_pve_class():
    """FakePve with the lab's hooks (imported lazily: fakepve is only needed once a lab starts).

    The hooks model nothing new: a held request is one still in flight (as on a slow network), a held task
    one that PVE has started (its UPID answered, status ``running``, the guest's config lock taken) and that
    has not finished yet, as a long clone or a slow start does on a real cluster.
    """
    global _LAB_PVE
    if _LAB_PVE is not None:
        return _LAB_PVE
    from aiohttp import web
    from fakepve import FakePve
    from pvebackup import BackupModel
    from pvedisks import DiskOps  # lab/: disk resize, move and unlink, modelled

    # pvemigrate.PveMigrate: migration within and between the lab's clusters (lab/README.md, "Migration");
    # BackupModel: vzdump, prune and restore (lab/README.md, "Backups and restores");
    # pvedisks.DiskOps: a VM's resize, move_disk and unlink, a container's move_volume (lab/README.md).
    # pvefleet.TaskConcurrency: the most tasks running at once (Lab.most_running).
    class LabPve(pvefleet.TaskConcurrency, BackupModel, pvemigrate.PveMigrate, DiskOps, FakePve):
        def __init__(self, *args, **kwargs):
            super(LabPve, self).__init__(*args, **kwargs)
            self.request_holds = []  # (method, suffix, Hold)
            self.task_holds = []     # (task type, vmid or None, Hold)
            # PVE seconds a task of a type takes (qmclone: 3), on top of what fakepve models; see Lab(task_secs=).
            self.task_secs = {}

        def _build_app(self):
            app = super(LabPve, self)._build_app()
            # Outermost: a held request has not reached the fake yet (not recorded, not answered).
            app.middlewares.insert(0, self._hold_requests)
            return app

        @web.middleware
        async def _hold_requests(self, request, handler):
            for method, suffix, hold in list(self.request_holds):
                if request.method == method and request.path.endswith(suffix) and hold.matches_left():
                    await hold.wait_here()
                    break
            return await handler(request)

        async def task(self, node, ttype, tid, user, body, vm=None, lock=True, log=()):
            secs = self.task_secs.get(ttype)
            if secs and ttype not in self.self_timed_tasks:
                work = body

                async def body():  # the task takes its time before it does its work, as a clone copying disks
                    await self.pause(secs)
                    return await work()
            hold = next((h for t, vmid, h in self.task_holds
                         if t == ttype and vmid in (None, str(tid)) and h.matches_left()), None)
            if hold is None:
                return await super(LabPve, self).task(node, ttype, tid, user, body, vm=vm, lock=lock, log=log)

            async def held_body():
                await hold.wait_here()
                return await body()
            # FakePve runs a task before answering when time_scale is 0; a held task must run in the
            # background instead, as PVE's workers do. Nothing awaits between this and FakePve's check.
            scale = self.time_scale
            self.time_scale = scale or 1e-9
            try:
                return await super(LabPve, self).task(node, ttype, tid, user, held_body, vm=vm, lock=lock, log=log)
            finally:
                self.time_scale = scale

    _LAB_PVE = LabPve
    return LabPve


# ------------------------------------------------------------------ files

def _write_private(path, text):
    """Write text to path atomically, mode 0600 whatever the umask."""
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix='.pmxlab-', dir=directory)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, 'w', encoding='utf-8') as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    os.chmod(path, 0o600)


def _bind_error(host, port, exc):
    """One line about a failed listen."""
    what = {
        errno.EADDRINUSE: 'address already in use \u2014 is another lab running? stop it or use --first-host',
        errno.EADDRNOTAVAIL: 'address not available \u2014 on macOS only 127.0.0.1 exists by default; add '
                             'aliases (sudo ifconfig lo0 alias {0} up) or use --first-host'.format(host),
        errno.EACCES: 'permission denied \u2014 use a port above 1023',
    }.get(exc.errno)
    if what is None:
        what = exc.strerror or str(exc)
    return 'cannot listen on {0}:{1}: {2}'.format(host, port, what)


# ------------------------------------------------------------------ the lab

class Lab(pvemigrate.LabMigrationHooks):
    """Several fakepve clusters served on one private asyncio loop in a daemon thread."""

    def __init__(self, directory, clusters=3, guests_per_cluster=0, first_host='127.0.0.2', port=PORT,
                 time_scale=0.0, latency=0.0, nodes_per_cluster=3, task_secs=None,
                 backup_storage=SHARED_BACKUP_STORAGE):
        if int(clusters) < 1:
            raise LabError('a lab needs at least one cluster')
        if int(nodes_per_cluster) < 1:
            raise LabError('a cluster needs at least one node')
        if int(guests_per_cluster) < 0:
            raise LabError('guests_per_cluster must be >= 0')
        self.directory = os.path.abspath(os.fspath(directory))
        self.count = int(clusters)
        self.guests_per_cluster = int(guests_per_cluster)
        self.first_host = first_host
        self.port = int(port)
        self.time_scale = float(time_scale)
        self.latency = float(latency)
        # PVE seconds each task type takes ({'qmclone': 3, 'qmstart': 1}); they need time_scale > 0 to cost time.
        self.task_secs = dict((str(k), float(v)) for k, v in (task_secs or {}).items())
        self.nodes_per_cluster = int(nodes_per_cluster)
        # An NFS backup storage every cluster defines (the same files): see pvebackup.share_backup_storage.
        self.backup_storage = backup_storage
        self.hosts = lab_hosts(first_host, self.count)
        self.env_file = os.path.join(self.directory, '.env')
        self.ca_bundle = os.path.join(self.directory, 'ca.pem')
        self.clusters = {}
        self.loop = None
        self.thread = None
        self._lock = threading.Lock()
        self._holds = []

    # ------------------------------------------------------------- lifecycle

    @property
    def running(self):
        """True between a successful start() and stop()."""
        return self.loop is not None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def __repr__(self):
        return '<Lab {0} clusters from {1}:{2}, {3}>'.format(self.count, self.first_host, self.port,
                                                              'running' if self.running else 'stopped')

    def _build(self):
        FakePve = lab_pve_class()
        built = {}
        for index, host in enumerate(self.hosts, 1):
            name, prefix, region, tier = cluster_meta(index)
            nodes = ['{0}-pve{1}'.format(prefix, n) for n in range(1, self.nodes_per_cluster + 1)]
            password = secrets.token_urlsafe(18)
            pve = FakePve(user=USER, password=password, host=host, port=self.port)
            # Model starts with the node 'pve1': the cluster has its own nodes instead.
            pve.nodes = dict((node, {'online': True}) for node in nodes)
            pve.cluster_name = name
            pve.time_scale = self.time_scale
            pve.task_secs = dict(self.task_secs)
            if self.latency > 0:
                pve.slow_network(self.latency)
            token_secret = str(uuid.uuid4())
            pve.apitokens[TOKEN_ID] = token_secret
            populate(pve, name, index, prefix, tier, nodes, self.guests_per_cluster)
            if self.backup_storage:
                share_backup_storage([pve], self.backup_storage, shared_with=built.values())
            built[name] = LabCluster(name=name, host=host, url='https://{0}:{1}'.format(host, self.port), pve=pve,
                                     token_id=TOKEN_ID, token_secret=token_secret, region=region, tier=tier,
                                     patterns=[prefix + '-*'], prefix=prefix, nodes=nodes, index=index,
                                     password=password)
        return built

    def start(self):
        """Build and serve every cluster, write ca.pem and .env, and wait until each one answers."""
        with self._lock:
            if self.running:
                raise LabError('the lab is already running')
            try:
                # make_cert imports cryptography lazily: import it here to fail early and clearly.
                importlib.import_module('cryptography')
                from fakepve.certs import make_cert
            except ModuleNotFoundError as exc:
                raise LabError("pmxlab needs fakepve with its crypto extra: pip install 'fakepve[crypto]' "
                               '({0})'.format(exc)) from None
            os.makedirs(self.directory, exist_ok=True)
            clusters = self._build()
            # The certificate goes to a scratch directory first: a lab that fails to start (another one is
            # listening) must not overwrite the ca.pem and .env a running lab uses.
            scratch = tempfile.mkdtemp(prefix='.pmxlab-pki-', dir=self.directory)
            try:
                certfile, keyfile, _ = make_cert(scratch, name='pmxlab', hosts=tuple(self.hosts))
                self._fingerprint = pvemigrate.join(clusters.values(), certfile)
                self._serve(clusters, certfile, keyfile)
                os.replace(certfile, self.ca_bundle)
            finally:
                # The key is loaded by every server; nothing needs the file any more.
                shutil.rmtree(scratch, ignore_errors=True)
            self.clusters = clusters
            try:
                _write_private(self.env_file, self.env_text())
                self._wait_ready()
            except BaseException:
                self._shutdown()
                raise
        return self

    def _serve(self, clusters, certfile, keyfile):
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=self._run_loop, args=(loop,), name='pmxlab-loop', daemon=True)
        thread.start()
        self.loop, self.thread = loop, thread

        async def start_all():
            try:
                for cluster in clusters.values():
                    try:
                        await cluster.pve.start(certfile, keyfile)
                    except OSError as exc:
                        raise LabError(_bind_error(cluster.host, self.port, exc)) from None
            except BaseException:
                # stop() is a no-op for a fake that never got its runner.
                for cluster in clusters.values():
                    await cluster.pve.stop()
                raise
        try:
            asyncio.run_coroutine_threadsafe(start_all(), loop).result(START_TIMEOUT)
        except BaseException as exc:
            self._halt()
            if isinstance(exc, TimeoutError):
                raise LabError('the fakes did not start within {0}s'.format(START_TIMEOUT)) from None
            raise

    @staticmethod
    def _run_loop(loop):
        asyncio.set_event_loop(loop)
        loop.run_forever()

    def _wait_ready(self):
        """Until every cluster answers GET /version with its token, over TLS verified against ca.pem."""
        import requests
        session = requests.Session()
        session.trust_env = False  # no proxy from the environment for loopback addresses
        deadline = time.monotonic() + START_TIMEOUT
        pending = dict(self.clusters)
        last = {}
        try:
            while pending:
                for name, cluster in list(pending.items()):
                    try:
                        resp = session.get(cluster.url + '/api2/json/version', headers=cluster.headers,
                                           verify=self.ca_bundle, timeout=5)
                        if resp.status_code == 200 and 'version' in (resp.json().get('data') or {}):
                            del pending[name]
                            continue
                        last[name] = 'HTTP {0}'.format(resp.status_code)
                    except (requests.RequestException, ValueError) as exc:
                        last[name] = '{0}: {1}'.format(type(exc).__name__, exc)
                if not pending:
                    break
                if time.monotonic() > deadline:
                    raise LabError('clusters not answering after {0}s: {1}'.format(
                        START_TIMEOUT, '; '.join('{0} ({1})'.format(n, last.get(n, '?')) for n in pending)))
                time.sleep(0.1)
        finally:
            session.close()

    def stop(self):
        """Let pending tasks run, stop every fake and the loop. Safe to call more than once."""
        with self._lock:
            self._shutdown()

    def _shutdown(self):
        loop = self.loop
        if loop is None:
            return
        fakes = [c.pve for c in self.clusters.values()]

        holds, self._holds = self._holds, []

        async def stop_all():
            from fakepve import settle
            for hold in holds:  # nothing stays held: the fakes can finish what they started
                hold.open()
            await settle()
            await asyncio.gather(*(pve.stop() for pve in fakes), return_exceptions=True)
            # Tasks still waiting at time_scale > 0 (a long shutdown, a held lock) end here, not as warnings.
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)
        try:
            if loop.is_running():
                asyncio.run_coroutine_threadsafe(stop_all(), loop).result(START_TIMEOUT)
        except Exception:  # noqa: BLE001 - stopping goes on whatever a fake does
            pass
        finally:
            self._halt()

    def _halt(self):
        loop, thread = self.loop, self.thread
        self.loop = self.thread = None
        if loop is None:
            return
        if loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(START_TIMEOUT)
        if thread is None or not thread.is_alive():
            loop.close()

    # ------------------------------------------------------------- using it

    def call(self, coro, *args, timeout=CALL_TIMEOUT):
        """Run a coroutine on the lab's loop and return its result (waits up to timeout seconds).

        Also takes a plain callable (with args), run on the loop's thread; an awaitable it returns is awaited.
        """
        loop = self.loop
        if loop is None:
            if inspect.iscoroutine(coro):
                coro.close()
            raise LabError('the lab is not running')
        if not inspect.isawaitable(coro):
            if not callable(coro):
                raise TypeError('call() takes a coroutine or a callable, not {0!r}'.format(coro))
            func = coro

            async def wrapper():
                result = func(*args)
                if inspect.isawaitable(result):
                    result = await result
                return result
            coro = wrapper()
        elif args:
            raise TypeError('arguments are for a callable, not a coroutine')
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)

    def _hold(self, count):
        hold = Hold(self, count)
        self._holds.append(hold)
        return hold

    def hold_requests(self, cluster, method, suffix, count=1):
        """The next ``count`` requests to ``cluster`` with this method and a path ending in ``suffix`` wait
        (before the fake sees them) until the returned Hold is released. count=None: every one."""
        hold = self._hold(count)
        pve = self.clusters[cluster].pve
        self.call(lambda: pve.request_holds.append((method.upper(), suffix, hold)))
        return hold

    def hold_tasks(self, cluster, task_type, vmid=None, count=1):
        """The next ``count`` tasks of ``task_type`` (qmcreate, vzcreate, qmstart, qmdestroy...; for one vmid
        if given) are started (UPID answered, status running, config lock taken) but wait until the returned
        Hold is released. count=None: every one."""
        hold = self._hold(count)
        pve = self.clusters[cluster].pve
        key = None if vmid is None else str(vmid)
        self.call(lambda: pve.task_holds.append((task_type, key, hold)))
        return hold

    def add_storage(self, cluster, sid, stype='lvmthin', content='images,rootdir', avail=None):
        """One more storage on every node of ``cluster`` (pvedisks.DiskOps.add_storage): a target for disk moves;
        ``avail``: bytes free (None: unlimited)."""
        pve = self.clusters[cluster].pve
        return self.call(pve.add_storage, sid, stype, content, avail)


    # ------------------------------------------------------------- faults: backups (pvebackup.py)

    def fill_storage(self, cluster, storage, avail=0):
        """Storage full: ``storage`` of ``cluster`` has ``avail`` bytes left (a shared one, in every cluster);
        a backup, a disk move or a resize needing more then fails with "No space left on device".
        Returns the bytes it had, for free_storage()."""
        pve = self.clusters[cluster].pve
        before = pve.storages[storage].get('avail')
        self.call(pve.fill_storage, storage, avail)
        return before

    def free_storage(self, cluster, storage, avail):
        """Undo fill_storage() with the bytes it returned."""
        store = self.clusters[cluster].pve.storages[storage]
        self.call(lambda: store.__setitem__('avail', avail))

    def hold_backup_lock(self, cluster, vmid):
        """Another vzdump runs on guest ``vmid``: its config lock 'backup' and its node's vzdump lock are held
        until the returned Hold is released."""
        hold = self._hold(1)
        pve = self.clusters[cluster].pve
        self.call(lambda: pve.hold_backup(vmid, hold))
        hold.wait_reached(10)
        return hold

    def lose_archive(self, cluster, volid):
        """Archive missing: the backup file behind ``volid`` is gone (deleted on the NFS server behind PVE's
        back); returns its volume record, for restore_archive()."""
        pve = self.clusters[cluster].pve
        sid, _sep, volname = volid.partition(':')
        return self.call(lambda: pve.storages[sid]['volumes'].pop(volname))

    def restore_archive(self, cluster, volid, record):
        """Undo lose_archive()."""
        pve = self.clusters[cluster].pve
        sid, _sep, volname = volid.partition(':')
        self.call(lambda: pve.storages[sid]['volumes'].__setitem__(volname, record))

    def backups(self, cluster, storage=SHARED_BACKUP_STORAGE, vmid=None):
        """The backup volume ids on a storage of a cluster (of one guest), oldest first."""
        pve = self.clusters[cluster].pve
        items = [b for b in pve._backups_on(storage) if vmid is None or b['vmid'] == int(vmid)]
        return [b['volid'] for b in sorted(items, key=lambda b: (b['ctime'], b['volid']))]

    def most_running(self, cluster, node=None):
        """The most tasks that ran at once on ``cluster`` (on one ``node`` of it, if given) since the lab
        started or reset_most_running() (see lab/pvefleet.py)."""
        pve = self.clusters[cluster].pve
        return self.call(lambda: pve.most_running[node])

    def reset_most_running(self):
        """Start a new record of the tasks running at once, on every cluster."""
        for cluster in self.clusters.values():
            self.call(cluster.pve.reset_most_running)

    def env(self):
        """The PROXMOX_* variables of the .env, as a dict (in the file's order)."""
        if not self.clusters:
            raise LabError('the lab is not running')
        out = {'PROXMOX_CLUSTERS': ','.join(self.clusters),
               'PROXMOX_DEFAULT_CLUSTER': next(iter(self.clusters))}
        for name, c in self.clusters.items():
            var = 'PROXMOX_CLUSTER_{0}_'.format(name)
            out.update({var + 'API_URL': c.url, var + 'TOKEN_ID': c.token_id, var + 'TOKEN_SECRET': c.token_secret,
                        var + 'CA_BUNDLE': self.ca_bundle, var + 'REGION': c.region, var + 'TIER': c.tier,
                        var + 'PATTERNS': ','.join(c.patterns)})
        return out

    def env_text(self):
        """The .env file's text."""
        return '\n'.join([ENV_HEADER] + ['{0}={1}'.format(k, v) for k, v in self.env().items()]) + '\n'

    def summary(self):
        """One line per cluster: name, url, guests and nodes."""
        width = max(len(name) for name in self.clusters)
        lines = []
        for name, c in self.clusters.items():
            lines.append('{0:<{w}}  {1:<24}  {2:>5} guests  {3} nodes ({4})'.format(
                name, c.url, len(c.pve.vms) + len(c.pve.cts), len(c.nodes), c.patterns[0], w=width))
        return lines


# ------------------------------------------------------------------ command line

def task_secs_arg(text):
    """``qmclone:3,qmstart:1`` as {'qmclone': 3.0, 'qmstart': 1.0}."""
    out = {}
    for part in filter(None, (p.strip() for p in str(text).split(','))):
        ttype, sep, secs = part.partition(':')
        try:
            out[ttype.strip()] = float(secs)
        except ValueError:
            raise argparse.ArgumentTypeError('%r is not TYPE:SECONDS (for example qmclone:3)' % part) from None
        if not sep or not ttype.strip() or out[ttype.strip()] < 0:
            raise argparse.ArgumentTypeError('%r is not TYPE:SECONDS (for example qmclone:3)' % part)
    return out


def _parser():
    parser = argparse.ArgumentParser(prog='pmxlab', description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest='command', required=True, metavar='{up,run}')

    def options(p):
        p.add_argument('--dir', default='.lab', help='where ca.pem and .env go (default .lab)')
        p.add_argument('--clusters', type=int, default=3, help='number of clusters (default 3)')
        p.add_argument('--guests', type=int, default=0, help='extra bulk guests per cluster (default 0)')
        p.add_argument('--first-host', default='127.0.0.2', help='address of the first cluster (default 127.0.0.2)')
        p.add_argument('--port', type=int, default=PORT, help='port of every cluster (default 8006)')
        p.add_argument('--nodes', type=int, default=3, help='nodes per cluster (default 3)')
        p.add_argument('--time-scale', type=float, default=0.0,
                       help='real seconds per PVE second; 0 finishes tasks at once (default 0)')
        p.add_argument('--latency', type=float, default=0.0, help='PVE seconds added to every response (default 0)')
        p.add_argument('--task-secs', type=task_secs_arg, default={}, metavar='TYPE:SECS,...',
                       help='PVE seconds a task type takes, e.g. qmclone:3,qmstart:1 (needs --time-scale > 0)')

    up = sub.add_parser('up', help='start the lab and run until Ctrl-C / SIGTERM')
    options(up)
    run = sub.add_parser('run', help='start the lab, run a command with PROXMOX_ENV_FILE set, stop the lab',
                         usage='%(prog)s [options] -- CMD [ARGS...]')
    options(run)
    run.add_argument('cmd', nargs=argparse.REMAINDER, help='the command, after --')
    return parser


def _lab(args):
    return Lab(args.dir, clusters=args.clusters, guests_per_cluster=args.guests, first_host=args.first_host,
               port=args.port, time_scale=args.time_scale, latency=args.latency, nodes_per_cluster=args.nodes,
               task_secs=args.task_secs)


def _err(message):
    print('pmxlab: ' + message, file=sys.stderr, flush=True)


def _cmd_up(args):
    lab = _lab(args)
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()
    old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        started = time.monotonic()
        lab.start()
        for line in lab.summary():
            print(line)
        print('env file: {0}  (ca: {1}; started in {2:.2f}s)'.format(lab.env_file, lab.ca_bundle,
                                                                     time.monotonic() - started))
        print('export PROXMOX_ENV_FILE={0}   # Ctrl-C stops the lab'.format(lab.env_file), flush=True)
        while not stop.wait(1.0):
            pass
    finally:
        lab.stop()
        for sig, handler in old.items():
            signal.signal(sig, handler)
    print('pmxlab: stopped', flush=True)
    return 0


def _child_env(lab):
    env = dict(os.environ)
    env['PROXMOX_ENV_FILE'] = lab.env_file
    # A proxy from the environment must not catch the lab's loopback addresses.
    if any(env.get(k) for k in ('https_proxy', 'HTTPS_PROXY', 'http_proxy', 'HTTP_PROXY', 'all_proxy', 'ALL_PROXY')):
        for key in ('no_proxy', 'NO_PROXY'):
            current = [h for h in env.get(key, '').split(',') if h.strip()]
            env[key] = ','.join(current + [h for h in lab.hosts if h not in current])
    return env


def _cmd_run(args):
    cmd = list(args.cmd)
    if cmd and cmd[0] == '--':
        cmd = cmd[1:]
    if not cmd:
        _err('run needs a command: pmxlab run [options] -- CMD [ARGS...]')
        return 2
    lab = _lab(args)
    child = None
    interrupted = []

    def on_signal(signum, frame):
        interrupted.append(signum)
        if child is None:
            raise KeyboardInterrupt()
        # A Ctrl-C at a terminal reaches the child on its own (same process group): forward only the others.
        if signum == signal.SIGINT and interrupted.count(signal.SIGINT) == 1 and _in_foreground():
            return
        try:
            child.send_signal(signum)
        except OSError:
            pass
    old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            lab.start()
        except KeyboardInterrupt:
            return 130
        try:
            child = subprocess.Popen(cmd, env=_child_env(lab))
        except OSError as exc:
            _err('cannot run {0}: {1}'.format(cmd[0], exc.strerror or exc))
            return 127
        while True:
            try:
                code = child.wait()
                break
            except KeyboardInterrupt:
                continue
        return code if code >= 0 else 128 - code
    finally:
        lab.stop()
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _in_foreground():
    try:
        return os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except (OSError, ValueError, AttributeError):
        return False


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        if args.command == 'up':
            return _cmd_up(args)
        return _cmd_run(args)
    except LabError as exc:
        _err(str(exc))
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == '__main__':
    sys.exit(main())
