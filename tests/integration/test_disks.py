"""Disks in PVE's create syntax compare equal to what PVE stores afterwards (issue 15's known bugs).

A cloud-init drive given as ``local-lvm:cloudinit`` and a disk made with ``import-from=`` used to report a
change on every run. Through real plays against the lab: the four runs check, apply, check, apply.
"""

from conftest import CHECK, VM, play, vms_named

IMAGE = 'debian-12-genericcloud-amd64.qcow2'


def test_cloudinit_drive_and_imported_disk_are_idempotent(fresh_lab, tmp_path):
    lab = fresh_lab
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
