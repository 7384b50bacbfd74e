"""pmx_vm through the real ansible-playbook, against the fakepve lab (a fresh lab per test).

Create and update are each tried four times, as amazon.aws does: check (changed), apply (changed),
check (not changed), apply (not changed); check mode is proven harmless by reading the fake's
state directly.
"""

import copy
import json
import re

from conftest import REPO, failed_message, lab_secrets, run_playbook, run_steps, task_actions

VM = 'pmx.multicluster.pmx_vm'


def vm_named(cluster, name):
    """The fake's VM with this name in a lab cluster, or None (and never two)."""
    found = [vm for vm in cluster.pve.vms if vm.name == name]
    assert len(found) <= 1, 'duplicate VMs named %s: %s' % (name, [vm.vmid for vm in found])
    return found[0] if found else None


def snapshot(lab):
    """Everything check mode must leave alone: every VM's config, pending changes, status and node."""
    return dict((name, sorted((vm.vmid, copy.deepcopy(vm.config), dict(vm.pending), vm.status, vm.node, vm.template)
                              for vm in c.pve.vms)) for name, c in lab.clusters.items())


def play(lab, tmp_path, tasks, *args):
    return run_steps(lab, tmp_path, VM, tasks, *args)


CHECK = {'check_mode': True}
DIFF = {'diff': True}
MAY_FAIL = {'ignore_errors': True}



# ------------------------------------------------------------------ create, routed by name

def test_create_by_pattern_check_apply_check_apply(fresh_lab, tmp_path):
    """prod-* and stg-* VMs with no cluster given land on the right clusters; idempotent; check mode writes nothing."""
    def params(name):
        return {'name': name, 'cores': 2, 'memory': 2048, 'disks': {'scsi0': 'local-lvm:16,iothread=1'},
                'nets': {'net0': 'virtio,bridge=vmbr0'}, 'tags': ['web', 'app'], 'onboot': True, 'agent': True,
                'description': 'made by pmx_vm\n'}
    prod, stg = fresh_lab.clusters['production'], fresh_lab.clusters['staging']
    before = snapshot(fresh_lab)

    check = play(fresh_lab, tmp_path, [('prod', params('prod-app01')), ('stg', params('stg-app01'))],
                 '--check', '--diff')
    assert check.rc == 0, check.output
    assert check['prod']['changed'] and check['stg']['changed']
    assert snapshot(fresh_lab) == before, 'check mode changed the clusters'
    assert check['prod']['cluster'] == 'production' and check['prod']['route_reason'] == "pattern 'prod-*'"
    assert check['stg']['cluster'] == 'staging' and check['stg']['route_reason'] == "pattern 'stg-*'"
    assert check['prod']['vmid'] == 106  # the next free id, read but not taken
    assert '+    "memory": 2048' in check.stdout  # --diff shows the config to be created

    runs = play(fresh_lab, tmp_path, [
        ('prod', params('prod-app01'), DIFF), ('stg', params('stg-app01')),
        ('prod_check', params('prod-app01'), CHECK), ('stg_check', params('stg-app01'), CHECK),
        ('prod_again', params('prod-app01')), ('stg_again', params('stg-app01'))])
    assert runs.rc == 0, runs.output
    assert runs['prod']['changed'] and runs['stg']['changed']
    for lab_cluster, res, other in ((prod, runs['prod'], 'stg-app01'), (stg, runs['stg'], 'prod-app01')):
        vm = vm_named(lab_cluster, res['name'])
        assert vm is not None and vm.vmid == res['vmid'] and vm.node == res['node']
        assert res['node_reason'] == 'most free memory' and task_actions(res) == ['create']
        assert str(vm.config['cores']) == '2' and str(vm.config['memory']) == '2048'
        assert vm.config['net0'].startswith('virtio=') and 'bridge=vmbr0' in vm.config['net0']
        assert vm.config['scsi0'].startswith('local-lvm:vm-%d-disk-0' % vm.vmid)
        assert vm.config['tags'] == 'app;web'
        assert vm_named(lab_cluster, other) is None  # nothing leaked to the wrong cluster
    assert vm_named(fresh_lab.clusters['disaster-recovery'], 'prod-app01') is None
    for name in ('prod_check', 'stg_check', 'prod_again', 'stg_again'):
        assert runs[name]['changed'] is False, runs[name]
        assert runs[name]['diff'] == {'before': {}, 'after': {}} and runs[name]['tasks'] == []
    runs.assert_no_secret(lab_secrets(fresh_lab))


def test_deploy_by_pattern_playbook(fresh_lab):
    """playbooks/deploy_by_pattern.yml runs against the lab, says where each VM went, and converges."""
    playbook = REPO / 'playbooks' / 'deploy_by_pattern.yml'
    first = run_playbook(playbook, env_file=fresh_lab.env_file)
    assert first.rc == 0, first.output
    assert "prod-app01     -> production (pattern 'prod-*')" in first.stdout
    assert "stg-dbtest01   -> staging (pattern 'stg-*'), node stg-pve1 (most free memory)" in first.stdout
    assert vm_named(fresh_lab.clusters['production'], 'prod-app02').status == 'running'
    assert vm_named(fresh_lab.clusters['staging'], 'stg-app01') is not None
    second = run_playbook(playbook, env_file=fresh_lab.env_file)
    assert second.rc == 0 and 'changed=0' in second.stdout, second.output


# ------------------------------------------------------------------ update, diff, pending

def test_update_check_diff_apply_and_pending(fresh_lab, tmp_path):
    """memory/cores and a net of a running VM: four runs, --diff, MAC kept, pending keys, restart_on_change."""
    pve = fresh_lab.clusters['production'].pve
    vm = pve.vm(100)  # prod-web01, running, 2 cores, 4096 MiB, net0 virtio=<mac>,bridge=vmbr0
    mac = vm.config['net0'].split(',')[0].split('=')[1]
    net0 = vm.config['net0']
    params = {'name': 'prod-web01', 'cores': 4, 'memory': 8192, 'nets': {'net0': 'virtio,bridge=vmbr1,firewall=1'}}
    before = snapshot(fresh_lab)

    result = play(fresh_lab, tmp_path, [('check', params)], '--check', '--diff')
    check = result['check']
    assert result.rc == 0 and check['changed'] is True, result.output
    assert snapshot(fresh_lab) == before, 'check mode changed the cluster'
    assert sorted(check['diff']['before']) == ['cores', 'memory', 'net0']
    assert str(check['diff']['before']['memory']) == '4096' and check['diff']['before']['net0'] == net0
    assert check['diff']['after']['memory'] == 8192
    assert check['route_reason'] == "pattern 'prod-*'" and check['vmid'] == 100

    result = play(fresh_lab, tmp_path, [
        ('apply', params, DIFF), ('check', params, CHECK), ('again', params),
        ('restart', dict(params, restart_on_change=True)), ('restart_again', dict(params, restart_on_change=True))])
    assert result.rc == 0, result.output
    apply = result['apply']
    assert apply['changed'] is True
    assert re.search(r'-\s+"memory": "?4096"?,', result.stdout) and '+    "memory": 8192,' in result.stdout
    assert '"net0": "virtio=%s,bridge=vmbr1,firewall=1"' % mac in result.stdout  # the MAC was kept
    # Running: PVE keeps the changes pending until the next boot, and the module says so.
    assert apply['pending'] == ['cores', 'memory', 'net0'] and apply['status'] == 'running'
    assert task_actions(apply) == ['update']
    for name in ('check', 'again'):
        assert result[name]['changed'] is False and result[name]['pending'] == ['cores', 'memory', 'net0']
    # restart_on_change: the pending changes are applied by a reboot, once.
    assert result['restart']['changed'] is True and task_actions(result['restart']) == ['reboot']
    assert result['restart']['pending'] == [] and vm.pending == {}
    assert result['restart_again']['changed'] is False
    assert str(vm.config['cores']) == '4' and str(vm.config['memory']) == '8192' and vm.status == 'running'
    assert vm.config['net0'] == 'virtio=%s,bridge=vmbr1,firewall=1' % mac


def test_equivalent_formats_are_not_changes(fresh_lab, tmp_path):
    """PVE's formats are normalised: tag order/case, memory as text, 1/true, MAC, description newline."""
    pve = fresh_lab.clusters['staging'].pve
    vm = pve.vm(103)  # stg-batch01, stopped
    vm.config['description'] = 'batch runner\n'
    params = {'name': 'stg-batch01', 'tags': ['Staging', 'batch'], 'memory': 2048, 'cores': 2, 'sockets': 1,
              'agent': True, 'onboot': True, 'nets': {'net0': 'virtio,bridge=vmbr0'}, 'description': 'batch runner',
              'boot': 'order=scsi0;ide2;net0', 'disks': {'scsi0': 'local-lvm:32,iothread=1'},
              'cpu': 'x86-64-v2-AES', 'ostype': 'l26', 'scsihw': 'virtio-scsi-single',
              'config': {'ide2': 'none,media=cdrom', 'smbios1': vm.config['smbios1']}}
    before = snapshot(fresh_lab)
    result = play(fresh_lab, tmp_path, [
        ('check', params, CHECK), ('apply', params),
        # A disk named on another storage is a warning, not a change (moved only with move_disks).
        ('other_storage', dict(params, disks={'scsi0': 'fast:32'})),
        # update: false only creates; it leaves an existing VM alone.
        ('no_update', {'name': 'stg-batch01', 'memory': 1024, 'update': False})])
    assert result.rc == 0, result.output
    for name in ('check', 'apply', 'other_storage', 'no_update'):
        assert result[name]['changed'] is False, result[name]
        assert result[name]['diff'] == {'before': {}, 'after': {}} and result[name]['cluster'] == 'staging'
    assert 'disk scsi0 is on storage local-lvm, not fast (it is moved only with move_disks: true)' in result.output
    assert snapshot(fresh_lab) == before


# ------------------------------------------------------------------ clone, power, template, absent

def test_clone_from_template_by_name(fresh_lab, tmp_path):
    """Clone by template name, then apply config; four runs; a linked clone by vmid onto another node."""
    pve = fresh_lab.clusters['production'].pve
    template = pve.vm(9000)
    params = {'name': 'prod-clone01', 'clone': 'prod-tpl-debian12', 'full': True, 'cores': 4, 'memory': 4096,
              'nets': {'net0': 'virtio,bridge=vmbr0,tag=20'}, 'ciuser': 'admin', 'cipassword': 'S3cret-pw',
              'sshkeys': 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample admin@example',
              'ipconfig': {'ipconfig0': 'ip=dhcp'}, 'tags': ['clone']}
    before = snapshot(fresh_lab)
    result = play(fresh_lab, tmp_path, [('check', params)], '--check', '--diff')
    check = result['check']
    assert result.rc == 0 and check['changed'] is True, result.output
    assert check['clone_source'] == {'vmid': 9000, 'name': 'prod-tpl-debian12', 'node': 'prod-pve2', 'template': True}
    assert check['vmid'] == 106 and check['node'] == 'prod-pve2'
    assert snapshot(fresh_lab) == before
    assert 'S3cret-pw' not in result.output

    linked = {'name': 'prod-linked01', 'clone': '9000', 'full': False, 'node': 'prod-pve3', 'memory': 1024}
    result = play(fresh_lab, tmp_path, [('apply', params), ('check', params, CHECK), ('again', params),
                                        ('linked', linked)])
    assert result.rc == 0, result.output
    apply = result['apply']
    assert apply['changed'] is True and task_actions(apply) == ['clone', 'update']
    clone = vm_named(fresh_lab.clusters['production'], 'prod-clone01')
    assert clone.vmid == apply['vmid'] == 106 and clone.node == 'prod-pve2' == apply['node']
    assert apply['node_reason'] == 'clone source node'
    assert str(clone.config['cores']) == '4' and clone.config['ciuser'] == 'admin' and clone.config['tags'] == 'clone'
    assert 'tag=20' in clone.config['net0'] and clone.config['ipconfig0'] == 'ip=dhcp'
    assert clone.config['net0'].split(',')[0] != template.config['net0'].split(',')[0]  # a new MAC
    assert clone.config['scsi0'].startswith('local-lvm:vm-106-disk-0')  # full clone: its own disk
    assert 'S3cret-pw' not in result.output and 'S3cret-pw' not in json.dumps(result.results)
    for name in ('check', 'again'):
        assert result[name]['changed'] is False, result[name]

    assert result['linked']['changed'] is True and result['linked']['node'] == 'prod-pve3'
    assert vm_named(fresh_lab.clusters['production'], 'prod-linked01').node == 'prod-pve3'
    assert ('POST', '/api2/json/nodes/prod-pve2/qemu/9000/clone',
            b'newid=107&name=prod-linked01&full=0&target=prod-pve3') in pve.requests


def test_power_cycle_template_and_absent(fresh_lab, tmp_path):
    """start, restart, stop, template and absent, each idempotent; check mode deletes nothing."""
    pve = fresh_lab.clusters['staging'].pve
    vm = pve.vm(103)  # stg-batch01, stopped
    steps = [
        ('start', 'started', True, 'running', ['start']),
        ('start_again', 'started', False, 'running', []),
        ('reboot', 'restarted', True, 'running', ['reboot']),
        ('stop', 'stopped', True, 'stopped', ['shutdown']),
        ('stop_again', 'stopped', False, 'stopped', []),
        ('restart_stopped', 'restarted', True, 'running', ['start']),
        ('template', 'template', True, 'stopped', ['shutdown', 'template']),
        ('template_again', 'template', False, 'stopped', []),
    ]
    absent = {'name': 'stg-web01', 'state': 'absent', 'purge': True}
    power = [(step[0], {'name': 'stg-batch01', 'state': step[1]}) for step in steps]
    result = play(fresh_lab, tmp_path, power + [
        ('start_template', {'name': 'stg-batch01', 'state': 'started'}, MAY_FAIL),
        ('absent_check', absent, CHECK), ('absent', absent, DIFF), ('absent_again', absent)])
    assert result.rc == 0, result.output
    for name, state, changed, status, done in steps:
        res = result[name]
        assert (res['changed'], res['status'], task_actions(res)) == (changed, status, done), (name, res)
    assert result['template_again']['template'] is True and vm.template and vm.status == 'stopped'
    assert result['reboot']['diff'] == {'before': {'status': 'running'}, 'after': {'status': 'running'}}
    assert result['stop']['diff'] == {'before': {'status': 'running'}, 'after': {'status': 'stopped'}}
    assert 'is a template; a template cannot be started' in failed_message(result, 'start_template')

    # Check mode deleted nothing: the real run after it still found the running VM, stopped and deleted it.
    assert result['absent_check']['changed'] is True and result['absent_check']['tasks'] == []
    assert result['absent']['changed'] is True and task_actions(result['absent']) == ['stop', 'delete']
    assert result['absent']['diff']['after'] == {} and result['absent']['diff']['before']['name'] == 'stg-web01'
    assert pve.vm(100) is None
    assert not [v for v in pve.storages['local-lvm'].get('volumes', {}) if 'vm-100-' in v]
    assert result['absent_again']['changed'] is False and result['absent_again']['status'] == 'absent'
    delete = pve.tasks[result['absent']['tasks'][-1]['upid']]
    assert 'purging VM 100 from related configurations..' in delete['log']  # purge was asked for


def test_stop_slow_shutdown_and_force(fresh_lab, tmp_path):
    """A slow shutdown within the timeout is waited for; past it, force stops hard, else a clear error."""
    pve = fresh_lab.clusters['production'].pve
    pve.time_scale = 0.02          # 1 PVE second = 20 ms of real time
    slow, stuck = pve.vm(100), pve.vm(101)
    slow.shutdown_secs = 40        # 0.8 s real: within a 60 s timeout
    stuck.shutdown_secs = 10000    # never within the timeout
    result = play(fresh_lab, tmp_path, [
        ('slow', {'name': 'prod-web01', 'state': 'stopped', 'timeout': 60}),
        ('stuck', {'name': 'prod-web02', 'state': 'stopped', 'timeout': 5}, MAY_FAIL),
        ('forced', {'name': 'prod-web02', 'state': 'stopped', 'timeout': 5, 'force': True})])
    assert result.rc == 0, result.output
    assert result['slow']['changed'] is True and 'forced' not in result['slow'] and slow.status == 'stopped'
    msg = failed_message(result, 'stuck')
    assert "VM 'prod-web02' (vmid 101) did not shut down within 5s" in msg and 'force: true' in msg
    assert 'VM quit/powerdown failed - got timeout' in msg
    forced = result['forced']
    assert forced['changed'] is True and forced['forced'] is True and task_actions(forced) == ['shutdown', 'stop']
    assert forced['tasks'][0]['exitstatus'] == 'VM quit/powerdown failed - got timeout'
    assert stuck.status == 'stopped'


# ------------------------------------------------------------------ failures: clear, nothing half-done

def test_ambiguous_and_duplicate_names(fresh_lab, tmp_path):
    prod, stg = fresh_lab.clusters['production'].pve, fresh_lab.clusters['staging'].pve
    # No pattern matches, and the VM exists in two clusters: the router cannot choose.
    prod.add_vm(300, 'shared-app', node='prod-pve1')
    stg.add_vm(300, 'shared-app', node='stg-pve1')
    # Two VMs with one name inside a cluster.
    prod.add_vm(301, 'prod-dup01', node='prod-pve1')
    prod.add_vm(302, 'prod-dup01', node='prod-pve2')
    before = snapshot(fresh_lab)
    result = play(fresh_lab, tmp_path, [
        ('ambiguous', {'name': 'shared-app', 'memory': 1024}, MAY_FAIL),
        ('duplicate', {'name': 'prod-dup01', 'memory': 1024}, MAY_FAIL),
        ('disagree', {'name': 'prod-web01', 'vmid': 101, 'memory': 1024}, MAY_FAIL),
        ('explicit', {'name': 'shared-app', 'cluster': 'staging', 'memory': 1024}, CHECK)])
    assert result.rc == 0, result.output
    msg = failed_message(result, 'ambiguous')
    assert "a guest with name 'shared-app' exists in several clusters: production, staging" in msg
    assert 'Give cluster: explicitly' in msg
    assert "cluster 'production' has 2 VMs named 'prod-dup01' (vmids 301, 302)" in failed_message(result, 'duplicate')
    assert "vmid 101 is named 'prod-web02', not 'prod-web01'" in failed_message(result, 'disagree')
    assert snapshot(fresh_lab) == before
    # With cluster given, the same name is fine.
    assert result['explicit']['cluster'] == 'staging' and result['explicit']['route_reason'] == 'explicit'


def test_unknown_template_and_invalid_parameter(fresh_lab, tmp_path):
    before = snapshot(fresh_lab)
    result = play(fresh_lab, tmp_path, [
        ('unknown', {'name': 'prod-new01', 'clone': 'prod-tpl-nothere'}, MAY_FAIL),
        ('invalid_create', {'name': 'prod-new01', 'memory': 1024, 'config': {'cores': 'lots'}}, MAY_FAIL),
        ('invalid_update', {'name': 'prod-web01', 'config': {'vga': 'rainbow'}}, MAY_FAIL),
        ('twice', {'name': 'prod-web01', 'memory': 1024, 'config': {'memory': 2048}}, MAY_FAIL),
        ('unknown_cluster', {'name': 'prod-web01', 'cluster': 'prodution', 'memory': 1024}, MAY_FAIL)])
    assert result.rc == 0, result.output
    assert "clone source 'prod-tpl-nothere' not found; templates there: prod-tpl-debian12" \
        in failed_message(result, 'unknown')
    # PVE's 400 message is passed through, with the field.
    msg = failed_message(result, 'invalid_create')
    assert 'POST /nodes/prod-pve1/qemu failed (HTTP 400 Parameter verification failed.)' in msg and 'cores:' in msg
    msg = failed_message(result, 'invalid_update')
    assert 'HTTP 400 Parameter verification failed.' in msg and 'vga:' in msg, msg
    assert "the VM key 'memory' is given twice (in memory and in config)" in failed_message(result, 'twice')
    assert "Did you mean 'production'?" in failed_message(result, 'unknown_cluster')
    assert snapshot(fresh_lab) == before and vm_named(fresh_lab.clusters['production'], 'prod-new01') is None


def test_task_error_and_half_done_clone_converges(fresh_lab, tmp_path):
    pve = fresh_lab.clusters['production'].pve
    pve.fail('POST', '/nodes/prod-pve1/qemu/103/status/start', error='qemu_exited_code')
    # The clone succeeds, the config update after it fails once: the next run finds the clone and converges.
    pve.fail('POST', '/nodes/prod-pve2/qemu/106/config', 500, 'disk full (injected)', times=1)
    half = {'name': 'prod-half01', 'clone': 'prod-tpl-debian12', 'cores': 8}
    result = play(fresh_lab, tmp_path, [
        ('start', {'name': 'prod-batch01', 'state': 'started'}, MAY_FAIL),
        ('half', half, MAY_FAIL), ('converge', half), ('converged', half)])
    assert result.rc == 0, result.output
    msg = failed_message(result, 'start')
    assert "task qmstart on node prod-pve1 failed: QEMU exited with code 1" in msg, msg
    assert 'Last log lines:' in msg and 'TASK ERROR: QEMU exited with code 1' in msg
    assert pve.vm(103).status == 'stopped'

    assert 'disk full (injected)' in failed_message(result, 'half')
    converge = result['converge']
    assert converge['changed'] is True and converge['vmid'] == 106 and task_actions(converge) == ['update']
    assert result['converged']['changed'] is False
    assert str(vm_named(fresh_lab.clusters['production'], 'prod-half01').config['cores']) == '8'  # and only one


def test_locked_vm_is_waited_for_then_fails(fresh_lab, tmp_path):
    pve = fresh_lab.clusters['production'].pve
    # A lock that goes away while the module waits: a backup of 1 s (50 PVE s at 20 ms).
    pve.time_scale = 0.02
    fresh_lab.call(pve.backup(103, secs=50))
    assert pve.vm(103).config.get('lock') == 'backup'
    # A lock that stays.
    pve.snapshot_lock(102, 'backup')
    result = play(fresh_lab, tmp_path, [
        ('waited', {'name': 'prod-batch01', 'memory': 3072, 'timeout': 30}),
        ('locked', {'name': 'prod-db01', 'memory': 1024, 'timeout': 2}, MAY_FAIL),
        ('locked_stop', {'name': 'prod-db01', 'state': 'stopped', 'timeout': 2}, MAY_FAIL)])
    assert result.rc == 0, result.output
    assert result['waited']['changed'] is True and str(pve.vm(103).config['memory']) == '3072'
    msg = failed_message(result, 'locked')
    assert "VM 'prod-db01' (vmid 102) is locked (backup) and stayed locked for 2s; nothing was changed" in msg
    assert 'is locked (backup)' in failed_message(result, 'locked_stop')
    assert str(pve.vm(102).config['memory']) == '8192' and pve.vm(102).status == 'running'


def test_node_offline(fresh_lab, tmp_path):
    pve = fresh_lab.clusters['production'].pve
    pve.set_node_offline('prod-pve1')
    before = snapshot(fresh_lab)
    result = play(fresh_lab, tmp_path, [
        ('on_offline', {'name': 'prod-web01', 'memory': 1024}, MAY_FAIL),
        ('to_offline', {'name': 'prod-new01', 'node': 'prod-pve1', 'memory': 1024}, MAY_FAIL),
        ('auto', {'name': 'prod-new01', 'memory': 1024}, CHECK)])
    assert result.rc == 0, result.output
    assert "cluster 'production': node 'prod-pve1' of VM 'prod-web01' (vmid 100) is offline" \
        in failed_message(result, 'on_offline')
    assert "node 'prod-pve1' is offline" in failed_message(result, 'to_offline')
    assert snapshot(fresh_lab) == before
    # Chosen automatically, a new VM goes to an online node.
    assert result['auto']['node'] in ('prod-pve2', 'prod-pve3') and result['auto']['node_reason'] == 'most free memory'

