"""Disks through real plays against one lab shared by this file: what PVE stores compares equal (a cloud-init
drive given as ``local-lvm:cloudinit``, a disk made with ``import-from=``), a larger disk grows (check, apply,
check, apply), a smaller one is refused, a disk moves to another storage only with ``move_disks`` (its source
kept or deleted as asked; a missing or full target fails and changes nothing), and disks are detached or
removed explicitly. lab/pvedisks.py models resize, move and unlink as PVE does them.
"""

import pytest

from conftest import _NET, CHECK, CT, MAY_FAIL, VM, failed_message, play, pmxlab, recorded, vms_named

IMAGE = 'debian-12-genericcloud-amd64.qcow2'
DIFF = {'diff': True}


@pytest.fixture(scope='module')
def disklab(tmp_path_factory):
    with pmxlab.Lab(str(tmp_path_factory.mktemp('disklab')), clusters=3, first_host='127.%d.8.2' % _NET) as running:
        for cluster in ('production', 'staging'):
            running.add_storage(cluster, 'fast')
            running.add_storage(cluster, 'tiny', avail=1024 ** 3)  # 1 GiB free: a 32G disk does not fit
        yield running


def test_cloudinit_drive_and_imported_disk_are_idempotent(disklab, tmp_path):
    lab = disklab
    lab.call(lab.clusters['staging'].pve.store_file, 'local', IMAGE, 2 * 1024 ** 3, 'import')
    vm = {'name': 'stg-ci01', 'cores': 1, 'memory': 512, 'ciuser': 'admin',
          'disks': {'ide2': 'local-lvm:cloudinit', 'scsi0': 'local-lvm:0,import-from=local:import/' + IMAGE},
          'nets': {'net0': 'virtio,bridge=vmbr0'}}
    result = play(lab, tmp_path, VM, [('check', vm, CHECK), ('apply', vm), ('check_again', vm, CHECK),
                                      ('again', vm)])
    assert result.rc == 0, result.output
    assert result['check']['changed'] is True and result['apply']['changed'] is True
    assert result['check_again']['changed'] is False, result['check_again']['diff']
    assert result['again']['changed'] is False and result['again']['tasks'] == []
    made = vms_named(lab, 'staging', 'stg-ci01')[0]
    assert 'media=cdrom' in made.config['ide2'] and made.config['ide2'].startswith('local-lvm:')
    assert made.config['scsi0'].startswith('local-lvm:vm-%d-disk-' % made.vmid)


def test_vm_disks_grow_never_shrink_move_when_asked_detach_and_remove(disklab, tmp_path):
    """One play: grow (four steps), shrink refused, move only with move_disks (source kept, or deleted), a missing
    and a full target storage, then detach and remove."""
    pve = disklab.clusters['production'].pve
    old_web02, old_db01 = pve.vm(101).config['scsi0'].split(',')[0], pve.vm(102).config['scsi0'].split(',')[0]
    disklab.call(lambda: pve.vm(103).config.update(scsi1='local-lvm:vm-103-disk-1,size=8G',
                                                   scsi2='local-lvm:vm-103-disk-2,size=8G'))
    grow = {'name': 'prod-web01', 'disks': {'scsi0': 'local-lvm:40'}}
    move = {'name': 'prod-web02', 'disks': {'scsi0': 'fast:32'}, 'move_disks': True}
    out = {'name': 'prod-batch01', 'disks': {'scsi1': 'detached', 'scsi2': 'absent'}}
    result = play(disklab, tmp_path, VM, [
        ('check', grow, dict(CHECK, **DIFF)), ('apply', grow), ('check_again', grow, CHECK), ('again', grow),
        ('shrink', {'name': 'prod-web01', 'disks': {'scsi0': 'local-lvm:16'}}, MAY_FAIL),
        ('not_asked', {'name': 'prod-web02', 'disks': {'scsi0': 'fast:32'}}),
        ('move_check', move, dict(CHECK, **DIFF)), ('move', move), ('move_again', move),
        ('delete_source', {'name': 'prod-db01', 'disks': {'scsi0': 'fast:32'}, 'move_disks': True,
                           'delete_moved_source': True}),
        ('missing', {'name': 'prod-batch01', 'disks': {'scsi0': 'nosuch:32'}, 'move_disks': True}, MAY_FAIL),
        ('full', {'name': 'prod-batch01', 'disks': {'scsi0': 'tiny:32'}, 'move_disks': True}, MAY_FAIL),
        ('detach_check', out, dict(CHECK, **DIFF)), ('detach', out), ('detach_again', out),
    ])
    assert result.rc == 0, result.output
    # Grow: check mode shows the size in the plan and the diff and sends nothing; the second apply does nothing.
    check = result['check']
    assert check['changed'] is True and check['plan'] == [{'action': 'resize', 'params': {'disk': 'scsi0',
                                                                                          'size': '40G'}}]
    assert check['diff']['before']['scsi0'].endswith('size=32G') and check['diff']['after']['scsi0'].endswith(
        'size=40G')
    assert len(recorded(pve, 'PUT', '/qemu/100/resize')) == 1  # the apply's only
    assert result['apply']['changed'] is True and [t['action'] for t in result['apply']['tasks']] == ['resize']
    assert 'size=40G' in pve.vm(100).config['scsi0'] and result['apply']['pending'] == []
    assert result['check_again']['changed'] is False and result['again']['changed'] is False
    msg = failed_message(result, 'shrink')
    assert 'disk scsi0 is 40G, and the task asks for 16G: Proxmox VE cannot shrink a disk' in msg, msg
    assert 'nothing was changed' in msg and 'size=40G' in pve.vm(100).config['scsi0']
    # Move: a warning unless asked; then once, the source kept as unused0; with delete_moved_source, deleted.
    assert result['not_asked']['changed'] is False
    assert 'disk scsi0 is on storage local-lvm, not fast (it is moved only with move_disks: true)' in result.output
    assert result['move_check']['changed'] is True and result['move_check']['plan'] == [
        {'action': 'move_disk', 'params': {'disk': 'scsi0', 'storage': 'fast', 'delete_source': False}}]
    assert result['move_check']['diff']['after']['scsi0'].startswith('fast:')
    assert len(recorded(pve, 'POST', '/qemu/101/move_disk')) == 1
    web02 = pve.vm(101).config
    assert web02['scsi0'].startswith('fast:vm-101-disk-') and web02['unused0'] == old_web02
    assert result['move']['changed'] is True and result['move_again']['changed'] is False
    db01 = pve.vm(102).config
    assert db01['scsi0'].startswith('fast:') and 'unused0' not in db01 and old_db01.startswith('local-lvm:')
    # A missing or full target: PVE's message, and the disk stays where it was.
    assert "storage 'nosuch' does not exist" in failed_message(result, 'missing')
    msg = failed_message(result, 'full')
    assert 'No space left on device' in msg and result['full']['error']['type'] == 'TaskError', msg
    batch = pve.vm(103).config
    assert batch['scsi0'].startswith('local-lvm:') and batch.get('unused0') == 'local-lvm:vm-103-disk-1'
    # Detach keeps the volume as unusedN; absent destroys it (qm unlink --force).
    assert [s['action'] for s in result['detach_check']['plan']] == ['detach', 'detach']
    assert result['detach_check']['diff']['after'] == {'scsi1': None, 'scsi2': None}
    assert [t['action'] for t in result['detach']['tasks']] == ['detach', 'remove']
    assert 'scsi1' not in batch and 'scsi2' not in batch
    assert [v for k, v in batch.items() if k.startswith('unused')] == ['local-lvm:vm-103-disk-1']
    assert result['detach_again']['changed'] is False


def test_container_grow_move_and_remove(disklab, tmp_path):
    pve = disklab.clusters['staging'].pve
    ct = pve.ct(105)  # stg-proxy01, stopped
    disklab.call(lambda: ct.config.update(mp0='local-lvm:vm-105-disk-1,mp=/srv,size=4G'))
    moved = {'name': 'stg-proxy01', 'rootfs': 'fast:12', 'mounts': {'mp0': 'absent'}, 'move_disks': True}
    result = play(disklab, tmp_path, CT, [
        ('move', moved), ('move_again', moved),
        ('shrink', {'name': 'stg-proxy01', 'rootfs': 'fast:8'}, MAY_FAIL),
        ('running', {'name': 'stg-cache01', 'rootfs': 'fast:8', 'move_disks': True}, MAY_FAIL),
    ])
    assert result.rc == 0, result.output
    assert [t['action'] for t in result['move']['tasks']] == ['resize', 'move_disk', 'detach', 'remove']
    assert ct.config['rootfs'].startswith('fast:') and 'size=12G' in ct.config['rootfs'] and 'mp0' not in ct.config
    assert sorted(v for k, v in ct.config.items() if k.startswith('unused')) == ['local-lvm:subvol-105-disk-0']
    assert result['move_again']['changed'] is False
    assert 'is 12G, and the task asks for 8G' in failed_message(result, 'shrink')
    msg = failed_message(result, 'running')
    assert 'is running, and Proxmox VE moves the volumes of a stopped container only (rootfs)' in msg, msg
    assert pve.ct(104).config['rootfs'].startswith('local-lvm:')
