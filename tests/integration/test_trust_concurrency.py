"""Two runs at the same moment, and runs that were interrupted, converge on one guest (issue 12, parts 2 and 3).

The interleaving is made certain with the lab's hooks, never with sleeps: ``lab.hold_requests`` keeps a
request in flight (it has not reached the fake yet) and ``lab.hold_tasks`` keeps a PVE task running (its
UPID answered, the guest locked) until the test releases it. Every run is a real ansible-playbook (or the
installed MCP server through the official client); what the fakes received proves what was sent.
docs/fault-matrix.md lists the cases (section "Concurrent and interrupted runs").
"""

import asyncio
import json
import time

import pytest

from conftest import CT, MAY_FAIL, VM, failed_message, play, recorded, start_play, vms_named

TEMPLATE = 'debian-12-standard_12.7-1_amd64.tar.zst'
WAIT = 60  # seconds a test waits for a run to reach a hold: a bound, not a pace


def until(condition, what, timeout=WAIT):
    """Wait for a condition the lab records (a request that arrived); fails the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, 'timed out waiting for ' + what
        time.sleep(0.05)


def polled(pve, suffix, after):
    """How many GETs for a path ending in ``suffix`` the fake received after its ``after``-th request."""
    return len([r for r in pve.requests[after:] if r[0] == 'GET' and r[1].endswith(suffix)])


def creates(pve, kind='qemu'):
    return recorded(pve, 'POST', '/' + kind)


# ------------------------------------------------------------------ 2. concurrent runs never duplicate

def test_two_runs_creating_one_name_at_once_end_with_one_guest(fresh_lab, tmp_path):
    """Run 1 asks /cluster/nextid for a vmid (106) and sends its create, which the lab holds in flight. Run 2 does
    the same, gets 106 too, and creates prod-race01 as 106. Released, run 1's create is answered "VM 106 already
    exists": it takes a fresh vmid (107), creates, then sees 106 with the same name and a lower vmid, removes its
    own never-started 107 and manages 106. Neither run fails; both report 106; one guest is left."""
    lab = fresh_lab
    pve = lab.clusters['production'].pve
    hold = lab.hold_requests('production', 'POST', '/qemu')
    new = {'name': 'prod-race01', 'cores': 1, 'memory': 512, 'state': 'started'}
    first = start_play(lab, tmp_path, VM, [('create', new)])
    assert hold.wait_reached(WAIT), 'run 1 never sent its create'
    second = play(lab, tmp_path, VM, [('create', new)])
    hold.release()
    first = first.result()
    assert first.rc == 0 and second.rc == 0, first.output + second.output
    one, two = first['create'], second['create']
    assert two['vmid'] == 106 and two['changed'] is True
    assert one['vmid'] == 106 and one['adopted'] == {'vmid': 106, 'removed_vmid': 107}
    assert one['status'] == 'running' and [t['action'] for t in one['tasks']] == ['create', 'delete']
    assert 'another run created' in first.output and 'removed its own new vmid 107' in first.output
    assert [vm.vmid for vm in vms_named(lab, 'production', 'prod-race01')] == [106]
    assert [r[2].decode().split('vmid=')[1].split('&')[0] for r in creates(pve)] == ['106', '106', '107']
    assert len(recorded(pve, 'DELETE', '/qemu/107')) == 1 and pve.vm(107) is None
    again = play(lab, tmp_path, VM, [('again', new)])
    assert again['again']['changed'] is False and again['again']['vmid'] == 106


def test_a_run_that_finds_the_guest_being_created_by_another_waits_for_it(fresh_lab, tmp_path):
    """Run 1's create task is held running (PVE lists the container as CT106, locked 'create', without its
    hostname). Run 2 for the same container sees a guest being created, waits for that task instead of making a
    second one, and once it ends finds it by name: one container, run 2 reports it unchanged."""
    lab = fresh_lab
    pve = lab.clusters['staging'].pve
    lab.call(pve.store_file, 'local', TEMPLATE, 120 * 1024 ** 2, 'vztmpl')
    hold = lab.hold_tasks('staging', 'vzcreate')
    ct = {'hostname': 'stg-race02', 'ostemplate': 'local:vztmpl/' + TEMPLATE, 'rootfs': 'local-lvm:4', 'memory': 256}
    first = start_play(lab, tmp_path, CT, [('create', ct)])
    assert hold.wait_reached(WAIT), 'run 1 never started its create'
    assert [(c.vmid, c.name, c.lock) for c in pve.cts if c.vmid == 106] == [(106, 'CT106', 'create')]
    mark = len(pve.requests)
    second = start_play(lab, tmp_path, CT, [('create', ct)])
    until(lambda: polled(pve, '/cluster/resources', mark) >= 2, 'run 2 to wait for the create in progress')
    hold.release()
    one, two = first.result(), second.result()
    assert one.rc == 0 and two.rc == 0, one.output + two.output
    assert one['create']['changed'] is True and one['create']['vmid'] == 106
    assert two['create']['changed'] is False and two['create']['vmid'] == 106, json.dumps(two['create'])
    assert [c.vmid for c in pve.cts if c.name == 'stg-race02'] == [106]
    assert len(creates(pve, 'lxc')) == 1


def test_concurrent_mcp_creates_of_one_name_end_with_one_guest(fresh_lab, tmp_path):
    """Two create_vm calls for one name in one MCP session, the first one's create held in flight while the
    second completes: the first takes a fresh vmid and yields to the second's guest. Both answer vmid 106."""
    lab = fresh_lab
    hold = lab.hold_requests('staging', 'POST', '/qemu')

    async def body(client):
        first = asyncio.ensure_future(client.call('create_vm', name='stg-race03', disk_gb=0))
        reached = await asyncio.get_running_loop().run_in_executor(None, hold.wait_reached, WAIT)
        second = await client.call('create_vm', name='stg-race03', disk_gb=0)
        hold.release()
        return reached, await first, second

    reached, first, second = mcp_body(lab, body)
    assert reached, 'the first call never sent its create'
    assert first[0] is False and second[0] is False, (first, second)
    assert second[1]['vmid'] == 106 and first[1]['vmid'] == 106
    assert first[1]['adopted'] == {'vmid': 106, 'removed_vmid': 107}
    assert [vm.vmid for vm in vms_named(lab, 'staging', 'stg-race03')] == [106]


def mcp_body(lab, body):
    """Run an async ``body(client)`` against the installed MCP server (writes on), output captured."""
    from conftest import ansible_env, capture, run_mcp
    value, texts, stderr = run_mcp(ansible_env(lab.env_file, {'PMX_MCP_ALLOW_WRITE': '1'}), body)
    capture(lab, 'mcp', repr(value), '\n'.join(texts), stderr)
    assert 'Traceback' not in stderr, stderr
    return value


# ------------------------------------------------------------------ 3. interrupted and timed-out runs converge

def test_a_create_that_timed_out_is_waited_for_on_rerun(fresh_lab, tmp_path):
    """The create task outlasts the run's timeout (held): the run fails saying what a rerun does. The rerun,
    while the task still runs, recognises the guest being created, waits for it, and finishes with it."""
    lab = fresh_lab
    pve = lab.clusters['production'].pve
    hold = lab.hold_tasks('production', 'qmcreate')
    new = {'name': 'prod-slow01', 'cores': 1, 'memory': 512, 'tags': ['slow'], 'state': 'started'}
    result = play(lab, tmp_path, VM, [('create', dict(new, timeout=1), MAY_FAIL)])
    msg = failed_message(result, 'create')
    assert 'was still running after 1s' in msg, msg
    assert ('The create of VM \'prod-slow01\' (vmid 106) goes on in PVE: a rerun waits for it to finish and then '
            'continues with that VM; it does not make a second one.') in msg
    mark = len(pve.requests)
    rerun = start_play(lab, tmp_path, VM, [('rerun', new)])
    until(lambda: polled(pve, '/cluster/resources', mark) >= 2, 'the rerun to wait for the create in progress')
    hold.release()
    rerun = rerun.result()
    assert rerun.rc == 0, rerun.output
    assert rerun['rerun']['vmid'] == 106 and rerun['rerun']['status'] == 'running'
    assert [vm.vmid for vm in vms_named(lab, 'production', 'prod-slow01')] == [106]
    assert len(creates(pve)) == 1 and len(recorded(pve, 'POST', '/qemu/106/status/start')) == 1


def test_a_create_interrupted_with_ctrl_c_is_not_made_twice(fresh_lab, tmp_path):
    """Ctrl-C while the container's create task runs: the task goes on in PVE. The rerun waits for it and uses the
    container it made."""
    lab = fresh_lab
    pve = lab.clusters['staging'].pve
    lab.call(pve.store_file, 'local', TEMPLATE, 120 * 1024 ** 2, 'vztmpl')
    hold = lab.hold_tasks('staging', 'vzcreate')
    ct = {'hostname': 'stg-int01', 'ostemplate': 'local:vztmpl/' + TEMPLATE, 'rootfs': 'local-lvm:4', 'memory': 256}
    killed = start_play(lab, tmp_path, CT, [('create', ct)])
    assert hold.wait_reached(WAIT)
    killed.interrupt()
    assert killed.result().rc != 0
    mark = len(pve.requests)
    rerun = start_play(lab, tmp_path, CT, [('rerun', ct)])
    until(lambda: polled(pve, '/cluster/resources', mark) >= 2, 'the rerun to wait for the create in progress')
    hold.release()
    rerun = rerun.result()
    assert rerun.rc == 0, rerun.output
    assert rerun['rerun']['vmid'] == 106 and rerun['rerun']['changed'] is False
    assert [c.vmid for c in pve.cts if c.name == 'stg-int01'] == [106] and len(creates(pve, 'lxc')) == 1


# (state, the guest and its status before, the task the interrupted run left running, the action's POST path)
POWER = [
    ('started', 103, 'qmstart', 'status/start', 'running'),
    ('stopped', 100, 'qmshutdown', 'status/shutdown', 'stopped'),
    ('restarted', 101, 'qmreboot', 'status/reboot', 'running'),
    ('absent', 103, 'qmdestroy', '', None),
]


@pytest.mark.parametrize('state,vmid,task,action,status', POWER, ids=[p[0] for p in POWER])
def test_rerunning_while_the_same_action_still_runs_waits_for_it(fresh_lab, tmp_path, state, vmid, task, action,
                                                                  status):
    """A run is interrupted (Ctrl-C) while its start / shutdown / reboot / destroy task runs in PVE. The rerun
    finds that task running, waits for it, and succeeds without sending the action a second time."""
    lab = fresh_lab
    pve = lab.clusters['production'].pve
    name = pve.vm(vmid).name
    hold = lab.hold_tasks('production', task, vmid=vmid)
    step = {'name': name, 'state': state}
    killed = start_play(lab, tmp_path, VM, [('first', step)])
    assert hold.wait_reached(WAIT), 'the first run never started its task'
    killed.interrupt()
    assert killed.result().rc != 0
    mark = len(pve.requests)
    rerun = start_play(lab, tmp_path, VM, [('rerun', step)])
    until(lambda: polled(pve, '/status', mark) >= 1, 'the rerun to wait for the running %s task' % task)
    hold.release()
    rerun = rerun.result()
    assert rerun.rc == 0, rerun.output
    res = rerun['rerun']
    assert [w['action'] for w in res['waited_for']] == [task] and res['waited_for'][0]['exitstatus'] == 'OK'
    path = '/qemu/%d%s' % (vmid, ('/' + action) if action else '')
    sent = recorded(pve, 'DELETE' if state == 'absent' else 'POST', path)
    assert len(sent) == 1, sent  # the interrupted run's only
    if status is None:
        assert pve.vm(vmid) is None and res['status'] == 'absent'
    else:
        assert pve.vm(vmid).status == status and res['status'] == status
    again = play(lab, tmp_path, VM, [('again', step)])
    assert again['again']['changed'] is False or state == 'restarted'
