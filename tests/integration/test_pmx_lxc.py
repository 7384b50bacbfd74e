"""pmx_lxc through the real ansible-playbook, against the fakepve lab (a fresh lab per test).

Create and update run four times (check, apply, check, apply), as for pmx_vm; check mode is
proven harmless by reading the fake's state directly.
"""

import copy
import json

from conftest import failed_message, lab_secrets, run_steps, task_actions

CT = 'pmx.multicluster.pmx_lxc'
TEMPLATE = 'debian-12-standard_12.7-1_amd64.tar.zst'
OSTEMPLATE = 'local:vztmpl/' + TEMPLATE
PASSWORD = 'Ct-r00t-S3cret'
CHECK = {'check_mode': True}
DIFF = {'diff': True}
MAY_FAIL = {'ignore_errors': True}


def ct_named(cluster, name):
    """The fake's container with this hostname in a lab cluster, or None (and never two)."""
    found = [ct for ct in cluster.pve.cts if ct.name == name]
    assert len(found) <= 1, 'duplicate containers named %s: %s' % (name, [ct.vmid for ct in found])
    return found[0] if found else None


def snapshot(lab):
    """What check mode must leave alone: every container's config, pending changes, status and node."""
    return dict((name, sorted((ct.vmid, copy.deepcopy(ct.config), dict(ct.pending), ct.status, ct.node)
                              for ct in c.pve.cts)) for name, c in lab.clusters.items())


def play(lab, tmp_path, tasks, *args):
    return run_steps(lab, tmp_path, CT, tasks, *args)



def with_template(lab, *clusters):
    for name in clusters:
        lab.clusters[name].pve.store_file('local', TEMPLATE, 120 * 1024 ** 2, content='vztmpl')


def new_ct(name, **extra):
    return dict({'hostname': name, 'ostemplate': OSTEMPLATE, 'rootfs': 'local-lvm:8', 'cores': 2, 'memory': 1024,
                 'swap': 256, 'nets': {'net0': 'name=eth0,bridge=vmbr0,ip=10.0.0.5/24,gw=10.0.0.1'},
                 'mounts': {'mp0': 'local-lvm:4,mp=/srv/data'}, 'features': {'nesting': True, 'keyctl': True},
                 'unprivileged': True, 'nameserver': '10.0.0.2', 'searchdomain': 'example.com',
                 'tags': ['cache', 'App'], 'onboot': True, 'description': 'made by pmx_lxc\n',
                 'password': PASSWORD, 'ssh_public_keys': 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample root@x'},
                **extra)


# ------------------------------------------------------------------ create across clusters

def test_create_by_pattern_check_apply_check_apply(fresh_lab, tmp_path):
    """prod-* and stg-* containers land on their clusters; check mode writes nothing; idempotent; no password
    at -vvv."""
    with_template(fresh_lab, 'production', 'staging')
    prod, stg = fresh_lab.clusters['production'], fresh_lab.clusters['staging']
    before = snapshot(fresh_lab)

    check = play(fresh_lab, tmp_path, [('prod', new_ct('prod-ct01')), ('stg', new_ct('stg-ct01'))],
                 '--check', '--diff', '-vvv')
    assert check.rc == 0, check.output
    assert snapshot(fresh_lab) == before, 'check mode changed the clusters'
    assert check['prod']['changed'] and check['stg']['changed']
    assert (check['prod']['cluster'], check['prod']['route_reason']) == ('production', "pattern 'prod-*'")
    assert (check['stg']['cluster'], check['stg']['route_reason']) == ('staging', "pattern 'stg-*'")
    assert check['prod']['vmid'] == 106 and check['prod']['tasks'] == []
    assert '+    "memory": 1024' in check.stdout and '"ostemplate": "%s"' % OSTEMPLATE in check.stdout

    runs = play(fresh_lab, tmp_path, [
        ('prod', new_ct('prod-ct01'), DIFF), ('stg', new_ct('stg-ct01')),
        ('prod_check', new_ct('prod-ct01'), CHECK), ('stg_check', new_ct('stg-ct01'), CHECK),
        ('prod_again', new_ct('prod-ct01')), ('stg_again', new_ct('stg-ct01'))], '-vvv')
    assert runs.rc == 0, runs.output
    for lab_cluster, res, other in ((prod, runs['prod'], 'stg-ct01'), (stg, runs['stg'], 'prod-ct01')):
        assert res['changed'] is True and task_actions(res) == ['create'] and res['node_reason'] == 'most free memory'
        ct = ct_named(lab_cluster, res['name'])
        assert ct is not None and ct.vmid == res['vmid'] and ct.node == res['node'] and ct.status == 'stopped'
        cfg = ct.config
        assert cfg['rootfs'] == 'local-lvm:vm-%d-disk-0,size=8G' % ct.vmid
        assert cfg['mp0'] == 'local-lvm:vm-%d-disk-1,mp=/srv/data,size=4G' % ct.vmid
        assert 'ip=10.0.0.5/24' in cfg['net0'] and 'gw=10.0.0.1' in cfg['net0'] and 'hwaddr=' in cfg['net0']
        assert cfg['features'] == 'keyctl=1,nesting=1' and cfg['tags'] == 'app;cache'
        assert str(cfg['cores']) == '2' and str(cfg['swap']) == '256' and cfg['nameserver'] == '10.0.0.2'
        assert ct_named(lab_cluster, other) is None  # nothing leaked to the wrong cluster
    assert ct_named(fresh_lab.clusters['disaster-recovery'], 'prod-ct01') is None
    for name in ('prod_check', 'stg_check', 'prod_again', 'stg_again'):
        res = runs[name]
        assert res['changed'] is False and res['tasks'] == [], (name, res)
        assert res['diff'] == {'before': {}, 'after': {}}
    for result in (check, runs):
        assert PASSWORD not in result.output and PASSWORD not in json.dumps(result.results)
        assert 'AAAAIExample' not in result.output  # ssh_public_keys is no_log too
        result.assert_no_secret(lab_secrets(fresh_lab))


# ------------------------------------------------------------------ update, power, clone, template, absent

def test_update_power_template_clone_absent(fresh_lab, tmp_path):
    """memory/cores with --diff; start/stop/restart; template; linked clone of it; absent; each idempotent."""
    pve = fresh_lab.clusters['production'].pve
    ct = pve.ct(105)  # prod-proxy01, stopped, 1 core, 512 MiB, features nesting=1
    update = {'name': 'prod-proxy01', 'cores': 2, 'memory': 1024, 'features': 'nesting=1',
              'nets': {'net0': 'name=eth0,bridge=vmbr0,ip=dhcp'}, 'tags': ['production', 'proxy']}
    before = snapshot(fresh_lab)
    check = play(fresh_lab, tmp_path, [('check', update)], '--check', '--diff')
    assert check.rc == 0 and check['check']['changed'] is True, check.output
    assert snapshot(fresh_lab) == before
    assert check['check']['diff'] == {'before': {'cores': 1, 'memory': 512}, 'after': {'cores': 2, 'memory': 1024}}

    clone = {'hostname': 'prod-proxy02', 'clone': 'prod-proxy01', 'memory': 2048, 'state': 'started'}
    absent = {'hostname': 'prod-proxy02', 'state': 'absent', 'purge': True}
    steps = [
        ('apply', update, DIFF), ('apply_check', update, CHECK), ('apply_again', update),
        ('start', {'name': 'prod-proxy01', 'state': 'started'}),
        ('start_again', {'name': 'prod-proxy01', 'state': 'started'}),
        ('restart', {'name': 'prod-proxy01', 'state': 'restarted'}),
        ('stop', {'name': 'prod-proxy01', 'state': 'stopped'}),
        ('stop_again', {'vmid': 105, 'cluster': 'production', 'state': 'stopped'}),
        ('template', {'name': 'prod-proxy01', 'state': 'template'}),
        ('template_again', {'name': 'prod-proxy01', 'state': 'template'}),
        ('clone_check', clone, CHECK), ('clone', clone), ('clone_again', clone),
        ('absent_check', absent, CHECK), ('absent', absent, DIFF), ('absent_again', absent)]
    result = play(fresh_lab, tmp_path, steps)
    assert result.rc == 0, result.output

    apply = result['apply']
    assert apply['changed'] is True and task_actions(apply) == ['update'] and apply['pending'] == []
    assert '-    "memory": 512' in result.stdout and '+    "memory": 1024' in result.stdout
    assert str(ct.config['memory']) == '1024' and str(ct.config['cores']) == '2'
    assert result['apply_check']['changed'] is False and result['apply_again']['changed'] is False

    expected = {'start': (True, 'running', ['start']), 'start_again': (False, 'running', []),
                'restart': (True, 'running', ['reboot']), 'stop': (True, 'stopped', ['shutdown']),
                'stop_again': (False, 'stopped', []), 'template': (True, 'stopped', ['template']),
                'template_again': (False, 'stopped', [])}
    for name, want in expected.items():
        res = result[name]
        assert (res['changed'], res['status'], task_actions(res)) == want, (name, res)
    assert result['template_again']['template'] is True and ct.template
    assert ct.config['rootfs'].startswith('local-lvm:basevol-105-disk-0')

    # Clone by template name: linked (PVE's default for a template), then configured and started.
    assert result['clone_check']['changed'] is True and result['clone_check']['clone_source'] == {
        'vmid': 105, 'name': 'prod-proxy01', 'node': 'prod-pve1', 'template': True}
    res = result['clone']
    assert res['changed'] is True and task_actions(res) == ['clone', 'update', 'start'], res
    assert res['vmid'] == 106 and res['node'] == 'prod-pve1' and res['node_reason'] == 'clone source node'
    assert res['status'] == 'running' and result['clone_again']['changed'] is False
    # absent: check mode deleted nothing; the real run stopped and destroyed the running clone.
    assert result['absent_check']['changed'] is True and result['absent_check']['tasks'] == []
    assert task_actions(result['absent']) == ['stop', 'delete']
    assert result['absent']['diff']['before']['hostname'] == 'prod-proxy02'
    assert str(result['absent']['diff']['before']['memory']) == '2048'
    assert pve.ct(106) is None and result['absent_again']['changed'] is False
    assert result['absent_again']['status'] == 'absent'


def test_stop_with_force(fresh_lab, tmp_path):
    """A container that does not shut down in time: a clear error, or with force a hard stop."""
    pve = fresh_lab.clusters['staging'].pve
    pve.time_scale = 0.02
    pve.ct(104).shutdown_secs = 10000
    result = play(fresh_lab, tmp_path, [
        ('stuck', {'name': 'stg-cache01', 'state': 'stopped', 'timeout': 3}, MAY_FAIL),
        ('forced', {'name': 'stg-cache01', 'state': 'stopped', 'timeout': 3, 'force': True})])
    assert result.rc == 0, result.output
    msg = failed_message(result, 'stuck')
    assert "container 'stg-cache01' (vmid 104) did not shut down within 3s" in msg and 'force: true' in msg
    forced = result['forced']
    assert forced['forced'] is True and task_actions(forced) == ['shutdown', 'stop'] and pve.ct(104).status == 'stopped'


# ------------------------------------------------------------------ failures: clear, nothing half-done

def test_bad_input_errors(fresh_lab, tmp_path):
    """No ostemplate, a missing ostemplate, bad rootfs specs, an unprivileged flip: clear errors or warnings."""
    with_template(fresh_lab, 'production')
    before = snapshot(fresh_lab)
    result = play(fresh_lab, tmp_path, [
        ('no_template', {'hostname': 'prod-ct09', 'memory': 512}, MAY_FAIL),
        ('missing_template', new_ct('prod-ct09', ostemplate='local:vztmpl/nothere_12_amd64.tar.zst'), MAY_FAIL),
        ('bad_size', new_ct('prod-ct09', rootfs='local-lvm:lots'), MAY_FAIL),
        ('bad_storage', new_ct('prod-ct09', rootfs='nosuch:8'), MAY_FAIL),
        ('unknown_source', {'hostname': 'prod-ct09', 'clone': 'prod-tpl-nothere'}, MAY_FAIL),
        ('flip', {'hostname': 'prod-cache01', 'unprivileged': False})])
    assert result.rc == 0, result.output
    msg = failed_message(result, 'no_template')
    assert "container 'prod-ct09' does not exist, and a new container needs ostemplate (or clone" in msg, msg
    msg = failed_message(result, 'missing_template')
    assert "volume 'local:vztmpl/nothere_12_amd64.tar.zst' does not exist" in msg, msg
    msg = failed_message(result, 'bad_size')
    assert 'rootfs' in msg and 'lots' in msg, msg
    msg = failed_message(result, 'bad_storage')
    assert "storage 'nosuch' does not exist" in msg, msg
    assert "clone source 'prod-tpl-nothere' not found" in failed_message(result, 'unknown_source')
    assert result['flip']['changed'] is False
    assert 'unprivileged is 1 and cannot be changed after creation' in result.output
    assert snapshot(fresh_lab) == before and ct_named(fresh_lab.clusters['production'], 'prod-ct09') is None


def test_locked_container_and_failed_task(fresh_lab, tmp_path):
    """A lock that goes away is waited for; one that stays, and a failed start, give clear errors."""
    pve = fresh_lab.clusters['production'].pve
    pve.time_scale = 0.02
    fresh_lab.call(pve.hold_config_lock(105, 50))  # another task holds the config lock for ~1 s
    pve.snapshot_lock(104, 'backup')                # a lock that stays
    pve.ct(105).start_error = 'startup for container 105 failed'
    result = play(fresh_lab, tmp_path, [
        ('waited', {'name': 'prod-proxy01', 'memory': 768, 'timeout': 30}),
        ('locked', {'name': 'prod-cache01', 'memory': 2048, 'timeout': 2}, MAY_FAIL),
        ('locked_stop', {'name': 'prod-cache01', 'state': 'stopped', 'timeout': 2}, MAY_FAIL),
        ('start', {'name': 'prod-proxy01', 'state': 'started'}, MAY_FAIL)])
    assert result.rc == 0, result.output
    assert result['waited']['changed'] is True and str(pve.ct(105).config['memory']) == '768'
    msg = failed_message(result, 'locked')
    assert "container 'prod-cache01' (vmid 104) is locked (backup) and stayed locked for 2s" in msg, msg
    assert "'pct unlock 104'" in msg
    assert 'is locked (backup)' in failed_message(result, 'locked_stop')
    assert str(pve.ct(104).config['memory']) == '1024' and pve.ct(104).status == 'running'
    msg = failed_message(result, 'start')
    assert 'task vzstart on node prod-pve1 failed: startup for container 105 failed' in msg, msg
    assert pve.ct(105).status == 'stopped'

