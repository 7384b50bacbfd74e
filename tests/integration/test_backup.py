"""pmx_backup and pmx_restore through the real ansible-playbook (and the MCP tools through the real client),
against one lab for the whole module: every cluster shares the NFS backup storage backup-nfs (lab/pvebackup.py).

Steps that change something are tried four times where that applies (check, apply, check, apply); a backup
is an action and always reports a change, so its check run is shown to write nothing instead.
"""

import copy

import pytest

import pmxlab
from conftest import _NET, capture, failed_message, lab_secrets, play

BACKUP = 'pmx.multicluster.pmx_backup'
RESTORE = 'pmx.multicluster.pmx_restore'
STORE = 'backup-nfs'
CHECK = {'check_mode': True}
DIFF = {'diff': True}
MAY_FAIL = {'ignore_errors': True}


@pytest.fixture(scope='module')
def blab(tmp_path_factory):
    with pmxlab.Lab(str(tmp_path_factory.mktemp('backup-lab')), clusters=3, first_host='127.%d.7.2' % _NET) as lab:
        yield lab


def state(lab):
    """Everything a check run must leave alone: guests (config, status) and the backup storage."""
    out = {}
    for name, c in lab.clusters.items():
        out[name] = sorted((g.vmid, g.name, g.status, copy.deepcopy(g.config)) for g in c.guests())
    out['backups'] = lab.backups('production')
    return out


def writes(lab, cluster, since):
    return [(m, p) for m, p, _b in lab.clusters[cluster].pve.requests[since:] if m in ('POST', 'PUT', 'DELETE')]


def test_backup_now_list_and_dr_restore(blab, tmp_path):
    """prod-web01 backed up on production (check run writes nothing); the archive is listed on production and on
    disaster-recovery, newest first; one task naming only prod-web01 and cluster disaster-recovery restores it
    there with a new vmid and the DR bridge (check, apply, check, apply)."""
    before = state(blab)
    dr = blab.clusters['disaster-recovery']
    result = play(blab, tmp_path, BACKUP, [
        ('check', {'name': 'prod-web01', 'storage': STORE}, dict(CHECK, **DIFF)),
    ])
    assert result.rc == 0, result.output
    assert result['check']['changed'] and result['check']['archive'] is None
    assert result['check']['cluster'] == 'production' and result['check']['route_reason'] == "pattern 'prod-*'"
    assert state(blab) == before, 'check mode changed something'

    result = play(blab, tmp_path, BACKUP, [
        ('first', {'name': 'prod-web01', 'storage': STORE, 'compress': 'zstd', 'protected': True}),
        ('second', {'name': 'prod-web01', 'storage': STORE, 'mode': 'stop', 'notes': '{% raw %}{{guestname}}{% endraw %}'}),
        ('listed_prod', {'name': 'prod-web01', 'storage': STORE, 'state': 'list'}),
        ('listed_dr', {'name': 'prod-web01', 'cluster': 'disaster-recovery', 'state': 'list'}),
    ])
    assert result.rc == 0, result.output
    first, second = result['first'], result['second']
    assert first['changed'] and first['archive'].startswith(STORE + ':backup/vzdump-qemu-100-')
    assert first['archive'].endswith('.vma.zst') and first['archives'][0]['node'] == 'prod-pve1'
    assert first['archives'][0]['task']['exitstatus'] == 'OK'
    assert second['archive'] != first['archive']
    assert [b['volid'] for b in result['listed_prod']['backups']] == [second['archive'], first['archive']]
    def seen(rows):  # the same backups, read through another cluster's node
        return [dict((k, v) for k, v in r.items() if k != 'node') for r in rows]
    assert seen(result['listed_dr']['backups']) == seen(result['listed_prod']['backups'])
    newest = result['listed_dr']['backups'][0]
    assert newest['size'] > 0 and newest['time'].endswith('Z') and newest['notes'] == 'prod-web01'
    assert result['listed_dr']['backups'][1]['protected'] is True
    assert blab.clusters['production'].pve.vm(100).status == 'running'  # mode stop started it again

    dr_state = state(blab)
    since = len(dr.pve.requests)
    task = {'name': 'prod-web01', 'cluster': 'disaster-recovery', 'bridge': 'vmbr1', 'start': True}
    result = play(blab, tmp_path, RESTORE, [
        ('check1', task, dict(CHECK, **DIFF)),
    ])
    assert result.rc == 0, result.output
    check1 = result['check1']
    assert check1['changed'] and check1['archive'] == second['archive'] and not check1['exists']
    assert check1['vmid'] == 106 and check1['node_reason'] == 'most free memory' and check1['type'] == 'qemu'
    assert check1['diff']['after']['name'] == 'prod-web01' and 'bridge=vmbr1' in check1['diff']['after']['net0']
    assert state(blab) == dr_state and writes(blab, 'disaster-recovery', since) == []

    result = play(blab, tmp_path, RESTORE, [
        ('apply1', task), ('check2', task, CHECK), ('apply2', task),
    ])
    assert result.rc == 0, result.output
    apply1 = result['apply1']
    assert apply1['changed'] and apply1['vmid'] == 106 and apply1['tasks'][0]['exitstatus'] == 'OK'
    vm = dr.pve.vm(106)
    assert vm.name == 'prod-web01' and vm.status == 'running' and 'bridge=vmbr1' in vm.config['net0']
    assert vm.config['scsi0'].startswith('local-lvm:vm-106-disk-0')
    for name in ('check2', 'apply2'):
        assert not result[name]['changed'] and result[name]['exists'], result[name]
        assert result[name]['replaced']['vmid'] == 106
    assert 'force: true to replace it' in result.output
    capture(blab, 'play', result.output)
    result.assert_no_secret(lab_secrets(blab))
