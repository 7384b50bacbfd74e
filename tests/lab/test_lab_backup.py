"""The lab's backup model (lab/pvebackup.py) over HTTP, as a client sees it: vzdump, content, prune, restore,
the backup storage every cluster shares, and the fault hooks."""

import time

import pvebackup
import pytest
import requests

import pmxlab
from conftest import _NET

STORE = pvebackup.SHARED_BACKUP_STORAGE


@pytest.fixture(scope='module')
def blab(tmp_path_factory):
    with pmxlab.Lab(str(tmp_path_factory.mktemp('blab')), clusters=3, first_host='127.%d.6.2' % _NET) as lab:
        yield lab


class Api:
    def __init__(self, lab, cluster):
        self.s = requests.Session()
        self.s.trust_env = False
        self.s.verify = lab.ca_bundle
        self.s.headers.update(lab.clusters[cluster].headers)
        self.base = lab.clusters[cluster].url + '/api2/json/'

    def __call__(self, method, path, **params):
        resp = self.s.request(method, self.base + path, data=params if method in ('POST', 'PUT') else None,
                              params=None if method in ('POST', 'PUT') else params)
        return resp.status_code, resp.json()

    def ok(self, method, path, **params):
        status, body = self(method, path, **params)
        assert status == 200, body
        return body['data']

    def task(self, method, path, **params):
        """Start a task and wait for it: its status and log lines."""
        upid = self.ok(method, path, **params)
        node = upid.split(':')[1]
        for _ in range(200):
            status = self.ok('GET', 'nodes/%s/tasks/%s/status' % (node, upid))
            if status['status'] == 'stopped':
                break
            time.sleep(0.02)
        log = [e['t'] for e in self.ok('GET', 'nodes/%s/tasks/%s/log' % (node, upid), limit=1000)]
        return status, log


def backups(api, node, vmid=None):
    params = {'content': 'backup'}
    if vmid is not None:
        params['vmid'] = vmid
    return api.ok('GET', 'nodes/%s/storage/%s/content' % (node, STORE), **params)


def test_vzdump_makes_a_volume_every_cluster_sees(blab):
    """A vzdump task on production (lock 'backup' while it runs) makes a vma.zst volume with notes and
    protection; disaster-recovery lists the same volume on its storage of the same name."""
    prod, dr = Api(blab, 'production'), Api(blab, 'disaster-recovery')
    status, log = prod.task('POST', 'nodes/prod-pve1/vzdump', vmid=100, storage=STORE, mode='snapshot',
                            compress='zstd', **{'notes-template': '{{guestname}} on {{cluster}}', 'protected': 1})
    assert status['exitstatus'] == 'OK' and status['type'] == 'vzdump', log
    assert any('Finished Backup of VM 100' in line for line in log)
    mine = backups(prod, 'prod-pve1', 100)
    assert len(mine) == 1
    item = mine[0]
    assert item['volid'].startswith(STORE + ':backup/vzdump-qemu-100-') and item['volid'].endswith('.vma.zst')
    assert item['format'] == 'vma.zst' and item['notes'] == 'prod-web01 on production' and item['protected'] == 1
    assert item['size'] == 16 * 1024 ** 3  # 32 GiB of disk, compressed to half
    assert [b['volid'] for b in backups(dr, 'dr-pve2', 100)] == [item['volid']]
    config = dr.ok('GET', 'nodes/dr-pve1/vzdump/extractconfig', volume=item['volid'])
    assert 'name: prod-web01\n' in config and 'scsi0: local-lvm:vm-100-disk-0' in config
    # Protected: PVE refuses to delete it.
    status, log = prod.task('DELETE', 'nodes/prod-pve1/storage/%s/content/%s' % (STORE, item['volid']))
    assert 'protected' in status['exitstatus']
    prod.ok('PUT', 'nodes/prod-pve1/storage/%s/content/%s' % (STORE, item['volid']), protected=0)
    status, log = prod.task('DELETE', 'nodes/prod-pve1/storage/%s/content/%s' % (STORE, item['volid']))
    assert status['exitstatus'] == 'OK' and backups(dr, 'dr-pve1', 100) == []


def test_vzdump_skips_guests_of_other_nodes_and_refuses_a_storage_without_backups(blab):
    prod = Api(blab, 'production')
    status, log = prod.task('POST', 'nodes/prod-pve2/vzdump', vmid=100, storage=STORE)
    assert status['exitstatus'] == 'OK' and 'INFO: skip external VMs: 100' in log
    assert backups(prod, 'prod-pve1', 100) == []
    code, body = prod('POST', 'nodes/prod-pve1/vzdump', vmid=100, storage='local-lvm')
    assert code == 500 and 'wrong content type' in body['message']


def test_restore_vm_and_container_into_another_cluster(blab):
    """qmrestore on disaster-recovery from production's archive: the archive's config, new disks on local-lvm, a
    name override; pct restore the same for a container; a second restore over it needs force."""
    prod, dr = Api(blab, 'production'), Api(blab, 'disaster-recovery')
    prod.task('POST', 'nodes/prod-pve1/vzdump', vmid='100,103', storage=STORE)
    prod.task('POST', 'nodes/prod-pve3/vzdump', vmid=104, storage=STORE, compress='gzip')
    vm_archive = backups(dr, 'dr-pve1', 100)[-1]['volid']
    ct_archive = backups(dr, 'dr-pve1', 104)[-1]['volid']
    assert ct_archive.endswith('.tar.gz')
    status, log = dr.task('POST', 'nodes/dr-pve2/qemu', vmid=300, archive=vm_archive, name='prod-web01-restored',
                          unique=1)
    assert status['type'] == 'qmrestore' and status['exitstatus'] == 'OK', log
    cfg = dr.ok('GET', 'nodes/dr-pve2/qemu/300/config')
    assert cfg['name'] == 'prod-web01-restored' and cfg['cores'] == 2 and cfg['memory'] in (4096, '4096')
    assert cfg['scsi0'].startswith('local-lvm:vm-300-disk-0') and 'size=32G' in cfg['scsi0']
    assert 'bridge=vmbr0' in cfg['net0']
    code, body = dr('POST', 'nodes/dr-pve2/qemu', vmid=300, archive=vm_archive)
    assert code == 500 and 'already exists' in body['message']
    status, log = dr.task('POST', 'nodes/dr-pve2/qemu', vmid=300, archive=vm_archive, force=1,
                          net0='virtio,bridge=vmbr1')
    assert status['exitstatus'] == 'OK', log
    cfg = dr.ok('GET', 'nodes/dr-pve2/qemu/300/config')
    assert cfg['name'] == 'prod-web01' and 'bridge=vmbr1' in cfg['net0']
    status, log = dr.task('POST', 'nodes/dr-pve1/lxc', vmid=301, ostemplate=ct_archive, restore=1, storage='local-lvm')
    assert status['type'] == 'vzrestore' and status['exitstatus'] == 'OK', log
    cfg = dr.ok('GET', 'nodes/dr-pve1/lxc/301/config')
    assert cfg['hostname'] == 'prod-cache01' and cfg['rootfs'].startswith('local-lvm:') and 'size=8G' in cfg['rootfs']
    for path in ('nodes/dr-pve2/qemu/300', 'nodes/dr-pve1/lxc/301'):
        dr.task('DELETE', path)


def test_prune_keeps_the_newest_and_the_protected(blab):
    """Four backups of 103: GET prunebackups marks keep-last=2 (one protected stays); DELETE removes the rest."""
    prod = Api(blab, 'production')
    for n in range(4):
        prod.task('POST', 'nodes/prod-pve1/vzdump', vmid=103, storage=STORE, **({'protected': 1} if n == 0 else {}))
    listed = sorted(backups(prod, 'prod-pve1', 103), key=lambda b: b['ctime'])
    assert len(listed) >= 4
    marks = dict((m['volid'], m['mark']) for m in prod.ok(
        'GET', 'nodes/prod-pve1/storage/%s/prunebackups' % STORE, vmid=103, **{'prune-backups': 'keep-last=2'}))
    newest = [b['volid'] for b in listed[-2:]]
    assert [marks[v] for v in newest] == ['keep', 'keep']
    assert marks[listed[-4]['volid']] == 'protected' and marks[listed[-3]['volid']] == 'remove'
    status, log = prod.task('DELETE', 'nodes/prod-pve1/storage/%s/prunebackups' % STORE, vmid=103,
                            **{'prune-backups': 'keep-last=2'})
    assert status['type'] == 'prunebackups' and status['exitstatus'] == 'OK'
    left = [b['volid'] for b in backups(prod, 'prod-pve1', 103)]
    assert listed[-3]['volid'] not in left and set(newest) <= set(left) and listed[-4]['volid'] in left


def test_prune_rules_table():
    day = 86400
    now = 1_800_000_000
    rows = [dict(volid='v%d' % i, ctime=now - i * day // 2, protected=(i == 5)) for i in range(8)]
    marks = pvebackup.prune_marks(rows, {'keep-last': 1, 'keep-daily': 2})
    # newest kept by keep-last; keep-daily: its day is covered, so the next two days' newest
    assert marks['v0'] == 'keep' and marks['v5'] == 'protected'
    assert sum(1 for m in marks.values() if m == 'keep') == 3
    assert pvebackup.prune_marks(rows, {}) == dict((r['volid'], 'protected' if r['protected'] else 'keep')
                                                   for r in rows)
    assert pvebackup.parse_prune('keep-all=1') == {} and pvebackup.parse_prune('keep-last=3') == {'keep-last': 3}


def test_fault_hooks(blab):
    """Storage full: the job fails; another vzdump holds the guest's lock and the node's lock; archive missing."""
    prod, dr = Api(blab, 'production'), Api(blab, 'disaster-recovery')
    before = blab.fill_storage('production', STORE)
    try:
        status, log = prod.task('POST', 'nodes/prod-pve2/vzdump', vmid=101, storage=STORE)
        assert status['exitstatus'] == 'job errors'
        assert any('No space left on device' in line for line in log), log
    finally:
        blab.free_storage('production', STORE, before)
    hold = blab.hold_backup_lock('production', 102)
    try:
        assert prod.ok('GET', 'nodes/prod-pve3/qemu/102/config')['lock'] == 'backup'
        status, log = prod.task('POST', 'nodes/prod-pve3/vzdump', vmid=104, storage=STORE, lockwait=0)
        assert "can't acquire lock '/var/run/vzdump.lock' - got timeout" in status['exitstatus']
    finally:
        hold.release()
    prod.task('POST', 'nodes/prod-pve2/vzdump', vmid=101, storage=STORE)
    archive = backups(prod, 'prod-pve2', 101)[-1]['volid']
    record = blab.lose_archive('production', archive)
    try:
        status, log = dr.task('POST', 'nodes/dr-pve1/qemu', vmid=310, archive=archive)
        assert "unable to restore VM 310 - volume '%s' does not exist" % archive in status['exitstatus']
        assert dr('GET', 'nodes/dr-pve1/qemu/310/config')[0] != 200
    finally:
        blab.restore_archive('production', archive, record)
    assert archive in blab.backups('disaster-recovery', vmid=101)


def test_the_guest_is_locked_while_its_backup_runs(tmp_path):
    """With time taken (backup_secs 10 at 0.01 real s each), the vzdump task runs with the guest's config lock
    'backup' and /cluster/resources shows it; both are gone when it ends OK."""
    with pmxlab.Lab(str(tmp_path / 'lab'), clusters=1, first_host='127.%d.6.20' % _NET, time_scale=0.01) as lab:
        lab.call(lambda: setattr(lab.clusters['production'].pve, 'backup_secs', 10))
        api = Api(lab, 'production')
        upid = api.ok('POST', 'nodes/prod-pve1/vzdump', vmid=100, storage=STORE)
        seen = set()
        for _ in range(200):
            status = api.ok('GET', 'nodes/prod-pve1/tasks/%s/status' % upid)
            seen.add(api.ok('GET', 'nodes/prod-pve1/qemu/100/config').get('lock'))
            if status['status'] == 'stopped':
                break
            time.sleep(0.01)
        assert status['exitstatus'] == 'OK' and 'backup' in seen
        assert 'lock' not in api.ok('GET', 'nodes/prod-pve1/qemu/100/config')
        assert len(backups(api, 'prod-pve1', 100)) == 1
