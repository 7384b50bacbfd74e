"""The lab's migration model (lab/pvemigrate.py), driven over HTTP as a client would: every request goes through
fakepve's schema validation, then the model. Each test has its own two-cluster lab (about 0.2 s to start)."""

import hashlib
import re
import socket
import ssl
import time

import pytest
import requests

import pmxlab
from conftest import FRESH_LAB_HOST

SOURCE, TARGET = 'production', 'staging'
# The refusal table shares one lab (nothing changes there), clear of the conftest labs' addresses.
QUIET_LAB_HOST = FRESH_LAB_HOST.rsplit('.', 2)[0] + '.3.2'


class Api(object):
    """A requests session on one lab cluster, with its API token."""

    def __init__(self, lab, cluster):
        self.lab = lab
        self.c = lab.clusters[cluster]
        self.pve = self.c.pve
        self.base = self.c.url + '/api2/json'
        self.s = requests.Session()
        self.s.trust_env = False
        self.s.verify = lab.ca_bundle
        self.s.headers.update(self.c.headers)

    def get(self, path, /, **params):
        return self.s.get(self.base + path, params=params)

    def post(self, path, /, **data):
        return self.s.post(self.base + path, data=data)

    def data(self, path, /, **params):
        resp = self.get(path, **params)
        assert resp.status_code == 200, resp.text
        return resp.json()['data']

    def start(self, path, /, **data):
        """POST that must start a task: its UPID."""
        resp = self.post(path, **data)
        assert resp.status_code == 200, resp.text
        return resp.json()['data']

    def task(self, upid, limit=10):
        """Wait for the task: (exit status, log lines)."""
        node = upid.split(':')[1]
        started = time.monotonic()
        while True:
            status = self.data('/nodes/{0}/tasks/{1}/status'.format(node, upid))
            if status['status'] == 'stopped':
                break
            assert time.monotonic() - started < limit, 'task still running'
            time.sleep(0.01)
        lines = [x['t'] for x in self.data('/nodes/{0}/tasks/{1}/log'.format(node, upid), limit=500)]
        return status['exitstatus'], lines

    def resource(self, vmid):
        rows = [r for r in self.data('/cluster/resources', type='vm') if r['vmid'] == vmid]
        return rows[0] if rows else None

    def tasks(self):
        return len(self.pve.tasklog)


@pytest.fixture
def lab(tmp_path):
    with pmxlab.Lab(str(tmp_path / 'lab'), clusters=2, first_host=FRESH_LAB_HOST) as running:
        yield running


@pytest.fixture(scope='module')
def quiet_lab(tmp_path_factory):
    with pmxlab.Lab(str(tmp_path_factory.mktemp('quiet-lab')), clusters=2, first_host=QUIET_LAB_HOST) as running:
        yield running


@pytest.fixture
def src(lab):
    return Api(lab, SOURCE)


@pytest.fixture
def dst(lab):
    return Api(lab, TARGET)


def endpoint(lab, cluster=TARGET, secret=None, fingerprint=True, host=None, port=None, token_id=None):
    c = lab.clusters[cluster]
    text = 'apitoken=PVEAPIToken={0}={1},host={2}'.format(token_id or c.token_id, secret or c.token_secret,
                                                       host or c.host)
    if port:
        text += ',port={0}'.format(port)
    if fingerprint:
        text += ',fingerprint={0}'.format(lab.fingerprint if fingerprint is True else fingerprint)
    return text


def body(resp):
    return resp.json()


def no_secret(lab, *texts):
    secrets = [c.token_secret for c in lab.clusters.values()]
    for text in texts:
        for secret in secrets:
            assert secret not in str(text)


def log_has(lines, *fragments):
    text = '\n'.join(lines)
    for fragment in fragments:
        assert fragment in text, '{0!r} not in\n{1}'.format(fragment, text)


STAMP = re.compile(r'^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ')


# ------------------------------------------------------------------ precondition answers

def test_qemu_precondition_lists_disks_resources_and_nodes(lab, src):
    data = src.data('/nodes/prod-pve1/qemu/100/migrate')
    assert data['running'] == 1 and data['allowed_nodes'] == ['prod-pve2', 'prod-pve3']
    assert data['not_allowed_nodes'] == {} and data['local_resources'] == []
    assert [(d['volid'], d['size'], d['drivename'], d['is_attached']) for d in data['local_disks']] == [
        ('local-lvm:vm-100-disk-0', 32 * 1024 ** 3, 'scsi0', 1)]
    assert 'dependent-ha-resources' not in data and data['has-dbus-vmstate'] == 1
    lab.add_passthrough(SOURCE, 100)
    lab.remove_storage(SOURCE, 'local-lvm', node='prod-pve3')
    lab.set_ha(SOURCE, 100)
    data = src.data('/nodes/prod-pve1/qemu/100/migrate', target='prod-pve2')
    assert data['local_resources'] == ['hostpci0']
    assert data['allowed_nodes'] == ['prod-pve2']
    assert data['not_allowed_nodes'] == {'prod-pve3': {'unavailable_storages': ['local-lvm']}}
    assert data['dependent-ha-resources'] == []
    lab.remove_storage(SOURCE, 'local-lvm')
    resp = src.get('/nodes/prod-pve1/qemu/100/migrate')
    assert resp.status_code == 500 and body(resp)['message'].strip() == "storage 'local-lvm' does not exist"
    # The guest is not on that node: PVE's missing config file.
    resp = src.get('/nodes/prod-pve2/qemu/100/migrate')
    assert resp.status_code == 500 and 'does not exist' in body(resp)['message']


def test_shared_storage_disks_are_not_local(lab, src):
    """A VM created (through the API) on a shared storage has no local disks and live-migrates without
    with-local-disks; add_local_disk gives it one, and then it needs the flag."""
    src.post('/storage', storage='shared1', type='dir', path='/mnt/shared1', content='images', shared=1)
    src.start('/nodes/prod-pve1/qemu', vmid=400, name='prod-shared', scsi0='shared1:4',
              net0='virtio,bridge=vmbr0')
    src.start('/nodes/prod-pve1/qemu/400/status/start')
    assert src.data('/nodes/prod-pve1/qemu/400/migrate')['local_disks'] == []
    status, _ = src.task(src.start('/nodes/prod-pve1/qemu/400/migrate', target='prod-pve2', online=1))
    assert status == 'OK' and src.resource(400)['node'] == 'prod-pve2'
    key = lab.add_local_disk(SOURCE, 400, size_gb=2)
    assert key == 'scsi1'
    disks = src.data('/nodes/prod-pve2/qemu/400/migrate')['local_disks']
    assert [d['volid'] for d in disks] == ['local-lvm:vm-400-disk-0']
    status, lines = src.task(src.start('/nodes/prod-pve2/qemu/400/migrate', target='prod-pve1', online=1))
    assert status == 'migration aborted'
    log_has(lines, "can't live migrate attached local disks without with-local-disks option")


def test_lxc_precondition_uses_pve_keys(lab, src):
    data = src.data('/nodes/prod-pve3/lxc/104/migrate')
    assert data == {'running': 1, 'allowed-nodes': ['prod-pve1', 'prod-pve2'], 'not-allowed-nodes': {}}
    lab.set_ha(SOURCE, 104)
    assert src.data('/nodes/prod-pve3/lxc/104/migrate')['dependent-ha-resources'] == []


# ------------------------------------------------------------------ within a cluster

@pytest.mark.parametrize('path, params, status, message, errors', [
    ('/nodes/prod-pve1/qemu/100/migrate', {'target': 'prod-pve1', 'online': 1}, 400,
     'Parameter verification failed.', {'target': 'target is local node.'}),
    ('/nodes/prod-pve1/qemu/100/migrate', {'target': 'prod-pve9', 'online': 1}, 500,
     "no such cluster node 'prod-pve9'", None),
    ('/nodes/prod-pve1/qemu/100/migrate', {'target': 'prod-pve2'}, 500,
     "can't migrate running VM without --online", None),
    ('/nodes/prod-pve1/qemu/103/migrate', {'target': 'prod-pve2', 'force': 1}, 400,
     'Parameter verification failed.', {'force': 'Only root may use this option.'}),
    ('/nodes/prod-pve1/qemu/103/migrate', {'target': 'prod-pve2', 'targetstorage': 'nope'}, 500,
     "storage 'nope' does not exist", None),
    ('/nodes/prod-pve1/qemu/103/migrate', {'target': 'prod-pve2', 'targetstorage': 'local'}, 500,
     "storage 'local' does not support vm images", None),
    ('/nodes/prod-pve1/qemu/103/migrate', {'target': 'prod-pve2', 'targetstorage': 'aa:local-lvm,aa:bb'}, 400,
     'Parameter verification failed.',
     {'targetstorage': "failed to parse storage map: duplicate mapping for source 'aa'"}),
    ('/nodes/prod-pve1/qemu/103/migrate', {'target': 'prod-pve2', 'targetstorage': 'a:local-lvm'}, 400,
     'Parameter verification failed.', {'targetstorage': "failed to parse storage map: entry 'a:local-lvm' contains "
                                                         "invalid ID - storage ID 'a' cannot be shorter than 2 "
                                                         "characters"}),
    ('/nodes/prod-pve1/qemu/103/migrate', {'target': 'prod-pve2', 'targetstorage': '1,local-lvm'}, 400,
     'Parameter verification failed.',
     {'targetstorage': 'failed to parse storage map: identity mapping cannot be combined with other mappings'}),
    ('/nodes/prod-pve1/qemu/103/migrate', {'online': 1}, 400, 'Parameter verification failed.', None),
    ('/nodes/prod-pve3/lxc/104/migrate', {'target': 'prod-pve1'}, 500,
     "can't migrate running container without --online or --restart", None),
    ('/nodes/prod-pve3/lxc/104/migrate', {'target': 'prod-pve3', 'restart': 1}, 400,
     'Parameter verification failed.', {'target': 'target is local node.'}),
])
def test_refusals_before_any_task(quiet_lab, path, params, status, message, errors):
    src = Api(quiet_lab, SOURCE)
    before = src.tasks()
    resp = src.post(path, **params)
    assert resp.status_code == status, resp.text
    assert body(resp)['message'].strip() == message
    if errors:
        assert body(resp)['errors'] == errors
    assert src.tasks() == before
    vmid = int(path.split('/')[4])
    assert src.resource(vmid)['node'] == path.split('/')[2] and 'lock' not in src.resource(vmid)


def test_refusals_of_state(lab, src):
    """Lock, a disk's storage missing on the target node, no quorum: the API refuses, nothing runs."""
    lab.call(src.pve.snapshot_lock, 103, 'backup')
    resp = src.post('/nodes/prod-pve1/qemu/103/migrate', target='prod-pve2')
    assert resp.status_code == 500 and body(resp)['message'].strip() == 'VM is locked (backup)'
    lab.call(src.pve.unlock, 103)
    lab.remove_storage(SOURCE, 'local-lvm', node='prod-pve2')
    resp = src.post('/nodes/prod-pve1/qemu/103/migrate', target='prod-pve2')
    assert body(resp)['message'].strip() == "storage 'local-lvm' is not available on node 'prod-pve2'"
    lab.call(src.pve.lose_quorum)
    resp = src.post('/nodes/prod-pve1/qemu/103/migrate', target='prod-pve3')
    assert body(resp)['message'].strip() == 'cluster not ready - no quorum?'
    lab.call(src.pve.regain_quorum)
    status, _ = src.task(src.start('/nodes/prod-pve1/qemu/103/migrate', target='prod-pve3'))
    assert status == 'OK' and src.resource(103)['node'] == 'prod-pve3'


def test_offline_vm_moves_everywhere(lab, src):
    upid = src.start('/nodes/prod-pve1/qemu/103/migrate', target='prod-pve2')
    assert upid.split(':')[1] == 'prod-pve1' and upid.split(':')[5] == 'qmigrate' and ':103:' in upid
    status, lines = src.task(upid)
    assert status == 'OK'
    assert all(STAMP.match(line) for line in lines[:-1]) and lines[-1] == 'TASK OK'
    log_has(lines, "starting migration of VM 103 to node 'prod-pve2' (192.0.2.12)",
            "found local disk 'local-lvm:vm-103-disk-0' (attached)", 'copying local disk images',
            "volume 'local-lvm:vm-103-disk-0' is 'local-lvm:vm-103-disk-0' on the target",
            'migration finished successfully (duration 00:00:00)')
    row = src.resource(103)
    assert row['node'] == 'prod-pve2' and row['status'] == 'stopped' and 'lock' not in row
    assert 103 in [g['vmid'] for g in src.data('/nodes/prod-pve2/qemu')]
    assert 103 not in [g['vmid'] for g in src.data('/nodes/prod-pve1/qemu')]
    assert 'lock' not in src.data('/nodes/prod-pve2/qemu/103/config')
    assert src.get('/nodes/prod-pve1/qemu/103/config').status_code == 500
    assert src.pve.migrations[-1]['kind'] == 'local' and src.pve.migrations[-1]['result'] == 'OK'


def test_online_vm_needs_with_local_disks(lab, src):
    """qm(1): local disks are mirrored with a live migration only with with-local-disks; without it the task
    fails after the scan (PVE's log), the VM stays running where it was, unlocked."""
    status, lines = src.task(src.start('/nodes/prod-pve1/qemu/100/migrate', target='prod-pve2', online=1))
    assert status == 'migration aborted'
    log_has(lines, "can't migrate local disk 'local-lvm:vm-100-disk-0': can't live migrate attached local disks "
                   "without with-local-disks option",
            "ERROR: Problem found while scanning volumes - can't migrate VM - check log",
            'aborting phase 1 - cleanup resources',
            'ERROR: migration aborted (duration 00:00:00): Problem found while scanning volumes')
    assert lines[-1] == 'TASK ERROR: migration aborted'
    row = src.resource(100)
    assert (row['node'], row['status']) == ('prod-pve1', 'running') and 'lock' not in row
    status, lines = src.task(src.start('/nodes/prod-pve1/qemu/100/migrate', target='prod-pve2', online=1,
                                       **{'with-local-disks': 1, 'bwlimit': 10240}))
    assert status == 'OK'
    log_has(lines, "starting VM 100 on remote node 'prod-pve2'", 'starting storage migration',
            'scsi0: start migration to nbd:unix:/run/qemu-server/100_nbd.migrate:exportname=drive-scsi0',
            'starting online/live migration on unix:/run/qemu-server/100.migrate',
            'migration speed limit: 10.00 MiB/s', 'migration status: completed')
    row = src.resource(100)
    assert (row['node'], row['status']) == ('prod-pve2', 'running')


def test_stopped_vm_with_online_migrates_offline(lab, src):
    status, lines = src.task(src.start('/nodes/prod-pve1/qemu/103/migrate', target='prod-pve3', online=1))
    assert status == 'OK' and 'copying local disk images' in '\n'.join(lines)
    assert src.resource(103)['node'] == 'prod-pve3'


def test_targetstorage_moves_the_disks(lab, src):
    resp = src.post('/storage', storage='fast', type='lvmthin', vgname='pve', thinpool='fast', content='images')
    assert resp.status_code == 200, resp.text
    status, lines = src.task(src.start('/nodes/prod-pve1/qemu/103/migrate', target='prod-pve2',
                                       targetstorage='local-lvm:fast'))
    assert status == 'OK'
    log_has(lines, "volume 'local-lvm:vm-103-disk-0' is 'fast:vm-103-disk-0' on the target")
    config = src.data('/nodes/prod-pve2/qemu/103/config')
    assert config['scsi0'].startswith('fast:vm-103-disk-0,')
    assert [v['volid'] for v in src.data('/nodes/prod-pve2/storage/fast/content')] == ['fast:vm-103-disk-0']
    assert 'local-lvm:vm-103-disk-0' not in [v['volid'] for v in
                                              src.data('/nodes/prod-pve2/storage/local-lvm/content')]


def test_container_target_storage(lab, src):
    src.post('/storage', storage='ctfast', type='lvmthin', vgname='pve', thinpool='ctfast', content='rootdir')
    status, lines = src.task(src.start('/nodes/prod-pve1/lxc/105/migrate', target='prod-pve2',
                                       **{'target-storage': 'ctfast'}))
    assert status == 'OK'
    log_has(lines, "volume 'local-lvm:subvol-105-disk-0' is 'ctfast:vm-105-disk-0' on the target")
    assert src.data('/nodes/prod-pve2/lxc/105/config')['rootfs'].startswith('ctfast:vm-105-disk-0')
    resp = src.post('/nodes/prod-pve2/lxc/105/migrate', target='prod-pve1', **{'target-storage': 'local'})
    assert body(resp)['message'].strip() == "storage 'local' does not support CT rootdirs"


def test_task_failures_leave_the_guest_where_it_was(lab, src):
    """Target node offline (prepare: no lock), passthrough device, injected failure and network break
    (phase 1: lock taken, then removed): task error, guest on the source, unlocked."""
    lab.call(src.pve.set_node_offline, 'prod-pve2')
    status, lines = src.task(src.start('/nodes/prod-pve1/qemu/103/migrate', target='prod-pve2'))
    assert status == 'migration aborted'
    log_has(lines, "ERROR: migration aborted (duration 00:00:00): Can't connect to destination address using "
                   "public key")
    assert 'starting migration' not in '\n'.join(lines)
    lab.call(src.pve.set_node_offline, 'prod-pve2', False)

    key = lab.add_passthrough(SOURCE, 103)
    status, lines = src.task(src.start('/nodes/prod-pve1/qemu/103/migrate', target='prod-pve2'))
    assert status == 'migration aborted'
    log_has(lines, "can't migrate VM which uses local devices: hostpci0")
    src.s.put(src.base + '/nodes/prod-pve1/qemu/103/config', data={'delete': key})

    lab.fail_next_migration(SOURCE, 103, 'disk copy failed: injected')
    status, lines = src.task(src.start('/nodes/prod-pve1/qemu/103/migrate', target='prod-pve2'))
    assert status == 'migration aborted'
    log_has(lines, "starting migration of VM 103", 'ERROR: disk copy failed: injected',
            'aborting phase 1 - cleanup resources', 'ERROR: migration aborted (duration 00:00:00): disk copy failed')
    row = src.resource(103)
    assert row['node'] == 'prod-pve1' and 'lock' not in row

    lab.break_migration_network(SOURCE, 103)
    status, lines = src.task(src.start('/nodes/prod-pve1/qemu/103/migrate', target='prod-pve2'))
    assert status == 'migration aborted'
    log_has(lines, "storage migration for 'local-lvm:vm-103-disk-0' to storage 'local-lvm' failed",
            'failed: exit code 255')
    assert src.resource(103)['node'] == 'prod-pve1' and 'lock' not in src.resource(103)
    # The faults were for one task each: the next migration works.
    status, _ = src.task(src.start('/nodes/prod-pve1/qemu/103/migrate', target='prod-pve2'))
    assert status == 'OK' and src.resource(103)['node'] == 'prod-pve2'


def test_container_restart_migration(lab, src):
    """pct(1): no live migration; restart mode shuts the container down, moves it and starts it again."""
    status, lines = src.task(src.start('/nodes/prod-pve3/lxc/104/migrate', target='prod-pve1', online=1))
    assert status == 'migration aborted'
    log_has(lines, 'ERROR: migration aborted (duration 00:00:00): lxc live migration is currently not implemented')
    assert (src.resource(104)['node'], src.resource(104)['status']) == ('prod-pve3', 'running')
    upid = src.start('/nodes/prod-pve3/lxc/104/migrate', target='prod-pve1', restart=1, timeout=30)
    assert upid.split(':')[5] == 'vzmigrate'
    status, lines = src.task(upid)
    assert status == 'OK'
    log_has(lines, 'shutdown CT 104', "starting migration of CT 104 to node 'prod-pve1'",
            "found local volume 'local-lvm:subvol-104-disk-0' (in current VM config)", 'start final cleanup',
            'start container on target node', 'migration finished successfully')
    row = src.resource(104)
    assert (row['node'], row['status']) == ('prod-pve1', 'running') and 'lock' not in row
    assert 104 in [c['vmid'] for c in src.data('/nodes/prod-pve1/lxc')]


def test_container_failures(lab, src):
    """A bind mount blocks the move; an injected failure in restart mode starts the container again on the
    source (LXC::Migrate final_cleanup)."""
    lab.add_passthrough(SOURCE, 105)
    status, lines = src.task(src.start('/nodes/prod-pve1/lxc/105/migrate', target='prod-pve2'))
    assert status == 'migration aborted'
    log_has(lines, "cannot migrate local bind mount point 'mp9'")
    lab.call(src.pve.snapshot_lock, 105, 'backup')  # not refused by the API for a container: by the task
    status, lines = src.task(src.start('/nodes/prod-pve1/lxc/105/migrate', target='prod-pve2'))
    assert status == 'migration aborted'
    log_has(lines, 'ERROR: migration aborted (duration 00:00:00): CT is locked (backup)')
    lab.fail_next_migration(SOURCE, 104)
    status, lines = src.task(src.start('/nodes/prod-pve3/lxc/104/migrate', target='prod-pve1', restart=1))
    assert status == 'migration aborted'
    log_has(lines, 'shutdown CT 104', 'aborting phase 1 - cleanup resources', 'start container on source node')
    row = src.resource(104)
    assert (row['node'], row['status']) == ('prod-pve3', 'running') and 'lock' not in row


def test_lock_is_migrate_while_it_runs(tmp_path):
    """task_secs: the migration takes its time after taking the lock; meanwhile config, resources and status
    show lock migrate and the task runs."""
    with pmxlab.Lab(str(tmp_path / 'lab'), clusters=1, first_host=FRESH_LAB_HOST, time_scale=0.01,
                    task_secs={'qmigrate': 30, 'vzmigrate': 30}) as lab:
        src = Api(lab, SOURCE)
        for path, vmid, kind in (('/nodes/prod-pve1/qemu/103', 103, 'qemu'), ('/nodes/prod-pve1/lxc/105', 105,
                                                                                'lxc')):
            started = time.monotonic()
            upid = src.start(path + '/migrate', target='prod-pve2')
            time.sleep(0.1)
            assert src.data('/nodes/prod-pve1/tasks/{0}/status'.format(upid))['status'] == 'running'
            assert src.data(path + '/config').get('lock') == 'migrate'
            assert src.resource(vmid)['lock'] == 'migrate'
            assert src.data(path + '/status/current').get('lock') == 'migrate'
            status, lines = src.task(upid)
            assert status == 'OK' and time.monotonic() - started >= 0.3
            log_has(lines, 'migration finished successfully (duration 00:00:30)')
            assert src.resource(vmid)['node'] == 'prod-pve2' and 'lock' not in src.resource(vmid)


def test_held_migration_has_not_started(lab, src):
    """hold_tasks holds a migration before its checks: running, no lock, still on the source; released, it
    moves."""
    hold = lab.hold_tasks(SOURCE, 'qmigrate', vmid=103)
    upid = src.start('/nodes/prod-pve1/qemu/103/migrate', target='prod-pve2')
    assert hold.wait_reached(5)
    assert src.data('/nodes/prod-pve1/tasks/{0}/status'.format(upid))['status'] == 'running'
    assert src.resource(103)['node'] == 'prod-pve1' and 'lock' not in src.resource(103)
    hold.release()
    assert src.task(upid)[0] == 'OK' and src.resource(103)['node'] == 'prod-pve2'


# ------------------------------------------------------------------ between clusters

def test_fingerprint_is_the_served_certificate(lab, src):
    host, port = lab.clusters[TARGET].host, lab.port
    ctx = ssl.create_default_context(cafile=lab.ca_bundle)
    with socket.create_connection((host, port), timeout=5) as raw, ctx.wrap_socket(raw, server_hostname=host) as tls:
        der = tls.getpeercert(binary_form=True)
    digest = hashlib.sha256(der).hexdigest().upper()
    assert lab.fingerprint == ':'.join(digest[i:i + 2] for i in range(0, 64, 2))
    assert re.fullmatch(r'([0-9A-F]{2}:){31}[0-9A-F]{2}', lab.fingerprint)
    info = src.data('/nodes/prod-pve1/certificates/info')
    assert [(c['filename'], c['fingerprint']) for c in info] == [('pveproxy-ssl.pem', lab.fingerprint)]
    assert info[0]['pem'].startswith('-----BEGIN CERTIFICATE-----')
    assert set(n['ssl_fingerprint'] for n in src.data('/nodes')) == {lab.fingerprint}


def test_remote_migration_keeps_the_source_locked(lab, src, dst):
    """qm remote-migrate: the VM appears in the target cluster with the target vmid, mapped storage and
    bridge, on the target's local node; the source is kept stopped with lock migrate."""
    before = src.data('/nodes/prod-pve1/qemu/103/config')
    upid = src.start('/nodes/prod-pve1/qemu/103/remote_migrate', **{
        'target-endpoint': endpoint(lab), 'target-storage': 'local-lvm:local-lvm', 'target-bridge': 'vmbr0:vmbr1',
        'target-vmid': 200})
    assert upid.split(':')[5] == 'qmigrate' and upid.split(':')[1] == 'prod-pve1'
    status, lines = src.task(upid)
    assert status == 'OK'
    host = lab.clusters[TARGET].host
    log_has(lines, 'websocket tunnel started', "starting migration of VM 103 to node 'stg-pve1' ({0})".format(host),
            'mapped: net0 from vmbr0 to vmbr1', "Allocating volume for drive 'scsi0' on remote storage 'local-lvm'..",
            "volume 'local-lvm:vm-103-disk-0' is 'local-lvm:vm-200-disk-0' on the target",
            'migration finished successfully')
    row = dst.resource(200)
    assert (row['node'], row['status'], row['name']) == ('stg-pve1', 'stopped', 'prod-batch01') and 'lock' not in row
    config = dst.data('/nodes/stg-pve1/qemu/200/config')
    assert config['scsi0'] == before['scsi0'].replace('vm-103-disk-0', 'vm-200-disk-0')
    assert config['net0'] == before['net0'].replace('bridge=vmbr0', 'bridge=vmbr1')
    assert config['smbios1'] == before['smbios1'] and 'lock' not in config
    assert 'local-lvm:vm-200-disk-0' in [v['volid'] for v in dst.data('/nodes/stg-pve1/storage/local-lvm/content')]
    tunnel = [t for t in dst.data('/nodes/stg-pve1/tasks') if t['type'] == 'qmtunnel']
    assert len(tunnel) == 1 and tunnel[0]['status'] == 'OK' and tunnel[0]['id'] == '200'
    kept = src.resource(103)
    assert (kept['node'], kept['status'], kept['lock']) == ('prod-pve1', 'stopped', 'migrate')
    no_secret(lab, lines, src.pve.requests, dst.pve.requests, src.pve.migrations, dst.pve.tasklog)
    assert src.pve.migrations[-1]['target_vmid'] == 200 and '***' in src.pve.migrations[-1]['params'][
        'target-endpoint']


def test_remote_online_migration_with_delete(lab, src, dst):
    status, lines = src.task(src.start('/nodes/prod-pve1/qemu/100/remote_migrate', **{
        'target-endpoint': endpoint(lab, port=8006), 'target-storage': 'local-lvm', 'target-bridge': 'vmbr0',
        'target-vmid': 300, 'online': 1, 'delete': 1, 'bwlimit': 2048}))
    assert status == 'OK'
    log_has(lines, "starting VM 300 on remote node 'stg-pve1'", 'migration status: completed',
            'migration speed limit: 2.00 MiB/s')
    row = dst.resource(300)
    assert (row['node'], row['status']) == ('stg-pve1', 'running')
    assert src.resource(100) is None
    assert 'local-lvm:vm-100-disk-0' not in [v['volid'] for v in
                                              src.data('/nodes/prod-pve1/storage/local-lvm/content')]


def test_remote_container_restart(lab, src, dst):
    upid = src.start('/nodes/prod-pve3/lxc/104/remote_migrate', **{
        'target-endpoint': endpoint(lab), 'target-storage': 'local-lvm', 'target-bridge': 'vmbr1',
        'target-vmid': 204, 'restart': 1, 'timeout': 60})
    assert upid.split(':')[5] == 'vzmigrate'
    status, lines = src.task(upid)
    assert status == 'OK'
    log_has(lines, 'shutdown CT 104', 'mapped: net0 from vmbr0 to vmbr1', 'start container on target node')
    row = dst.resource(204)
    assert (row['type'], row['node'], row['status']) == ('lxc', 'stg-pve1', 'running')
    config = dst.data('/nodes/stg-pve1/lxc/204/config')
    assert config['rootfs'].startswith('local-lvm:vm-204-disk-0') and 'bridge=vmbr1' in config['net0']
    assert config['hostname'] == 'prod-cache01'
    assert [t['type'] for t in dst.data('/nodes/stg-pve1/tasks')] == ['vzmtunnel']
    kept = src.resource(104)
    assert (kept['status'], kept['lock']) == ('stopped', 'migrate')


def test_remote_refusals_before_any_task(lab, src, dst):
    """remote_migrate_vm's checks, answered by the API call: nothing runs, nothing appears on the target, the
    source is untouched, and no answer carries the token secret."""
    fp = lab.fingerprint
    wrong = ':'.join(['AB'] * 32)
    base = {'target-storage': 'local-lvm', 'target-bridge': 'vmbr0', 'target-vmid': 200}
    cases = [
        (103, {'target-endpoint': 'host=127.0.0.1'}, 400, None, 'target-endpoint'),
        (103, {'target-endpoint': endpoint(lab, fingerprint=False)}, 500,
         "fingerprint '{0}' not verified, abort!".format(fp), None),
        (103, {'target-endpoint': endpoint(lab, fingerprint=wrong)}, 500,
         "fingerprint '{0}' not verified, abort!".format(fp), None),
        (103, {'target-endpoint': endpoint(lab, host='127.61.250.9')}, 500,
         "500 Can't connect to 127.61.250.9:8006 (Connection refused)", None),
        (103, {'target-endpoint': endpoint(lab, host='nohost.invalid')}, 500,
         "500 Can't connect to nohost.invalid:8006 (Name or service not known)", None),
        (103, {'target-endpoint': endpoint(lab, port=8007)}, 500,
         "500 Can't connect to {0}:8007 (Connection refused)".format(lab.clusters[TARGET].host), None),
        (103, {'target-endpoint': endpoint(lab, secret='0' * 36)}, 500, '401 authentication failure', None),
        (103, {'target-endpoint': endpoint(lab, token_id='root@pam!other')}, 500, '401 authentication failure',
         None),
        (103, {'target-endpoint': endpoint(lab).replace('PVEAPIToken=', '')}, 500,
         '401 permission denied - invalid PVE ticket', None),
        (100, {'target-endpoint': endpoint(lab)}, 500, "can't migrate running VM without --online", None),
        (103, {'target-endpoint': endpoint(lab), 'target-storage': '1'}, 500,
         'remote migration requires explicit storage mapping!', None),
        (103, {'target-endpoint': endpoint(lab), 'target-bridge': 'vmbr0:vmbr1,vmbr0:vmbr2'}, 400, None,
         'target-bridge'),
        (103, {'target-endpoint': endpoint(lab), 'target-storage': 'local-lvm,local'}, 400, None, 'target-storage'),
    ]
    before_src, before_dst = src.tasks(), dst.tasks()
    for vmid, params, status, message, field in cases:
        node = src.resource(vmid)['node']
        resp = src.post('/nodes/{0}/qemu/{1}/remote_migrate'.format(node, vmid), **dict(base, **params))
        assert resp.status_code == status, (params, resp.text)
        if message:
            assert body(resp)['message'].strip() == message
        if field:
            assert list(body(resp)['errors']) == [field]
        no_secret(lab, resp.text)
    lab.call(dst.pve.set_node_offline, 'stg-pve1')
    resp = src.post('/nodes/prod-pve1/qemu/103/remote_migrate', **dict(base, **{'target-endpoint': endpoint(lab)}))
    assert body(resp)['message'].strip() == "500 Can't connect to {0}:8006 (No route to host)".format(
        lab.clusters[TARGET].host)
    lab.call(dst.pve.set_node_offline, 'stg-pve1', False)
    resp = src.post('/nodes/prod-pve3/lxc/104/remote_migrate', **dict(base, **{'target-endpoint': endpoint(lab)}))
    assert body(resp)['message'].strip() == "can't migrate running container without --online or --restart"
    lab.set_ha(SOURCE, 103)
    resp = src.post('/nodes/prod-pve1/qemu/103/remote_migrate', **dict(base, **{'target-endpoint': endpoint(lab)}))
    assert resp.status_code == 400
    assert body(resp)['errors'] == {'vmid': 'cannot remote-migrate VM that is configured for HA'}
    assert (src.tasks(), dst.tasks()) == (before_src, before_dst)
    assert dst.resource(200) is None and 'lock' not in src.resource(103)
    no_secret(lab, src.pve.requests, dst.pve.requests)


def test_remote_target_refusals_fail_the_task(lab, src, dst):
    """The target's mtunnel checks (storage, bridge, vmid) fail the task before anything is made there or
    the source is locked."""
    lab.take_vmid(TARGET, 250)
    lab.remove_bridge(TARGET, 'vmbr1', node='stg-pve1')
    cases = [
        ({'target-vmid': 250}, ["ERROR: migration aborted (duration 00:00:00): 400 Parameter verification failed.",
                                "ERROR: vmid: unable to create empty VM config - VM 250 already exists on node "
                                "'stg-pve1'"]),
        ({'target-vmid': 100}, ["vmid: unable to create empty VM config - VM 100 already exists on node "
                                "'stg-pve1'"]),
        ({'target-storage': 'local-lvm:nvme'}, ["ERROR: migration aborted (duration 00:00:00): 500 storage 'nvme' "
                                                "does not exist"]),
        ({'target-storage': 'local'}, ["500 storage 'local' does not support vm images"]),
        ({'target-bridge': 'vmbr1'}, ["500 bridge 'vmbr1' does not exist"]),
    ]
    vms_before = sorted(r['vmid'] for r in dst.data('/cluster/resources', type='vm'))
    for params, fragments in cases:
        upid = src.start('/nodes/prod-pve1/qemu/103/remote_migrate', **dict({
            'target-endpoint': endpoint(lab), 'target-storage': 'local-lvm', 'target-bridge': 'vmbr0',
            'target-vmid': 200}, **params))
        status, lines = src.task(upid)
        assert status == 'migration aborted' and lines[-1] == 'TASK ERROR: migration aborted'
        log_has(lines, *fragments)
        assert 'starting migration' not in '\n'.join(lines)
        assert 'lock' not in src.resource(103) and src.resource(103)['node'] == 'prod-pve1'
    assert sorted(r['vmid'] for r in dst.data('/cluster/resources', type='vm')) == vms_before
    assert [t for t in dst.data('/nodes/stg-pve1/tasks') if t['type'] == 'qmtunnel'] == []


def test_remote_failure_midway_cleans_the_target(lab, src, dst):
    for hook, fragment, tunnel_status in (
            (lab.fail_next_migration, 'ERROR: migration failed: injected fault', 'OK'),
            (lab.break_migration_network, "no reply to command 'disk': reading from tunnel failed: got timeout",
             'mtunnel exited unexpectedly')):
        hook(SOURCE, 100)
        status, lines = src.task(src.start('/nodes/prod-pve1/qemu/100/remote_migrate', **{
            'target-endpoint': endpoint(lab), 'target-storage': 'local-lvm', 'target-bridge': 'vmbr0',
            'target-vmid': 200, 'online': 1}))
        assert status == 'migration aborted'
        log_has(lines, fragment, 'aborting phase 1 - cleanup resources')
        row = src.resource(100)
        assert (row['node'], row['status']) == ('prod-pve1', 'running') and 'lock' not in row
        assert dst.resource(200) is None
        assert 'local-lvm:vm-200-disk-0' not in [v['volid'] for v in
                                                  dst.data('/nodes/stg-pve1/storage/local-lvm/content')]
        tunnel = max((t for t in dst.data('/nodes/stg-pve1/tasks') if t['type'] == 'qmtunnel'), key=lambda t: t['pid'])
        assert tunnel['status'] == tunnel_status
    status, _ = src.task(src.start('/nodes/prod-pve1/qemu/100/remote_migrate', **{
        'target-endpoint': endpoint(lab), 'target-storage': 'local-lvm', 'target-bridge': 'vmbr0',
        'target-vmid': 200, 'online': 1}))
    assert status == 'OK' and dst.resource(200)['status'] == 'running'


# ------------------------------------------------------------------ HA

def test_ha_migration(lab, src):
    """ha-manager(1): migrate on an HA resource queues an HA migration (hamigrate); the LRM migrates it."""
    lab.set_ha(SOURCE, 100)
    assert src.data('/cluster/ha/resources') == [
        {'sid': 'vm:100', 'type': 'vm', 'state': 'started', 'max_restart': 1, 'max_relocate': 1, 'failback': 1,
         'digest': src.data('/cluster/ha/resources')[0]['digest']}]
    assert src.data('/cluster/ha/resources/vm:100')['sid'] == 'vm:100'
    resp = src.post('/nodes/prod-pve1/qemu/100/migrate', target='prod-pve2')
    assert body(resp)['message'].strip() == "can't migrate running VM without --online"
    upid = src.start('/nodes/prod-pve1/qemu/100/migrate', target='prod-pve2', online=1)
    assert upid.split(':')[5] == 'hamigrate'
    status, lines = src.task(upid)
    assert status == 'OK' and lines == ['Requesting HA migration for VM 100 to node prod-pve2', 'TASK OK']
    lrm = [t for t in src.data('/nodes/prod-pve1/tasks') if t['type'] == 'qmigrate']
    assert len(lrm) == 1 and lrm[0]['user'] == 'root@pam' and lrm[0]['status'] == 'OK'
    row = src.resource(100)
    assert (row['node'], row['status'], row['hastate']) == ('prod-pve2', 'running', 'started')
    service = [s for s in src.data('/cluster/ha/status/current') if s['type'] == 'service']
    assert [(s['sid'], s['node'], s['state']) for s in service] == [('vm:100', 'prod-pve2', 'started')]
    assert src.pve.migrations[-1]['kind'] == 'ha' and src.pve.migrations[-1]['result'] == 'OK'


def test_ha_failed_lrm_migration_stays(lab, src):
    lab.set_ha(SOURCE, 103, 'stopped')
    lab.fail_next_migration(SOURCE, 103)
    status, _ = src.task(src.start('/nodes/prod-pve1/qemu/103/migrate', target='prod-pve2'))
    assert status == 'OK'  # the request was queued; the HA stack's own task failed
    lrm = [t for t in src.data('/nodes/prod-pve1/tasks') if t['type'] == 'qmigrate'][0]
    assert lrm['status'] == 'migration aborted'
    row = src.resource(103)
    assert (row['node'], row['hastate']) == ('prod-pve1', 'stopped') and 'lock' not in row


def test_ha_container_is_relocated(lab, src):
    lab.set_ha(SOURCE, 104)
    assert src.data('/cluster/ha/resources', type='ct')[0]['sid'] == 'ct:104'
    assert src.data('/cluster/ha/resources', type='vm') == []
    status, lines = src.task(src.start('/nodes/prod-pve3/lxc/104/migrate', target='prod-pve1', restart=1))
    assert status == 'OK' and lines[0] == 'Requesting HA migration for CT 104 to node prod-pve1'
    row = src.resource(104)
    assert (row['node'], row['status'], row['hastate']) == ('prod-pve1', 'running', 'started')
    assert [t['user'] for t in src.data('/nodes/prod-pve3/tasks') if t['type'] == 'vzmigrate'] == ['root@pam']


def test_ha_migrate_state_while_it_moves(tmp_path):
    """With time: the hamigrate task ends at once; ha_delay later the service is in state migrate while the
    LRM's qmigrate runs (task_secs), then started on the target."""
    with pmxlab.Lab(str(tmp_path / 'lab'), clusters=1, first_host=FRESH_LAB_HOST, time_scale=0.01,
                    task_secs={'qmigrate': 20, 'hamigrate': 1}) as lab:
        src = Api(lab, SOURCE)
        lab.set_ha(SOURCE, 103, 'stopped')
        status, _ = src.task(src.start('/nodes/prod-pve1/qemu/103/migrate', target='prod-pve3'))
        assert status == 'OK' and src.resource(103)['node'] == 'prod-pve1'
        deadline = time.monotonic() + 15
        while src.resource(103).get('hastate') != 'migrate':
            assert time.monotonic() < deadline
            time.sleep(0.01)
        service = [s for s in src.data('/cluster/ha/status/current') if s['type'] == 'service'][0]
        assert (service['state'], service['request_state']) == ('migrate', 'stopped')
        assert src.resource(103)['lock'] == 'migrate'
        # The LRM's task moves the guest, then the HA manager records the service's state (a later step):
        # wait for both, as a loaded machine may read in between.
        while (src.resource(103)['node'], src.resource(103).get('hastate')) != ('prod-pve3', 'stopped'):
            assert time.monotonic() < deadline, src.resource(103)
            time.sleep(0.01)


# ------------------------------------------------------------------ node answers and hooks

def test_network_lists_bridges_and_remove_bridge(lab, dst):
    assert [i['iface'] for i in dst.data('/nodes/stg-pve2/network', type='bridge')] == ['vmbr0', 'vmbr1']
    lab.remove_bridge(TARGET, 'vmbr1', node='stg-pve2')
    assert [i['iface'] for i in dst.data('/nodes/stg-pve2/network')] == ['vmbr0', 'eno1']
    assert [i['iface'] for i in dst.data('/nodes/stg-pve1/network', type='bridge')] == ['vmbr0', 'vmbr1']
    lab.remove_bridge(TARGET, 'vmbr1')
    assert [i['iface'] for i in dst.data('/nodes/stg-pve1/network', type='bridge')] == ['vmbr0']


def test_storage_and_vmid_hooks(lab, dst):
    lab.remove_storage(TARGET, 'local-lvm', node='stg-pve1')
    assert dst.data('/storage/local-lvm')['nodes'] == 'stg-pve2,stg-pve3'
    lab.remove_storage(TARGET, 'local-lvm')
    assert 'local-lvm' not in [s['storage'] for s in dst.data('/storage')]
    lab.take_vmid(TARGET, 777)
    assert dst.resource(777)['name'] == 'taken-777'
    with pytest.raises(ValueError):
        lab.take_vmid(TARGET, 777)


def test_hook_options():
    assert pmxlab.Lab.fingerprint.__doc__
    import pvemigrate
    assert pvemigrate.parse_idmap('aa:bb,cc') == {'identity': False, 'default': 'cc', 'entries': {'aa': 'bb'}}
    assert pvemigrate.map_id(pvemigrate.parse_idmap('aa:bb,cc'), 'xx') == 'cc'
    assert pvemigrate.map_id(pvemigrate.parse_idmap('aa:bb,cc'), 'aa') == 'bb'
    assert pvemigrate.map_id(pvemigrate.parse_idmap('1'), 'xx') == 'xx'
    assert pvemigrate.parse_idmap('vmbr0:v1', 'bridge')['entries'] == {'vmbr0': 'v1'}
    with pytest.raises(ValueError, match='default target ID can only be provided once'):
        pvemigrate.parse_idmap('aa,bb')
    with pytest.raises(ValueError, match="storage ID 'a-' contains illegal characters"):
        pvemigrate.parse_idmap('a-')
    remote = pvemigrate.parse_remote('apitoken=PVEAPIToken=u@pam!t=s3cr3t,host=h,port=8007')
    assert remote == {'apitoken': 'PVEAPIToken=u@pam!t=s3cr3t', 'host': 'h', 'port': 8007}
    assert pvemigrate._scrub_endpoint('apitoken=PVEAPIToken=u@pam!t=s3cr3t,host=h') == \
        'apitoken=PVEAPIToken=u@pam!t=***,host=h'
    assert pvemigrate._scrub_endpoint('host=h,apitoken=s3cr3t') == 'host=h,apitoken=***'
    assert pvemigrate._scrub_endpoint('apitoken=u@pam!t=s3cr3t') == 'apitoken=u@pam!t=***'
    for text, field in (('apitoken=PVEAPIToken=u@pam!t=s3cr3t', 'host'),
                        ('apitoken=PVEAPIToken=u@pam!t=s3c,r3t,host=h', 'value without key'),
                        ('s3cr3t=1,apitoken=x,host=h', '<key>'),
                        ('apitoken=x,host=h,fingerprint=s3cr3t', 'fingerprint')):
        with pytest.raises(ValueError) as err:
            pvemigrate.parse_remote(text)
        assert 's3cr3t' not in str(err.value) and 'r3t' not in str(err.value) and field in str(err.value)
