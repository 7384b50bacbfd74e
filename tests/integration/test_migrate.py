"""pmx_migrate, the evacuation playbook and the MCP tool migrate_guest: real plays against one lab (lab/pvemigrate.py).

The lab models PVE's migration (lab/README.md, "Migration"): a guest moves to another node, or to another lab
cluster with its storages and bridges mapped, its source kept stopped and locked ``migrate`` unless deleted.
Each test uses guests of its own, so that they share one lab; each checks the fakes' state and the migrations
they recorded (``pve.migrations``), not only what the module says.
"""

import json
import re
import subprocess

import pytest
import requests

import pmxlab
from conftest import (
    BIN,
    DEAD,
    MAY_FAIL,
    REPO,
    SHARED_LAB_HOST,
    ansible_env,
    capture,
    env_file,
    lab_secrets,
    mcp,
    play,
    run_playbook,
)

MIGRATE = 'pmx.multicluster.pmx_migrate'
VM = 'pmx.multicluster.pmx_vm'
INFO = 'pmx.multicluster.pmx_cluster_info'
CHECK = {'check_mode': True}
DIFF = {'diff': True}
HOST = SHARED_LAB_HOST.rsplit('.', 2)[0] + '.3.2'   # a range of its own: 127.N.3.x


@pytest.fixture(scope='module')
def mlab(tmp_path_factory):
    """One lab for this module's tests; each test moves guests no other test touches."""
    with pmxlab.Lab(str(tmp_path_factory.mktemp('mlab')), clusters=3, first_host=HOST) as running:
        yield running


def guest(lab, cluster, name):
    """The fake's guest (VM or container) named ``name`` in a lab cluster, or None (never two)."""
    found = [g for g in lab.clusters[cluster].guests() if g.name == name]
    assert len(found) <= 1, [g.vmid for g in found]
    return found[0] if found else None


def migrations(lab, cluster, vmid=None):
    return [m for m in lab.clusters[cluster].pve.migrations if vmid is None or int(m['vmid']) == vmid]


def post_api(lab, cluster, path, **data):
    c = lab.clusters[cluster]
    session = requests.Session()
    session.trust_env = False
    resp = session.post(c.url + '/api2/json/' + path, headers=c.headers, verify=lab.ca_bundle, data=data, timeout=10)
    assert resp.status_code == 200, resp.text


def recap_changed_count(output):
    """The changed= count of every host in the PLAY RECAP, summed."""
    return sum(int(n) for n in re.findall(r'ok=\d+\s+changed=(\d+)', output))


def run_moves(lab, tmp_path, steps, args=()):
    """One play of pmx_migrate steps (-vvv only where a test looks for secrets in the log: it costs time)."""
    return play(lab, tmp_path, MIGRATE, steps, args=args)


# ------------------------------------------------------------------ within a cluster

def test_within_a_cluster_online_stopped_container_and_local_disks(mlab, tmp_path):
    """Online VM (local disks refused, then allowed), stopped VM, container in restart mode; check mode and a
    second run change nothing."""
    web = {'name': 'prod-web01', 'target_node': 'prod-pve2'}
    res = run_moves(mlab, tmp_path, [
        ('check', dict(web, with_local_disks=True), CHECK),
        ('refused', web, MAY_FAIL),
        ('web', dict(web, with_local_disks=True, bwlimit=51200), DIFF),
        ('web_again', dict(web, with_local_disks=True)),
        ('batch', {'name': 'prod-batch01', 'target_node': 'prod-pve3'}),
        ('cache', {'name': 'prod-cache01', 'type': 'lxc', 'target_node': 'prod-pve1', 'restart_timeout': 60}),
    ])
    assert res.rc == 0, res.output
    assert res['check']['changed'] and res['check']['now'] == {'cluster': 'production', 'node': 'prod-pve2',
                                                               'vmid': 100}
    assert res['check']['plan'][0]['params'] == {'target': 'prod-pve2', 'online': 1, 'with-local-disks': 1}
    assert res['check']['preconditions']['local_disks'] == ['local-lvm:vm-100-disk-0']
    # Refused before any write: PVE's own check said the running VM has a local disk.
    assert res['refused']['failed'] and res['refused']['error']['type'] == 'MigrationError'
    assert 'with_local_disks' in res['refused']['msg'] and 'local-lvm:vm-100-disk-0' in res['refused']['msg']
    assert 'nothing was changed' in res['refused']['msg']
    moved = migrations(mlab, 'production', 100)
    assert len(moved) == 1, moved   # one migration: the allowed one (check mode and the refusal made none)
    assert moved[0]['params'].get('with-local-disks') in (1, '1', True) and moved[0]['kind'] == 'local'
    assert str(moved[0]['params'].get('bwlimit')) == '51200'
    web01 = guest(mlab, 'production', 'prod-web01')
    assert web01.node == 'prod-pve2' and web01.status == 'running' and not web01.lock
    assert res['web']['changed'] and res['web']['was']['node'] == 'prod-pve1' and res['web']['node'] == 'prod-pve2'
    assert res['web']['diff'] == {'before': {'cluster': 'production', 'node': 'prod-pve1', 'vmid': 100},
                                  'after': {'cluster': 'production', 'node': 'prod-pve2', 'vmid': 100}}
    assert [t['action'] for t in res['web']['tasks']] == ['migrate'] and ':qmigrate:100:' in res['web']['tasks'][0][
        'upid']
    for name in ('web_again',):
        assert res[name]['changed'] is False and res[name]['tasks'] == [], res[name]
    # A stopped VM moves offline (its local disk copied without asking), and stays stopped.
    batch = guest(mlab, 'production', 'prod-batch01')
    assert batch.node == 'prod-pve3' and batch.status == 'stopped'
    assert 'online' not in res['batch']['plan'][0]['params']
    # A running container: restart mode, running again on the target.
    cache = guest(mlab, 'production', 'prod-cache01')
    assert cache.node == 'prod-pve1' and cache.status == 'running'
    assert res['cache']['plan'][0]['params'] == {'target': 'prod-pve1', 'restart': 1, 'timeout': 60}
    assert migrations(mlab, 'production', 104)[0]['type'] == 'vzmigrate'
    res.assert_no_secret(lab_secrets(mlab))


def test_ha_managed_guest_moves_by_ha_request_and_never_to_another_cluster(mlab, tmp_path):
    mlab.set_ha('staging', 100)
    res = run_moves(mlab, tmp_path, [
        ('ha', {'name': 'stg-web01', 'target_node': 'stg-pve2', 'with_local_disks': True}),
        ('again', {'name': 'stg-web01', 'target_node': 'stg-pve2'}),
        ('remote', {'name': 'stg-web01', 'target_cluster': 'disaster-recovery'}, MAY_FAIL),
    ])
    assert res.rc == 0, res.output
    assert res['ha']['changed'] and res['ha']['ha'] is True and res['ha']['node'] == 'stg-pve2'
    assert ':hamigrate:100:' in res['ha']['tasks'][0]['upid']
    assert res['ha']['plan'][0]['ha'] is True
    assert guest(mlab, 'staging', 'stg-web01').node == 'stg-pve2'
    assert 'ha' in [m['kind'] for m in migrations(mlab, 'staging', 100)]
    assert res['again']['changed'] is False
    assert res['remote']['failed'] and res['remote']['error']['type'] == 'MigrationError'
    assert 'ha-manager remove vm:100' in res['remote']['msg']
    assert guest(mlab, 'disaster-recovery', 'stg-web01') is None
    assert 'remote' not in [m['kind'] for m in migrations(mlab, 'staging', 100)]


# ------------------------------------------------------------------ between clusters

def test_between_clusters_maps_keep_delete_vmid_and_routing(mlab, tmp_path):
    """Storage and bridge maps, source kept then deleted, a taken target vmid, check mode, a second run, the
    router after the move (the live copy is found; no second guest is made where the pattern points), -vvv."""
    post_api(mlab, 'disaster-recovery', 'storage', storage='fast', type='lvmthin', vgname='pve', thinpool='data',
             content='images,rootdir')
    db = {'name': 'prod-db01', 'target_cluster': 'disaster-recovery', 'storage_map': {'local-lvm': 'fast'},
          'bridge_map': {'vmbr0': 'vmbr1'}}
    res = run_moves(mlab, tmp_path, [
        ('check', db, CHECK),
        ('taken', dict(db, target_vmid=100), MAY_FAIL),
        ('lacking', dict(db, storage_map={'local-lvm': 'nope'}, bridge_map={'vmbr0': 'vmbr9'}), MAY_FAIL),
        ('db', db),
        ('db_again', db),
        ('web', {'name': 'prod-web02', 'target_cluster': 'staging', 'target_vmid': 2101, 'target_storage': 'local-lvm',
                 'delete_source': True, 'target_node': 'stg-pve3'}),
        ('web_again', {'name': 'prod-web02', 'target_cluster': 'staging', 'target_node': 'stg-pve3',
                       'delete_source': True}),
    ], args=('-vvv',))
    assert res.rc == 0, res.output
    check = res['check']
    assert check['changed'] and check['target_vmid'] == 106   # 102 is taken on every lab cluster: the next free id
    assert check['preconditions']['target_vmid_reason'].startswith('source vmid taken')
    assert check['mappings'] == {'storage': 'local-lvm:fast', 'bridge': 'vmbr0:vmbr1'}
    assert check['preconditions']['fingerprint_from'] == 'verified TLS connection'
    assert mlab.fingerprint in check['plan'][0]['params']['target-endpoint']
    assert '********' in check['plan'][0]['params']['target-endpoint']
    assert res['taken']['failed'] and 'target_vmid 100 is taken' in res['taken']['msg']
    # What the target lacks is refused before any write, both things named at once.
    lacking = res['lacking']
    assert lacking['failed'] and lacking['error']['type'] == 'MigrationError'
    assert 'nothing was changed' in lacking['msg']
    assert "has no storage nope" in lacking['msg'] and "has no bridge vmbr9" in lacking['msg']
    # Moved, mapped, running; the source kept as PVE keeps it.
    copy = guest(mlab, 'disaster-recovery', 'prod-db01')
    assert copy.vmid == 106 and copy.status == 'running' and not copy.lock
    assert copy.config['scsi0'].startswith('fast:vm-106-disk-0') and 'bridge=vmbr1' in copy.config['net0']
    source = guest(mlab, 'production', 'prod-db01')
    assert source.status == 'stopped' and source.lock == 'migrate'
    assert res['db']['changed'] and res['db']['source_kept'] is True and res['db']['target_vmid'] == 106
    assert res['db']['was'] == {'cluster': 'production', 'node': 'prod-pve3', 'vmid': 102}
    assert res['db']['now']['cluster'] == 'disaster-recovery' and res['db']['cluster'] == 'disaster-recovery'
    remote = migrations(mlab, 'production', 102)
    assert len(remote) == 1 and remote[0]['kind'] == 'remote' and str(remote[0]['target_vmid']) == '106'
    for name in ('db_again',):
        assert res[name]['changed'] is False and res[name]['tasks'] == [], res[name]
    # Deleted source, explicit vmid, then moved on to the node asked for inside the target cluster.
    assert guest(mlab, 'production', 'prod-web02') is None
    web = guest(mlab, 'staging', 'prod-web02')
    assert web.vmid == 2101 and web.node == 'stg-pve3' and web.status == 'running'
    assert [t['action'] for t in res['web']['tasks']] == ['remote_migrate', 'migrate']
    assert res['web_again']['changed'] is False
    # The secret is in the endpoint PVE got, never in what the play printed at -vvv.
    res.assert_no_secret(lab_secrets(mlab))
    assert 'PVEAPIToken=root@pam!pmx=********' in res.output

    # After the move: pmx_vm by name (the pattern points at production, which holds the kept source) manages the
    # live copy and creates nothing; a deleted source's name is not made again where its pattern points.
    after = play(mlab, tmp_path, VM, args=(), steps=[
        ('vm', {'name': 'prod-db01', 'state': 'started'}),
        ('vm_web', {'name': 'prod-web02', 'cores': 2, 'memory': 4096}, MAY_FAIL),
        ('locked', {'name': 'prod-db01', 'cluster': 'production', 'target_cluster': 'disaster-recovery',
                    'delete_source': True}, MAY_FAIL, MIGRATE),
    ])
    assert after.rc == 0, after.output
    assert after['vm']['cluster'] == 'disaster-recovery' and after['vm']['changed'] is False, after['vm']
    assert after['vm_web']['failed'] and after['vm_web']['error']['type'] == 'GuestConflictError'
    assert "cluster 'staging' (VM vmid 2101 on node stg-pve3)" in after['vm_web']['msg']
    assert [g.name for g in mlab.clusters['production'].guests()].count('prod-web02') == 0
    # PVE lets no API token lift the kept source's lock: the rerun with delete_source says how; once it is
    # unlocked (qm unlock on a node), the next rerun deletes it.
    assert after['locked']['failed'] and after['locked']['error']['type'] == 'MigrationError'
    assert 'qm unlock 102' in after['locked']['msg'] and guest(mlab, 'production', 'prod-db01') is not None
    kept = guest(mlab, 'production', 'prod-db01')
    mlab.call(lambda: setattr(kept, 'lock', None))
    cleanup = run_moves(mlab, tmp_path, [
        ('cleanup', {'name': 'prod-db01', 'cluster': 'production', 'target_cluster': 'disaster-recovery',
                     'delete_source': True}),
    ])
    assert cleanup.rc == 0, cleanup.output
    assert cleanup['cleanup']['changed'] and [t['action'] for t in cleanup['cleanup']['tasks']] == ['delete']
    assert guest(mlab, 'production', 'prod-db01') is None and guest(mlab, 'disaster-recovery', 'prod-db01')


def test_failure_midway_then_rerun(mlab, tmp_path):
    """A move whose task fails leaves the source as it was and nothing on the target; the error says so and the
    rerun moves it. A copy left locked on the target is refused with what to do, never started twice."""
    mlab.fail_next_migration('staging', 102, 'storage migration failed: connection lost')
    move = {'name': 'stg-db01', 'target_cluster': 'disaster-recovery', 'target_vmid': 3102}
    res = run_moves(mlab, tmp_path, [('fail', move, MAY_FAIL), ('rerun', move)])
    assert res.rc == 0, res.output
    assert res['fail']['failed'] and res['fail']['error']['type'] == 'TaskError'
    assert 'connection lost' in res['fail']['msg'] and "is still there" in res['fail']['msg']
    assert "cluster 'disaster-recovery' has no copy" in res['fail']['msg']
    assert res['rerun']['changed'] and guest(mlab, 'disaster-recovery', 'stg-db01').vmid == 3102
    assert len(migrations(mlab, 'staging', 102)) == 2   # the failed one and the rerun: nothing more

    # A copy still locked migrate on the target (a move interrupted midway) and the kept source: explained.
    copy = guest(mlab, 'disaster-recovery', 'stg-db01')
    mlab.call(lambda: setattr(copy, 'lock', 'migrate'))
    try:
        stuck = run_moves(mlab, tmp_path, [('stuck', move, MAY_FAIL)])
    finally:
        mlab.call(lambda: setattr(copy, 'lock', None))
    assert stuck['stuck']['failed'] and stuck['stuck']['error']['type'] == 'MigrationError'
    assert 'still locked (migrate)' in stuck['stuck']['msg'] and 'qm destroy 3102' in stuck['stuck']['msg']
    assert guest(mlab, 'staging', 'stg-db01').status == 'stopped'
    assert guest(mlab, 'disaster-recovery', 'stg-db01').status == 'running'


# ------------------------------------------------------------------ the evacuation playbook

def test_evacuation_playbook_empties_a_node_balanced_then_changes_nothing(mlab, tmp_path):
    before = [g for g in mlab.clusters['disaster-recovery'].guests() if g.node == 'dr-pve1' and not
              getattr(g, 'template', False)]
    assert len(before) >= 3
    args = ['-e', 'evacuate_cluster=disaster-recovery', '-e', 'evacuate_node=dr-pve1', '-e', 'evacuate_batch=2']
    first = run_playbook(REPO / 'playbooks' / 'evacuate_node.yml', env_file=mlab.env_file, args=args)
    capture(mlab, 'play', first.output)
    assert first.rc == 0, first.output
    assert [g.name for g in mlab.clusters['disaster-recovery'].guests() if g.node == 'dr-pve1'
            and not getattr(g, 'template', False)] == []
    targets = set(g.node for g in mlab.clusters['disaster-recovery'].guests() if g.name in [b.name for b in before])
    assert targets == {'dr-pve2', 'dr-pve3'}   # spread over both other nodes, not piled on one
    assert '0 left on the node' in first.output
    assert first.output.count('TASK [Move the guest]') == (len(before) + 1) // 2   # batches of two
    second = run_playbook(REPO / 'playbooks' / 'evacuate_node.yml', env_file=mlab.env_file, args=args)
    assert second.rc == 0, second.output
    assert recap_changed_count(second.output) == 0 and '0 guest(s) to move off dr-pve1' in second.output


# ------------------------------------------------------------------ the MCP tool

def test_mcp_migrate_guest_previews_then_moves(mlab):
    within = {'name': 'stg-batch01', 'target_node': 'stg-pve3'}
    between = {'name': 'stg-proxy01', 'target_cluster': 'production', 'target_vmid': 4105}
    results = mcp(mlab, [('migrate_guest', within), ('migrate_guest', between),
                         ('migrate_guest', dict(within, confirm=True)), ('migrate_guest', dict(within, confirm=True))],
                  write=True)
    (e1, preview), (e2, remote_preview), (e3, done), (e4, again) = results
    assert not (e1 or e2 or e3 or e4), results
    assert preview['preview'] is True and preview['changed'] is False and 'stg-pve3' in preview['would']
    assert remote_preview['preview'] is True and remote_preview['target_vmid'] == 4105
    assert '********' in remote_preview['plan'][0]['params']['target-endpoint']
    assert guest(mlab, 'production', 'stg-proxy01') is None
    assert done['changed'] is True and done['node'] == 'stg-pve3'
    assert guest(mlab, 'staging', 'stg-batch01').node == 'stg-pve3'
    assert again['changed'] is False and again['preview'] is True
    assert len(migrations(mlab, 'staging', 103)) == 1 and migrations(mlab, 'staging', 105) == []
    assert not any(s in json.dumps(results) for s in lab_secrets(mlab))


# ------------------------------------------------------------------ ansible-doc

def test_ansible_doc_documents_every_option_with_both_kinds_of_move():
    proc = subprocess.run([str(BIN / 'ansible-doc'), '--json', MIGRATE], env=ansible_env(), capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)[MIGRATE]
    import importlib.util
    spec = importlib.util.spec_from_file_location('pmx_migrate', REPO / 'plugins' / 'modules' / 'pmx_migrate.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    options = doc['doc']['options']
    for option in module.argument_spec():
        assert option in options and options[option]['description'], option
    examples = doc['examples']
    assert 'target_node: prod-pve2' in examples and 'target_cluster: disaster-recovery' in examples
    assert 'storage_map:' in examples and 'bridge_map:' in examples and 'delete_source: true' in examples
    text = subprocess.run([str(BIN / 'ansible-doc'), MIGRATE], env=ansible_env(), capture_output=True, text=True,
                          timeout=120, check=False).stdout
    assert 'MODULE pmx.multicluster.pmx_migrate' in text and 'RETURN VALUES' in text


def test_a_move_to_a_cluster_that_is_down_is_refused_before_any_write(mlab, tmp_path):
    """The target cluster unreachable: the move fails naming it, in check mode and for real; nothing was sent
    to the source (no migration recorded) and the guest stays where it was."""
    down = env_file(mlab, tmp_path, replace={'PROXMOX_CLUSTER_staging_API_URL': DEAD})
    before = len(migrations(mlab, 'production'))
    res = play(mlab, tmp_path, MIGRATE, [
        ('check', {'name': 'prod-proxy01', 'target_cluster': 'staging'}, dict(CHECK, **MAY_FAIL)),
        ('move', {'name': 'prod-proxy01', 'target_cluster': 'staging'}, MAY_FAIL),
    ], env=down, args=())
    for name in ('check', 'move'):
        assert res[name]['failed'] and 'staging' in res[name]['msg'], res[name]
        assert 'is unreachable' in res[name]['msg'] and 'PROXMOX_CLUSTER_staging_API_URL' in res[name]['msg']
    assert len(migrations(mlab, 'production')) == before
    proxy = guest(mlab, 'production', 'prod-proxy01')
    assert proxy.status == 'stopped' and proxy.node == 'prod-pve1' and not proxy.lock

