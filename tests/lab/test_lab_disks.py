"""lab/pvedisks.py over HTTP, as a client sees it: PVE's refusals and the fault hooks of each modelled operation."""

import pytest
import requests

import pmxlab
from conftest import FRESH_LAB_HOST

API = '/api2/json/nodes/%s/%s/%d/%s'


@pytest.fixture(scope='module')
def disks(tmp_path_factory):
    with pmxlab.Lab(str(tmp_path_factory.mktemp('lab')), clusters=1, first_host=FRESH_LAB_HOST) as lab:
        lab.add_storage('production', 'fast')
        lab.add_storage('production', 'isos', content='iso')
        yield lab


def call(lab, method, kind, vmid, tail, **params):
    """(HTTP status, the task's exit status or the answer's message) of one request, the task waited for."""
    c = lab.clusters['production']
    guest = c.pve.vm(vmid) if kind == 'qemu' else c.pve.ct(vmid)
    s = requests.Session()
    s.trust_env, s.verify = False, lab.ca_bundle
    s.headers.update(c.headers)
    resp = s.request(method, c.url + API % (guest.node, kind, vmid, tail), data=params)
    body = resp.json()
    if resp.status_code != 200:
        return resp.status_code, body.get('message') or str(body.get('errors'))
    upid = body.get('data')
    if not (isinstance(upid, str) and upid.startswith('UPID:')):
        return 200, None
    status = s.get(c.url + '/api2/json/nodes/%s/tasks/%s/status' % (guest.node, upid)).json()['data']
    return 200, status.get('exitstatus')


def test_qemu_resize_grows_only(disks):
    vm = disks.clusters['production'].pve.vm(101)
    assert call(disks, 'PUT', 'qemu', 101, 'resize', disk='scsi0', size='16G')[1].startswith(
        'shrinking disks is not supported')
    assert call(disks, 'PUT', 'qemu', 101, 'resize', disk='scsi0', size='+8G') == (200, 'OK')
    assert 'size=40G' in vm.config['scsi0']
    assert call(disks, 'PUT', 'qemu', 101, 'resize', disk='ide2', size='1G')[1].startswith("you can't resize a cdrom")


def test_qemu_move_disk_refusals_and_faults(disks):
    pve = disks.clusters['production'].pve
    assert "you can't move to the same storage" in call(disks, 'POST', 'qemu', 102, 'move_disk', disk='scsi0',
                                                        storage='local-lvm')[1]
    assert "storage 'nosuch' does not exist" in call(disks, 'POST', 'qemu', 102, 'move_disk', disk='scsi0',
                                                     storage='nosuch')[1]
    assert "does not support content type 'images'" in call(disks, 'POST', 'qemu', 102, 'move_disk', disk='scsi0',
                                                            storage='isos')[1]
    disks.call(lambda: pve.vm(102).snapshots.update(s1={'scsi0': pve.vm(102).config['scsi0']}))
    assert 'with snapshots and delete the source' in call(disks, 'POST', 'qemu', 102, 'move_disk', disk='scsi0',
                                                          storage='fast', delete=1)[1]
    disks.fill_storage('production', 'fast', 0)
    assert 'No space left on device' in call(disks, 'POST', 'qemu', 102, 'move_disk', disk='scsi0',
                                             storage='fast')[1]
    assert pve.vm(102).config['scsi0'].startswith('local-lvm:') and 'unused0' not in pve.vm(102).config
    disks.call(lambda: pve.storages['fast'].pop('avail'))


def test_qemu_unlink_keeps_or_destroys(disks):
    vm = disks.clusters['production'].pve.vm(103)
    disks.call(lambda: vm.config.update(scsi1='local-lvm:vm-103-disk-1,size=8G',
                                        scsi2='local-lvm:vm-103-disk-2,size=8G'))
    assert call(disks, 'PUT', 'qemu', 103, 'unlink', idlist='scsi1') == (200, None)
    assert call(disks, 'PUT', 'qemu', 103, 'unlink', idlist='scsi2', force=1) == (200, None)
    assert vm.config['unused0'] == 'local-lvm:vm-103-disk-1' and 'unused1' not in vm.config
    assert call(disks, 'PUT', 'qemu', 103, 'unlink', idlist='unused0') == (200, None)  # unusedN: always destroyed
    assert not [k for k in vm.config if k.startswith(('unused', 'scsi1', 'scsi2'))]


def test_container_move_volume(disks):
    pve = disks.clusters['production'].pve
    assert 'cannot move volumes of a running container' in call(disks, 'POST', 'lxc', 104, 'move_volume',
                                                                volume='rootfs', storage='fast')[1]
    assert call(disks, 'POST', 'lxc', 105, 'move_volume', volume='rootfs', storage='fast', delete=1) == (200, 'OK')
    ct = pve.ct(105)
    assert ct.config['rootfs'].startswith('fast:') and not [k for k in ct.config if k.startswith('unused')]
