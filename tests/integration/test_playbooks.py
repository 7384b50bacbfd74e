"""The playbooks in playbooks/ and the guests role, run with the real ansible-playbook against a fresh lab.

Each test checks what happened in the fake clusters (their task logs and guests), not only the exit code.
"""

import re

from conftest import REPO, run_playbook

PLAYBOOKS = REPO / 'playbooks'
LAB_INVENTORY = PLAYBOOKS / 'inventory' / 'lab.pmx.yml'


def reboots(lab, cluster):
    """(task type, vmid) of every reboot task the fake cluster ran, in order."""
    return [(t['type'], int(t['id'])) for t in lab.clusters[cluster].pve.tasklog
            if t['type'] in ('qmreboot', 'vzreboot')]


def guest_names(lab, cluster):
    return set(g.name for g in lab.clusters[cluster].guests())


def recap_changed(output):
    """The changed= count of localhost in the PLAY RECAP."""
    return int(re.search(r'localhost\s+: ok=\d+\s+changed=(\d+)', output).group(1))


# ---------------------------------------------------------------- rolling_restart.yml

def test_rolling_restart_restarts_each_running_guest_of_the_group_one_at_a_time(fresh_lab):
    result = run_playbook(PLAYBOOKS / 'rolling_restart.yml', env_file=fresh_lab.env_file,
                          args=['-i', str(LAB_INVENTORY),
                                '-e', 'restart_group=pmx_cluster_staging:&pmx_status_running'])
    assert result.rc == 0, result.output
    # The four running staging guests (VMs 100-102, container 104), each rebooted once; nothing elsewhere.
    assert sorted(reboots(fresh_lab, 'staging')) == [('qmreboot', 100), ('qmreboot', 101), ('qmreboot', 102),
                                                     ('vzreboot', 104)]
    assert reboots(fresh_lab, 'production') == [] and reboots(fresh_lab, 'disaster-recovery') == []
    # serial: 1 - one batch per guest, each with its health check before the next.
    assert result.output.count('PLAY [Restart the guests one at a time]') == 4
    assert result.output.count('staging quorate, 3/3 nodes online') == 4
    assert all(g.status == 'running' for g in fresh_lab.clusters['staging'].guests()
               if g.vmid in (100, 101, 102, 104))


def test_rolling_restart_without_a_group_fails_and_restarts_nothing(fresh_lab):
    result = run_playbook(PLAYBOOKS / 'rolling_restart.yml', env_file=fresh_lab.env_file,
                          args=['-i', str(LAB_INVENTORY)])
    assert result.rc != 0
    assert 'Set restart_group' in result.output
    assert all(reboots(fresh_lab, c) == [] for c in fresh_lab.clusters)


def test_rolling_restart_stops_when_the_cluster_is_unhealthy(fresh_lab):
    fresh_lab.call(fresh_lab.clusters['production'].pve.set_node_offline, 'prod-pve3')
    result = run_playbook(PLAYBOOKS / 'rolling_restart.yml', env_file=fresh_lab.env_file,
                          args=['-i', str(LAB_INVENTORY), '-e', 'restart_group=pmx_cluster_production:&pmx_type_qemu'])
    assert result.rc != 0
    assert 'is not healthy after restarting' in result.output and 'stopping the rollout' in result.output
    # The first guest was restarted, then the rollout stopped: no second reboot.
    assert len(reboots(fresh_lab, 'production')) == 1


# ---------------------------------------------------------------- cluster_health_report.yml

def test_cluster_health_report_writes_the_report_and_is_idempotent(fresh_lab, tmp_path):
    report = tmp_path / 'report.md'
    args = ['-e', 'report_path=%s' % report]
    first = run_playbook(PLAYBOOKS / 'cluster_health_report.yml', env_file=fresh_lab.env_file, args=args)
    assert first.rc == 0, first.output
    text = report.read_text()
    assert '**All 3 clusters are healthy**' in text
    for cluster in fresh_lab.clusters.values():
        assert '| %s | reachable | 9.0.10 | yes | 3/3 | 3/4 | 1/2 | %s | %s |' % (
            cluster.name, cluster.region, cluster.tier) in text
        assert '`%s`' % cluster.url in text
        for node in cluster.nodes:
            assert '| %s | online |' % node in text
    assert '| local-lvm | stg-pve2 |' in text
    assert 'All clusters healthy' in first.output
    second = run_playbook(PLAYBOOKS / 'cluster_health_report.yml', env_file=fresh_lab.env_file, args=args)
    assert second.rc == 0 and recap_changed(second.output) == 0, second.output


def test_cluster_health_report_names_the_problem_and_fails(fresh_lab, tmp_path):
    fresh_lab.call(fresh_lab.clusters['staging'].pve.set_node_offline, 'stg-pve3')
    fresh_lab.call(fresh_lab.clusters['disaster-recovery'].pve.lose_quorum)
    report = tmp_path / 'report.md'
    result = run_playbook(PLAYBOOKS / 'cluster_health_report.yml', env_file=fresh_lab.env_file,
                          args=['-e', 'report_path=%s' % report])
    assert result.rc != 0
    assert 'staging has 2 of 3 nodes online' in result.output
    text = report.read_text()
    assert '**2 problem(s):**' in text
    assert '- staging has 2 of 3 nodes online' in text and '- disaster-recovery has no quorum' in text
    assert '| stg-pve3 | **offline** |' in text


# ---------------------------------------------------------------- the guests role

GUESTS_PLAY = '''
- hosts: localhost
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  roles:
    - role: pmx.multicluster.guests
      guests_list: %s
'''

GUESTS = '''
        - {name: prod-role-web01, clone: prod-tpl-debian12, cores: 2, memory: 2048, tags: [web]}
        - {name: stg-role-db01, cores: 1, memory: 1024, disks: {scsi0: "local-lvm:8"}, state: stopped}
        - {name: role-dr01, cluster: disaster-recovery, cores: 1, memory: 512, state: present}
        - {name: stg-role-ct01, type: lxc, ostemplate: "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
           rootfs: "local-lvm:4", memory: 512, password: role-secret-pw}
'''


def test_guests_role_routes_each_guest_and_a_second_run_changes_nothing(fresh_lab, tmp_path):
    play = tmp_path / 'guests.yml'
    play.write_text(GUESTS_PLAY % GUESTS)
    first = run_playbook(play, env_file=fresh_lab.env_file)
    assert first.rc == 0, first.output
    assert {'prod-role-web01'} <= guest_names(fresh_lab, 'production')
    assert {'stg-role-db01', 'stg-role-ct01'} <= guest_names(fresh_lab, 'staging')
    assert {'role-dr01'} <= guest_names(fresh_lab, 'disaster-recovery')
    assert 'role-secret-pw' not in first.output
    second = run_playbook(play, env_file=fresh_lab.env_file)
    assert second.rc == 0 and recap_changed(second.output) == 0, second.output


def test_guests_role_rejects_bad_input_before_touching_a_cluster(fresh_lab, tmp_path):
    cases = [
        ('[{cores: 2}]', "missing required arguments: name"),
        ('[{name: prod-x, type: kvm}]', "value of type must be one of: vm, lxc"),
        ('[{name: prod-x, memroy: 512}]', "memroy"),
        ('[{name: prod-x, swap: 512, rootfs: "local-lvm:4"}]',
         'prod-x (type vm) sets rootfs, swap, which only containers (type: lxc) take'),
        ('[{name: prod-x, memory: 1}, {name: prod-x, memory: 2}]', 'prod-x is listed more than once'),
    ]
    before = dict((c, guest_names(fresh_lab, c)) for c in fresh_lab.clusters)
    for index, (guests, message) in enumerate(cases):
        play = tmp_path / ('bad-%d.yml' % index)
        play.write_text(GUESTS_PLAY % guests)
        result = run_playbook(play, env_file=fresh_lab.env_file)
        assert result.rc != 0, guests
        assert message in result.output, (guests, result.output)
        assert 'Traceback' not in result.output
    assert before == dict((c, guest_names(fresh_lab, c)) for c in fresh_lab.clusters)


# ---------------------------------------------------------------- the existing examples still run

def test_demo_playbook_still_runs(fresh_lab):
    result = run_playbook(PLAYBOOKS / 'demo.yml', env_file=fresh_lab.env_file)
    assert result.rc == 0, result.output
    assert "prod-web01                   -> production (pattern 'prod-*')" in result.output


# ---------------------------------------------------------------- snapshot_before_change.yml

CHANGE_TASKS = '''\
- name: Give the guest more memory
  pmx.multicluster.pmx_vm:
    name: "{{ pmx_name }}"
    cluster: "{{ pmx_cluster }}"
    memory: 6144
  delegate_to: localhost

- name: A check of the change that fails when told to
  ansible.builtin.fail:
    msg: the service did not come back
  when: change_should_fail | default(false) | bool
'''


def test_snapshot_before_change_keeps_a_good_change_and_rolls_back_a_failed_one(fresh_lab, tmp_path):
    change = tmp_path / 'change.yml'
    change.write_text(CHANGE_TASKS)
    base = ['-i', str(LAB_INVENTORY), '-e', 'change_tasks=%s' % change]
    good = run_playbook(PLAYBOOKS / 'snapshot_before_change.yml', env_file=fresh_lab.env_file,
                        args=base + ['-e', 'change_group=stg-web01:stg-web02', '-e', 'change_keep=1'])
    assert good.rc == 0, good.output
    staging = fresh_lab.clusters['staging'].pve
    for vmid in (100, 101):
        vm = staging.vm(vmid)
        names = [n for n in vm.snapshots if n.startswith('pre-change-')]
        assert len(names) == 1 and str(vm.pending.get('memory', vm.config.get('memory'))) == '6144', vm.snapshots
    # One snapshot name for the whole run.
    assert set(staging.vm(100).snapshots) == set(staging.vm(101).snapshots)
    assert not [t for t in staging.tasklog if t['type'] == 'qmrollback']
    bad = run_playbook(PLAYBOOKS / 'snapshot_before_change.yml', env_file=fresh_lab.env_file,
                       args=base + ['-e', 'change_group=prod-web01', '-e', 'change_should_fail=true'])
    assert bad.rc != 0
    assert 'the change failed on prod-web01 (production): the service did not come back' in bad.output
    assert 'rolled back to snapshot pre-change-' in bad.output and 'status running' in bad.output
    vm = fresh_lab.clusters['production'].pve.vm(100)
    assert [t['type'] for t in fresh_lab.clusters['production'].pve.tasklog].count('qmrollback') == 1
    assert str(vm.config['memory']) == '4096' and 'memory' not in vm.pending and vm.status == 'running'
