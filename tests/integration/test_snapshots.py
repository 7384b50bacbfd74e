"""pmx_snapshot and pmx_snapshot_info through real plays against one lab shared by this file.

Create is tried four times (check, apply, check, apply); retention keeps the newest N of a prefix and
refuses to delete the current state's parent unless forced; rollback runs (and never in check mode); a
locked guest is waited for; a guest whose cluster depends on an unreadable one is refused.
"""

import pytest

from conftest import _NET, CHECK, DEAD, MAY_FAIL, env_file, failed_message, mcp, play, pmxlab, recorded

SNAP = 'pmx.multicluster.pmx_snapshot'
SNAP_INFO = 'pmx.multicluster.pmx_snapshot_info'


@pytest.fixture(scope='module')
def snaplab(tmp_path_factory):
    with pmxlab.Lab(str(tmp_path_factory.mktemp('snaplab')), clusters=3, first_host='127.%d.7.2' % _NET) as running:
        yield running


def names(guest):
    return sorted(guest.snapshots)


def test_create_four_steps_retention_rollback_and_info(snaplab, tmp_path):
    pve = snaplab.clusters['production'].pve
    vm = pve.vm(100)
    pre = lambda n: {'name': 'prod-web01', 'snapname': 'pre-%d' % n, 'keep': 2, 'prefix': 'pre-',  # noqa: E731
                     'description': 'before change %d' % n}
    result = play(snaplab, tmp_path, SNAP, [
        ('check', pre(1), CHECK), ('apply', pre(1)), ('check_again', pre(1), CHECK), ('again', pre(1)),
        ('second', pre(2)), ('third', pre(3)),
        ('other', {'name': 'prod-web01', 'snapname': 'manual', 'vmstate': True}),
        ('rollback_check', {'name': 'prod-web01', 'snapname': 'pre-2', 'state': 'rollback'}, CHECK),
        ('rollback', {'name': 'prod-web01', 'snapname': 'pre-2', 'state': 'rollback', 'start': True}),
        ('prune_parent', {'name': 'prod-web01', 'state': 'absent', 'keep': 0, 'prefix': 'pre-'}, MAY_FAIL),
        ('prune_check', {'name': 'prod-web01', 'state': 'absent', 'keep': 0, 'prefix': 'pre-', 'force': True},
         dict(CHECK, diff=True)),
        ('prune', {'name': 'prod-web01', 'state': 'absent', 'keep': 0, 'pattern': 'pre-*', 'force': True}),
        ('info', {'name': 'prod-web01'}, {}, SNAP_INFO),
        ('ct', {'name': 'stg-cache01', 'snapname': 'ct-snap'}),
        ('ct_again', {'name': 'stg-cache01', 'snapname': 'ct-snap'}),
        ('ct_delete', {'name': 'stg-cache01', 'snapname': 'ct-snap', 'state': 'absent'}),
        ('ct_delete_again', {'name': 'stg-cache01', 'snapname': 'ct-snap', 'state': 'absent'}),
    ])
    assert result.rc == 0, result.output
    # Four steps: check mode wrote nothing, the second apply changed nothing.
    assert result['check']['changed'] is True and result['check']['plan'] == [
        {'action': 'create', 'snapname': 'pre-1', 'description': 'before change 1'}]
    assert result['apply']['changed'] is True and result['apply']['cluster'] == 'production'
    assert result['apply']['route_reason'] == "pattern 'prod-*'"
    assert result['check_again']['changed'] is False and result['again']['changed'] is False
    assert result['again']['tasks'] == []
    # Retention: the third keeps pre-3 and pre-2 and deletes pre-1; 'manual' is never covered.
    assert result['second']['deleted'] == []
    assert result['third']['deleted'] == ['pre-1'] and result['third']['kept'] == ['pre-3', 'pre-2']
    assert [t['action'] for t in result['third']['tasks']] == ['create', 'delete']
    assert pve.vm(100).snapshots.get('manual', {}).get('vmstate')  # RAM of the running VM
    # Rollback: check mode reports a change and sends nothing; the real one stops, rolls back, starts.
    assert result['rollback_check']['changed'] is True
    rollbacks = recorded(pve, 'POST', '/snapshot/pre-2/rollback')
    assert len(rollbacks) == 1, rollbacks
    assert result['rollback']['changed'] is True and result['rollback']['status'] == 'running'
    # pre-2 is now the current state's parent: not deleted unless forced.
    msg = failed_message(result, 'prune_parent')
    assert "snapshot 'pre-2' is the parent of the current state" in msg and 'force: true' in msg, msg
    assert result['prune_parent']['error']['type'] == 'SnapshotError'
    assert result['prune_check']['changed'] is True and result['prune_check']['deleted'] == ['pre-3', 'pre-2']
    assert result['prune_check']['diff']['after']['snapshots'] == ['manual']
    assert result['prune']['deleted'] == ['pre-3', 'pre-2']
    assert names(vm) == ['manual']
    info = result['info']
    assert info['changed'] is False and [s['name'] for s in info['snapshots']] == ['manual']
    assert info['tree'][0]['name'] == 'manual' and info['unreadable'] == []
    # A container, the same way (vzsnapshot / vzdelsnapshot); a snapshot named for deletion goes even when the
    # current state is based on it (the task named it).
    ct = snaplab.clusters['staging'].pve.guest(104)
    assert result['ct']['changed'] is True and result['ct']['type'] == 'lxc'
    assert result['ct_again']['changed'] is False
    assert result['ct_delete']['changed'] is True and result['ct_delete_again']['changed'] is False
    assert ct.snapshots == {}


def test_locked_guest_waited_for_bad_input_and_unreadable_cluster(snaplab, tmp_path):
    pve = snaplab.clusters['production'].pve
    pve.time_scale = 0.02
    try:
        snaplab.call(pve.backup(103, secs=50))  # a lock of about 1 s
        pve.snapshot_lock(102, 'backup')          # a lock that stays
        # A guest no name pattern routes: only a lookup in every cluster can say where it is.
        snaplab.call(lambda: pve.add_vm(4242, 'misc01', node='prod-pve1', status='stopped', config={
            'name': 'misc01', 'scsi0': 'local-lvm:vm-4242-disk-0,size=8G'}))
        broken = env_file(snaplab, tmp_path, replace={'PROXMOX_CLUSTER_disaster-recovery_API_URL': DEAD})
        result = play(snaplab, tmp_path, SNAP, [
            ('waited', {'name': 'prod-batch01', 'snapname': 'after-lock', 'timeout': 30}),
            ('locked', {'name': 'prod-db01', 'snapname': 'never', 'timeout': 2}, MAY_FAIL),
            ('bad_name', {'name': 'prod-web02', 'snapname': '1-bad name'}, MAY_FAIL),
            ('no_rule', {'name': 'prod-web02', 'state': 'absent', 'keep': 1}, MAY_FAIL),
            ('missing', {'name': 'prod-web02', 'snapname': 'nope', 'state': 'rollback'}, MAY_FAIL),
        ])
        unread = play(snaplab, tmp_path, SNAP, [
            ('by_lookup', {'name': 'misc01', 'snapname': 'x-snap'}, MAY_FAIL),
        ], env=broken)
    finally:
        pve.unlock(102)
        pve.time_scale = 0.0
    assert result.rc == 0, result.output
    assert result['waited']['changed'] is True and 'after-lock' in pve.vm(103).snapshots
    msg = failed_message(result, 'locked')
    assert "VM 'prod-db01' (vmid 102) is locked (backup) and stayed locked for 2s; nothing was changed" in msg
    assert 'never' not in pve.vm(102).snapshots
    assert 'invalid snapshot name' in failed_message(result, 'bad_name')
    assert 'keep needs prefix or pattern' in failed_message(result, 'no_rule')
    assert "has no snapshot 'nope'" in failed_message(result, 'missing')
    # misc01 is found in production, but disaster-recovery cannot be read: it may be there too.
    assert unread.rc == 0, unread.output
    msg = failed_message(unread, 'by_lookup')
    assert 'disaster-recovery' in msg and unread['by_lookup']['error']['type'] == 'UnreadableClustersError', msg
    assert pve.vm(4242).snapshots == {}


def test_mcp_snapshot_delete_retention_disk_resize_and_details(snaplab):
    """The MCP tools over the same core: destructive ones preview unless confirm=true."""
    pve = snaplab.clusters['disaster-recovery'].pve
    vm = pve.vm(101)  # dr-web02
    guest = {'name': 'dr-web02'}
    calls = [('create-%s' % name, 'snapshot_create', dict(guest, snapname=name))
             for name in ('n-1', 'n-2', 'n-3', 'keepme')] + [
        ('retention_preview', 'snapshot_retention', dict(guest, keep=1, prefix='n-')),
        ('retention', 'snapshot_retention', dict(guest, keep=1, prefix='n-', confirm=True)),
        ('delete_preview', 'snapshot_delete', dict(guest, snapname='keepme')),
        ('delete', 'snapshot_delete', dict(guest, snapname='keepme', confirm=True)),
        ('grow', 'disk_resize', dict(guest, disk='scsi0', size='40G')),
        ('grow_again', 'disk_resize', dict(guest, disk='scsi0', size='40G')),
        ('shrink', 'disk_resize', dict(guest, disk='scsi0', size='16G')),
        ('no_disk', 'disk_resize', dict(guest, disk='scsi7', size='16G')),
        ('details', 'guest_details', guest),
    ]
    answers = mcp(snaplab, [(tool, args) for dummy, tool, args in calls], write=True)
    results = dict(zip([label for label, dummy, dummy2 in calls], answers))
    preview = results['retention_preview'][1]
    assert preview['preview'] is True and preview['deleted'] == ['n-2', 'n-1'] and preview['kept'] == ['n-3']
    assert "delete snapshot(s) n-2, n-1 of dr-web02" in preview['would']
    after = results['retention'][1]
    assert after['changed'] is True and sorted(s['name'] for s in after['snapshots']) == ['keepme', 'n-3']
    assert results['delete_preview'][1]['preview'] is True
    assert results['delete'][1]['deleted'] == ['keepme'] and sorted(vm.snapshots) == ['n-3']
    grow = results['grow'][1]
    assert grow['changed'] is True and grow['plan'] == [{'action': 'resize', 'params': {'disk': 'scsi0',
                                                                                      'size': '40G'}}]
    assert 'size=40G' in vm.config['scsi0'] and results['grow_again'][1]['changed'] is False
    assert results['shrink'][0] is True and 'cannot shrink a disk' in results['shrink'][1]
    assert results['no_disk'][0] is True and "has no disk 'scsi7'" in results['no_disk'][1]
    assert [s['name'] for s in results['details'][1]['snapshots']] == ['n-3']
