"""pmx_backup and pmx_restore through the real ansible-playbook (and the MCP tools through the real client),
against one lab for the whole module: every cluster shares the NFS backup storage backup-nfs (lab/pvebackup.py).

Steps that change something are tried four times where that applies (check, apply, check, apply); a backup
is an action and always reports a change, so its check run is shown to write nothing instead. Each test is one
ansible-playbook run (the steps in order, each registered), so that the module adds little time to the suite;
the tests build on each other's backups, in file order.
"""

import subprocess

import pytest

import pmxlab
from conftest import _NET, BIN, DEAD, ansible_env, capture, env_file, failed_message, lab_secrets, play, run_mcp

BACKUP = 'pmx.multicluster.pmx_backup'
INFO = 'pmx.multicluster.pmx_backup_info'
RESTORE = 'pmx.multicluster.pmx_restore'
STORE = 'backup-nfs'
CHECK = {'check_mode': True}
DIFF = {'diff': True}
MAY_FAIL = {'ignore_errors': True}


@pytest.fixture(scope='module')
def blab(tmp_path_factory):
    with pmxlab.Lab(str(tmp_path_factory.mktemp('backup-lab')), clusters=3, first_host='127.%d.7.2' % _NET) as lab:
        yield lab


def vzdumps(lab, cluster):
    """The vzdump requests a cluster received."""
    return [p for m, p, _b in lab.clusters[cluster].pve.requests if m == 'POST' and p.endswith('/vzdump')]


def test_backup_now_list_and_dr_restore(blab, tmp_path):
    """prod-web01 backed up on production (the check run sends no vzdump); the archives are listed on production
    and on disaster-recovery, newest first; one task naming only prod-web01 and cluster disaster-recovery
    restores the newest there, with a free vmid and the DR bridge, started (check, apply, check, apply)."""
    dr = blab.clusters['disaster-recovery']
    restore = {'name': 'prod-web01', 'cluster': 'disaster-recovery', 'bridge': 'vmbr1', 'start': True}
    result = play(blab, tmp_path, BACKUP, [
        ('check', {'name': 'prod-web01', 'storage': STORE}, dict(CHECK, **DIFF)),
        ('first', {'name': 'prod-web01', 'storage': STORE, 'compress': 'zstd', 'protected': True}),
        ('second', {'name': 'prod-web01', 'storage': STORE, 'mode': 'stop',
                    'notes': '{% raw %}{{guestname}}{% endraw %}'}),
        ('listed_prod', {'name': 'prod-web01', 'storage': STORE}, {}, INFO),
        ('listed_dr', {'name': 'prod-web01', 'cluster': 'disaster-recovery'}, {}, INFO),
        ('check1', restore, dict(CHECK, **DIFF), RESTORE),
        ('apply1', restore, {}, RESTORE),
        ('check2', restore, CHECK, RESTORE),
        ('apply2', restore, {}, RESTORE),
    ])
    assert result.rc == 0, result.output
    check, first, second = result['check'], result['first'], result['second']
    assert check['changed'] and check['archive'] is None and check['archives'][0]['node'] == 'prod-pve1'
    assert check['cluster'] == 'production' and check['route_reason'] == "pattern 'prod-*'"
    assert len(vzdumps(blab, 'production')) == 2  # first and second; none from the check run
    assert first['changed'] and first['archive'].startswith(STORE + ':backup/vzdump-qemu-100-')
    assert first['archive'].endswith('.vma.zst') and first['archives'][0]['task']['exitstatus'] == 'OK'
    assert second['archive'] != first['archive']
    # Listed newest first, the same from production and from disaster-recovery (exactly the two: check made none).
    assert [b['volid'] for b in result['listed_prod']['backups']] == [second['archive'], first['archive']]

    def seen(rows):  # the same backups, read through another cluster's node
        return [dict((k, v) for k, v in r.items() if k != 'node') for r in rows]
    assert seen(result['listed_dr']['backups']) == seen(result['listed_prod']['backups'])
    newest = result['listed_dr']['backups'][0]
    assert newest['size'] > 0 and newest['time'].endswith('Z') and newest['notes'] == 'prod-web01'
    assert result['listed_dr']['backups'][1]['protected'] is True
    assert blab.clusters['production'].pve.vm(100).status == 'running'  # mode stop started it again

    check1, apply1 = result['check1'], result['apply1']
    assert check1['changed'] and check1['archive'] == second['archive'] and not check1['exists']
    assert check1['vmid'] == 106 and check1['node_reason'] == 'most free memory' and check1['type'] == 'qemu'
    assert check1['diff']['after']['name'] == 'prod-web01' and 'bridge=vmbr1' in check1['diff']['after']['net0']
    # apply1 made it (so check1 did not), with the vmid check1 predicted.
    assert apply1['changed'] and apply1['vmid'] == 106 and apply1['tasks'][0]['exitstatus'] == 'OK'
    vm = dr.pve.vm(106)
    assert vm.name == 'prod-web01' and vm.status == 'running' and 'bridge=vmbr1' in vm.config['net0']
    assert vm.config['scsi0'].startswith('local-lvm:vm-106-disk-0')
    for name in ('check2', 'apply2'):
        assert not result[name]['changed'] and result[name]['exists'], result[name]
        assert result[name]['replaced']['vmid'] == 106
    assert 'force: true to replace it' in result.output
    assert [v.vmid for v in dr.pve.vms if v.name == 'prod-web01'] == [106]
    result.assert_no_secret(lab_secrets(blab))


def test_selection_prune_and_force(blab, tmp_path):
    """Backups of a selection (pattern and tag) of staging; a prune by keep policy of prod-web01 four ways
    (the protected one kept), and with a backup; a container restored into disaster-recovery; a restore over an
    existing guest refuses a running one, and with force replaces a stopped one and says what it replaced.
    stg-web01 is vmid 100 too: its backup on the shared storage survives prod-web01's prunes (PVE's own prune, by
    vmid, would count it as one of prod-web01's)."""
    dr = blab.clusters['disaster-recovery']
    earlier = blab.backups('production', vmid=100)  # the first test's two, oldest (protected) first
    keep = {'name': 'prod-web01', 'storage': STORE, 'state': 'prune', 'keep': {'last': 1}}
    over = {'name': 'prod-web01', 'cluster': 'disaster-recovery', 'force': True}
    result = play(blab, tmp_path, BACKUP, [
        ('selection', {'cluster': 'staging', 'pattern': 'stg-web*', 'tags': ['web'], 'storage': STORE,
                       'compress': 'gzip'}),
        ('more', {'name': 'prod-web01', 'storage': STORE}),
        ('ct', {'name': 'prod-cache01', 'storage': STORE}),
        ('no_cluster', {'pattern': 'stg-*', 'storage': STORE}, MAY_FAIL),
        ('check1', keep, dict(CHECK, **DIFF)), ('apply1', keep), ('check2', keep, CHECK), ('apply2', keep),
        ('backup_keep', {'name': 'prod-web01', 'storage': STORE, 'keep': {'last': 1}}),
        ('ct_restore', {'name': 'prod-cache01', 'cluster': 'disaster-recovery', 'target_storage': 'local-lvm'}, {},
         RESTORE),
        ('running', over, MAY_FAIL, RESTORE),
        ('stop', {'name': 'prod-web01', 'cluster': 'disaster-recovery', 'state': 'stopped', 'force': True}, {},
         'pmx.multicluster.pmx_vm'),
        ('force_check', over, dict(CHECK, **DIFF), RESTORE),
        ('force', dict(over, archive=earlier[0]), {}, RESTORE),
    ])
    assert [(a['name'], a['vmid']) for a in result['selection']['archives']] == [('stg-web01', 100), ('stg-web02', 101)]
    assert all(a['volid'].endswith('.vma.gz') for a in result['selection']['archives'])
    assert 'give cluster too' in failed_message(result, 'no_cluster')

    oldest, middle, newest = earlier[0], earlier[1], result['more']['archive']
    assert result['check1']['changed'] and result['check1']['removed'] == [middle]
    assert result['check1']['diff']['after']['backups'] == [newest, oldest]
    assert result['apply1']['changed'] and result['apply1']['removed'] == [middle]
    assert not result['check2']['changed'] and not result['apply2']['changed']
    assert [b['volid'] for b in result['apply2']['backups']] == [newest, oldest]
    stg = result['selection']['archives'][0]['volid']
    # A backup with keep: the guest's own backups pruned after it (newest gone: last 1 is the new one).
    fresh = result['backup_keep']['archive']
    assert result['backup_keep']['pruned'] == [newest]
    assert sorted(blab.backups('production', vmid=100)) == sorted([oldest, fresh, stg])

    ct = next(c for c in dr.pve.cts if c.name == 'prod-cache01')
    res = result['ct_restore']
    assert res['changed'] and res['type'] == 'lxc' and res['vmid'] == ct.vmid == 107
    assert res['archive'] == result['ct']['archive'] and res['archive'].startswith(STORE + ':backup/vzdump-lxc-104-')
    assert ct.config['rootfs'].startswith('local-lvm:') and 'size=8G' in ct.config['rootfs']
    assert "VM 'prod-web01' (vmid 106) is running; a restore replaces only a stopped guest" \
        in failed_message(result, 'running')
    replaced = {'vmid': 106, 'name': 'prod-web01', 'node': 'dr-pve1', 'status': 'stopped', 'type': 'qemu'}
    for name in ('force_check', 'force'):
        assert result[name]['changed'] and result[name]['replaced'] == replaced, result[name]
    assert result['force_check']['archive'] == fresh and result['force']['archive'] == oldest
    assert result['force']['diff']['before']['vmid'] == 106
    assert [vm.vmid for vm in dr.pve.vms if vm.name == 'prod-web01'] == [106]
    assert 'bridge=vmbr0' in dr.pve.vm(106).config['net0']  # the archive's own bridge: no override this time


def test_fault_hooks(blab, tmp_path):
    """Storage full, another vzdump holding the guest's lock and its node's lock, an archive gone: each fails
    with a message that says what happened, and nothing is left half done."""
    prod = blab.clusters['production']
    lost = blab.backups('production', vmid=104)[-1]  # prod-cache01's, from the test before
    # A fourth cluster that cannot be read: a guest whose cluster depends on looking everywhere is refused.
    dead = str(env_file(blab, tmp_path, replace={'PROXMOX_CLUSTERS': 'production,staging,disaster-recovery,offline'},
                        extra=['PROXMOX_CLUSTER_offline_API_URL=' + DEAD, 'PROXMOX_CLUSTER_offline_TOKEN_ID=root@pam!x',
                               'PROXMOX_CLUSTER_offline_TOKEN_SECRET=not-a-secret',
                               'PROXMOX_CLUSTER_offline_TIMEOUT=2']))
    stored = blab.backups('production')
    record = blab.lose_archive('production', lost)
    avail = blab.fill_storage('production', STORE, avail=1024)
    hold = blab.hold_backup_lock('production', 102)
    try:
        result = play(blab, tmp_path, BACKUP, [
            ('full', {'name': 'prod-web02', 'storage': STORE}, MAY_FAIL),
            ('locked', {'name': 'prod-db01', 'storage': STORE, 'timeout': 2}, MAY_FAIL),
            ('node_lock', {'name': 'prod-cache01', 'storage': STORE, 'timeout': 60}, MAY_FAIL),
            ('missing', {'archive': lost, 'cluster': 'staging'}, MAY_FAIL, RESTORE),
            ('no_backups_there', {'name': 'prod-web02', 'storage': 'local-lvm'}, MAY_FAIL),
            ('not_an_archive', {'archive': 'vzdump-qemu-100.vma', 'cluster': 'staging'}, MAY_FAIL, RESTORE),
            ('unread_backup', {'name': 'build01', 'storage': STORE, 'env_file': dead}, MAY_FAIL),
            ('whole_storage', {'cluster': 'staging', 'storage': STORE, 'state': 'prune', 'keep': {'last': 1}}, CHECK),
            ('unread_restore', {'name': 'build01', 'env_file': dead}, MAY_FAIL, RESTORE),
        ])
    finally:
        hold.release()
        blab.free_storage('production', STORE, avail)
        blab.restore_archive('production', lost, record)
    msg = failed_message(result, 'full')
    assert "task vzdump on node prod-pve2 failed: job errors" in msg and 'No space left on device' in msg, msg
    assert result['full']['error']['type'] == 'TaskError'
    msg = failed_message(result, 'locked')
    assert "VM 'prod-db01' (vmid 102) is locked (backup) and stayed locked for 2s; nothing was changed" in msg, msg
    assert result['locked']['error']['type'] == 'GuestLockedError'
    msg = failed_message(result, 'node_lock')
    assert "can't acquire lock '/var/run/vzdump.lock' - got timeout" in msg, msg
    msg = failed_message(result, 'missing')
    assert "archive '%s' not found on storage 'backup-nfs' (deleted, or pruned?)" % lost in msg, msg
    assert result['missing']['error']['type'] == 'BackupNotFoundError'
    msg = failed_message(result, 'no_backups_there')
    assert "storage 'local-lvm' does not hold backups (content images,rootdir); its backup storages: backup-nfs, " \
        "local" in msg, msg
    assert "archive 'vzdump-qemu-100.vma' is not a backup volume id" in failed_message(result, 'not_an_archive')
    # PVE's own prune of the whole storage (vmid by vmid), in check mode: what it would remove, nothing removed.
    whole = result['whole_storage']
    assert whole['changed'] and whole['removed'] and set(whole['removed']) < set(stored)
    assert blab.backups('production') == stored
    for name in ('unread_backup', 'unread_restore'):
        msg = failed_message(result, name)
        assert "cannot tell which cluster holds the guest named 'build01': cluster(s) 'offline' could not be " \
            "read" in msg and 'Nothing was changed' in msg, msg
        assert result[name]['error']['type'] == 'UnreadableClustersError'
    assert not [c for c in blab.clusters['staging'].pve.cts if c.name == 'prod-cache01']
    assert prod.pve.vm(102).config.get('lock') is None
    assert not [v for v in blab.backups('production', vmid=101) if 'vzdump-qemu-101' in v and 'gz' not in v]


def test_mcp_tools(blab):
    """The MCP server's backup tools through the official client: list (from disaster-recovery, by name),
    guest_details with the guest's backups, backup now, and the destructive prune and restore: a preview that
    changes nothing, then the act with confirm=true."""
    dr = blab.clusters['disaster-recovery']

    async def body(client):
        out = {'web': await client.call('backup_now', name='prod-web01', storage=STORE),
               'listed': await client.call('list_backups', name='prod-web01', cluster='disaster-recovery'),
               'details': await client.call('guest_details', name='prod-web01'),
               'now': await client.call('backup_now', name='prod-db01', storage=STORE, notes='db {{vmid}}')}
        out['prune_preview'] = await client.call('prune_backups', name='prod-web01', storage=STORE, keep_last=1)
        out['prune_before'] = list(blab.backups('production', vmid=100))
        out['prune'] = await client.call('prune_backups', name='prod-web01', storage=STORE, keep_last=1,
                                         confirm=True,
                                         confirmation_token=out['prune_preview'][1]['confirmation_token'])
        task = {'name': 'prod-db01', 'cluster': 'disaster-recovery', 'new_name': 'prod-db01-dr'}
        out['preview'] = await client.call('restore_backup', **task)
        out['preview_vms'] = [vm.vmid for vm in dr.pve.vms]
        out['restore'] = await client.call('restore_backup', confirm=True,
                                           confirmation_token=out['preview'][1]['confirmation_token'], **task)
        return out

    env = ansible_env(env_file=blab.env_file, extra={'PMX_MCP_ALLOW_WRITE': '1'})
    out, texts, stderr = run_mcp(env, body)
    capture(blab, 'mcp', *texts)
    for key in ('web', 'listed', 'details', 'now', 'prune_preview', 'prune', 'preview', 'restore'):
        assert out[key][0] is False, (key, out[key])
    listed = out['listed'][1]['backups']
    assert len(listed) == 3 and all(b['notes'] == 'prod-web01' for b in listed)
    assert listed[0]['volid'] == out['web'][1]['archive']['volid'] and listed[2]['protected']
    assert [b['volid'] for b in out['details'][1]['backups']['backups']] == [b['volid'] for b in listed]
    now = out['now'][1]['archive']
    assert now['volid'].startswith(STORE + ':backup/vzdump-qemu-102-') and now['notes'] == 'db 102'
    preview = out['prune_preview'][1]
    assert preview['preview'] and not preview['changed'] and preview['removed'] == [listed[1]['volid']]
    assert listed[1]['volid'] in out['prune_before']  # the preview deleted nothing
    assert out['prune'][1]['changed'] and listed[1]['volid'] not in blab.backups('production', vmid=100)
    preview = out['preview'][1]
    assert preview['preview'] and preview['archive'] == now['volid'] and preview['name'] == 'prod-db01-dr'
    restored = out['restore'][1]
    assert restored['changed'] and restored['tasks'][0]['exitstatus'] == 'OK'
    vm = dr.pve.vm(restored['vmid'])
    assert vm.name == 'prod-db01-dr' and restored['vmid'] not in out['preview_vms']
    everything = '\n'.join(texts) + stderr
    assert 'Traceback' not in everything
    assert not any(secret in everything for secret in lab_secrets(blab))


def test_ansible_doc():
    """ansible-doc renders the three modules with their examples and return values."""
    mods = ['pmx.multicluster.' + m for m in ('pmx_backup', 'pmx_backup_info', 'pmx_restore')]
    doc = subprocess.run([str(BIN / 'ansible-doc')] + mods, env=ansible_env(), capture_output=True, text=True,
                         timeout=120, check=False)
    assert doc.returncode == 0, doc.stderr
    for mod in mods:
        assert 'MODULE %s' % mod in doc.stdout, mod
    for expected in ('keep', 'notes', 'protected', 'archive', 'new_name', 'bridge', 'force', 'EXAMPLES',
                     'RETURN VALUES', 'cluster: disaster-recovery', 'replaced'):
        assert expected in doc.stdout, expected
