"""pmx_guests, pmx_guest_action and the MCP bulk tool, through real plays against one lab whose tasks take time.

The lab's creates take 0.4 s and starts 0.2 s (time_scale 1), so that guests really overlap; the lab records
the most tasks that ran at once per cluster and per node (lab/pvefleet.py), which shows the bounds held.
The tests share the lab and build on each other's guests, in file order.
"""

import subprocess
import time

import pytest

from conftest import _NET, BIN, ansible_env, lab_secrets, pmxlab, run_mcp, run_play

GUESTS = 'pmx.multicluster.pmx_guests'
ACTION = 'pmx.multicluster.pmx_guest_action'
PREFIXES = {'production': 'prod', 'staging': 'stg', 'disaster-recovery': 'dr'}


@pytest.fixture(scope='module')
def fleet_lab(tmp_path_factory):
    with pmxlab.Lab(str(tmp_path_factory.mktemp('fleet-lab')), clusters=3, first_host='127.%d.7.2' % _NET,
                    time_scale=1, task_secs={'qmcreate': 0.4, 'qmstart': 0.2, 'qmshutdown': 0.1}) as lab:
        yield lab


def named(lab, cluster, name):
    """The guests of a lab cluster with this name (a list: a duplicate shows as two)."""
    return [g for g in lab.clusters[cluster].guests() if g.name == name]


def actions(result):
    """The actions of a guest's plan."""
    return [step['action'] for step in result['plan']]


def state_of(lab):
    """Everything check mode must leave alone: each cluster's guests, their config, status and snapshots."""
    return dict((name, sorted((g.vmid, g.name, g.status, str(g.config), str(getattr(g, 'snapshots', None)))
                              for g in c.guests())) for name, c in lab.clusters.items())


def twelve():
    """4 VMs per cluster, created from scratch on nodes 1, 2, 3, 1 and started."""
    return [{'name': '%s-fl%02d' % (prefix, n), 'node': '%s-pve%d' % (prefix, (n - 1) % 3 + 1), 'cores': 1,
             'memory': 512, 'tags': ['fleet']}
            for prefix in PREFIXES.values() for n in range(1, 5)]


def test_twelve_guests_in_one_task_check_create_again_within_bounds(fleet_lab, tmp_path):
    """Check mode plans 12 guests and writes nothing; the create makes each once on its cluster, with at most
    per_cluster tasks on a cluster and per_node on a node at any moment; a second run changes nothing."""
    before = state_of(fleet_lab)
    fleet_lab.reset_most_running()
    args = {'guests': twelve(), 'state': 'started', 'per_cluster': 3, 'per_node': 1}
    result = run_play(tmp_path, [
        {'name': 'check', GUESTS: args, 'register': 'check', 'check_mode': True},
        {'name': 'check_writes_nothing', 'ansible.builtin.pause': {'seconds': 0}},
    ], env_file=fleet_lab.env_file)
    assert result.rc == 0, result.output
    assert state_of(fleet_lab) == before, 'check mode changed the clusters'
    check = result['check']
    assert check['changed'] and check['summary']['total'] == 12 and check['summary']['changed'] == 12
    assert all(g['plan'][0]['action'] == 'create' and g['plan'][-1]['action'] == 'start' for g in check['guests'])

    started = time.monotonic()
    result = run_play(tmp_path, [
        {'name': 'create', GUESTS: args, 'register': 'create', 'diff': True},
        {'name': 'again', GUESTS: args, 'register': 'again'},
    ], env_file=fleet_lab.env_file)
    elapsed = time.monotonic() - started
    assert result.rc == 0, result.output
    create, again = result['create'], result['again']
    assert create['summary'] == dict(create['summary'], total=12, changed=12, ok=12, failed=0)
    for res in create['guests']:
        cluster = {'prod': 'production', 'stg': 'staging', 'dr': 'disaster-recovery'}[res['name'].split('-')[0]]
        assert res['cluster'] == cluster and res['route_reason'] == "pattern '%s-*'" % PREFIXES[cluster]
        found = named(fleet_lab, cluster, res['name'])
        assert len(found) == 1 and found[0].vmid == res['vmid'] and found[0].status == 'running'
        assert [t['action'] for t in res['tasks']] == ['create', 'start'] and res['error'] is None
    assert again['changed'] is False and again['summary']['changed'] == 0
    assert all(g['plan'] == [] and g['tasks'] == [] for g in again['guests'])
    assert '+    "memory": 512' in result.stdout  # diff mode: one before/after per guest
    for cluster, prefix in PREFIXES.items():
        most = fleet_lab.most_running(cluster)
        assert 2 <= most <= 3, (cluster, most)  # concurrent, and never past per_cluster
        for node in fleet_lab.clusters[cluster].nodes:
            assert fleet_lab.most_running(cluster, node) <= 1, (cluster, node)
    # 4 guests a cluster, two on node 1 (per_node 1): two rounds of create + start, not twelve.
    assert elapsed < 60, elapsed
    result.assert_no_secret(lab_secrets(fleet_lab))


def test_one_guest_fails_while_the_others_converge(fleet_lab, tmp_path):
    """A start that fails on one guest: the three others are made and started, the task fails at the end naming
    the guest, with its error as data. Bad entries are refused before any request."""
    stg = fleet_lab.clusters['staging'].pve
    stg.fail('POST', '/nodes/stg-pve2/qemu/4242/status/start', 500, 'start refused by the lab')
    guests = [{'name': 'stg-part%d' % n, 'node': 'stg-pve%d' % n, 'cores': 1, 'memory': 256} for n in (1, 3)]
    guests += [{'name': 'stg-part2', 'vmid': 4242, 'node': 'stg-pve2', 'cores': 1, 'memory': 256},
               {'name': 'prod-part4', 'cores': 1, 'memory': 256}]
    bad = [{'name': 'prod-bad1', 'memroy': 1}, {'name': 'prod-bad2', 'type': 'lxc', 'cpu': 'host'},
           {'name': 'prod-bad3', 'cores': 'many'}]
    before = state_of(fleet_lab)
    try:
        result = run_play(tmp_path, [
            {'name': 'bad', GUESTS: {'guests': bad}, 'register': 'bad', 'ignore_errors': True},
            {'name': 'part', GUESTS: {'guests': guests, 'state': 'started'}, 'register': 'part',
             'ignore_errors': True},
        ], env_file=fleet_lab.env_file)
    finally:
        stg.failures.clear()
    bad = result['bad']
    assert bad['failed'] and 'Traceback' not in result.output
    for text in ('guests[0] (prod-bad1)', 'memroy', 'guests[1] (prod-bad2)', 'cpu', 'guests[2] (prod-bad3)', 'cores'):
        assert text in bad['msg'], bad['msg']
    part = result['part']
    assert part['failed'] and part['msg'].startswith('1 of 4 guests failed: stg-part2 (cluster \'staging\')')
    by_name = dict((g['name'], g) for g in part['guests'])
    assert by_name['stg-part2']['failed'] and 'start refused by the lab' in by_name['stg-part2']['error']['msg']
    assert by_name['stg-part2']['error']['cluster'] == 'staging'
    for name in ('stg-part1', 'stg-part3', 'prod-part4'):
        assert by_name[name]['failed'] is False and by_name[name]['status'] == 'running', by_name[name]
    assert part['summary'] == dict(part['summary'], total=4, failed=1, ok=3)
    assert named(fleet_lab, 'staging', 'stg-part2')[0].status == 'stopped'  # made, its start refused
    assert set(before) == set(state_of(fleet_lab))
    assert not any(named(fleet_lab, c, 'prod-bad%d' % n) for c in PREFIXES for n in (1, 2, 3))


def test_two_overlapping_runs_make_no_duplicate(fleet_lab, tmp_path):
    """Two pmx_guests tasks at once over overlapping lists: their creates are held until both runs sent theirs,
    then released together; every name ends as one guest."""
    first = [{'name': 'prod-dup%d' % n, 'node': 'prod-pve1', 'cores': 1, 'memory': 256} for n in (1, 2, 3)]
    second = [{'name': 'prod-dup%d' % n, 'node': 'prod-pve1', 'cores': 1, 'memory': 256} for n in (2, 3, 4)]
    hold = fleet_lab.hold_requests('production', 'POST', '/nodes/prod-pve1/qemu', count=None)
    runs = [run_play(tmp_path, [{'name': 'run', GUESTS: {'guests': guests}, 'register': 'run'}],
                     env_file=fleet_lab.env_file, start=True) for guests in (first, second)]
    try:
        deadline = time.monotonic() + 60
        while hold.held < 6 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert hold.held == 6, hold.held  # every create of both runs in flight at once
    finally:
        hold.release()
    results = [run.result() for run in runs]
    for result in results:
        assert result.rc == 0, result.output
    for n in (1, 2, 3, 4):
        assert len(named(fleet_lab, 'production', 'prod-dup%d' % n)) == 1, n
    adopted = [g for r in results for g in r['run']['guests'] if g.get('adopted')]
    assert adopted, 'the overlapping creates did not race'


def test_selection_actions_check_mode_then_real(fleet_lab, tmp_path):
    """Shut down the tagged dr guests: check mode lists each with the step it would get and writes nothing; then
    for real; then a snapshot of them all, which a second run does not take again."""
    dr = fleet_lab.clusters['disaster-recovery']
    before = state_of(fleet_lab)
    select = {'cluster': ['disaster-recovery'], 'tags': ['fleet'], 'name': ['DR-FL*']}
    result = run_play(tmp_path, [
        {'name': 'check', ACTION: dict(select, action='shutdown'), 'register': 'check', 'check_mode': True},
    ], env_file=fleet_lab.env_file)
    assert result.rc == 0, result.output
    assert state_of(fleet_lab) == before
    check = result['check']
    assert sorted(g['name'] for g in check['guests']) == ['dr-fl01', 'dr-fl02', 'dr-fl03', 'dr-fl04']
    assert [g['vmid'] for g in check['guests']] == sorted(g['vmid'] for g in check['guests'])  # by vmid
    assert all(actions(g) == ['shutdown'] and g['changed'] for g in check['guests']), check['guests']

    result = run_play(tmp_path, [
        {'name': 'stop', ACTION: dict(select, action='shutdown', per_node=1), 'register': 'stop'},
        {'name': 'stop_again', ACTION: dict(select, action='shutdown'), 'register': 'stop_again'},
        {'name': 'snap', ACTION: dict(select, action='snapshot', snapname='before-upgrade'), 'register': 'snap'},
        {'name': 'snap_check', ACTION: dict(select, action='snapshot', snapname='before-upgrade'),
         'register': 'snap_check', 'check_mode': True},
        {'name': 'start_check', ACTION: dict(select, action='start', status='stopped'), 'register': 'start_check',
         'check_mode': True},
    ], env_file=fleet_lab.env_file)
    assert result.rc == 0, result.output
    assert result['stop']['summary'] == dict(result['stop']['summary'], total=4, changed=4, failed=0)
    assert all(named(fleet_lab, 'disaster-recovery', 'dr-fl%02d' % n)[0].status == 'stopped' for n in (1, 2, 3, 4))
    assert result['stop_again']['changed'] is False
    assert result['snap']['summary']['changed'] == 4
    for guest in dr.guests():
        if guest.name.startswith('dr-fl'):
            assert 'before-upgrade' in guest.snapshots, guest.name
    assert result['snap_check']['changed'] is False
    assert [actions(g) for g in result['start_check']['guests']] == [['start']] * 4
    assert not any(g.name.startswith('dr-') and g.status != 'stopped' for g in dr.guests()
                   if g.name.startswith('dr-fl'))


def test_backup_and_migrate_a_selection(fleet_lab, tmp_path):
    """backup and migrate are entries of the same action table: the stopped dr-fl guests backed up now (check mode
    sends nothing), then dr-fl01 and dr-fl04 (on dr-pve1) moved to dr-pve3, check mode first; a rerun moves none."""
    dr = fleet_lab.clusters['disaster-recovery']
    select = {'name': ['dr-fl01', 'dr-fl04']}
    before = dict((g.vmid, g.node) for g in dr.guests())
    backups_before = len(fleet_lab.backups('disaster-recovery'))
    result = run_play(tmp_path, [
        {'name': 'backup_check', ACTION: dict(select, action='backup', storage='backup-nfs'),
         'register': 'backup_check', 'check_mode': True},
        {'name': 'backup', ACTION: dict(select, action='backup', storage='backup-nfs'), 'register': 'backup'},
        {'name': 'move_check', ACTION: dict(select, action='migrate', target_node='dr-pve3'), 'register': 'move_check',
         'check_mode': True},
        {'name': 'move', ACTION: dict(select, action='migrate', target_node='dr-pve3', serial=1), 'register': 'move'},
        {'name': 'move_again', ACTION: dict(select, action='migrate', target_node='dr-pve3'), 'register': 'again'},
    ], env_file=fleet_lab.env_file)
    assert result.rc == 0, result.output
    assert all(actions(g) == ['backup'] for g in result['backup_check']['guests'])
    assert len(fleet_lab.backups('disaster-recovery')) == backups_before + 2
    assert all(g['archive'].startswith('backup-nfs:') for g in result['backup']['guests'])
    assert all(g['plan'] and g['changed'] for g in result['move_check']['guests']), result['move_check']['guests']
    assert result['move']['summary']['changed'] == 2 and result['again']['changed'] is False
    for name in ('dr-fl01', 'dr-fl04'):
        guest = named(fleet_lab, 'disaster-recovery', name)[0]
        assert before[guest.vmid] == 'dr-pve1' and guest.node == 'dr-pve3'


def test_rolling_mode_stops_at_the_failure_limit(fleet_lab, tmp_path):
    """serial 1, max_failures 1: the first two guests' stops fail, so the third and fourth are never begun."""
    stg = fleet_lab.clusters['staging']
    guests = sorted((g for g in stg.guests() if g.name.startswith('stg-fl')), key=lambda g: g.vmid)
    for guest in guests[:2]:
        stg.pve.fail('POST', '/nodes/%s/qemu/%d/status/stop' % (guest.node, guest.vmid), 500, 'stop refused')
    try:
        result = run_play(tmp_path, [
            {'name': 'roll', ACTION: {'name': ['stg-fl*'], 'action': 'stop', 'serial': 1, 'max_failures': 1},
             'register': 'roll', 'ignore_errors': True},
        ], env_file=fleet_lab.env_file)
    finally:
        stg.pve.failures.clear()
    roll = result['roll']
    assert roll['failed'] and 'not begun' in roll['msg']
    assert [(g['name'], g['failed'], g['skipped']) for g in roll['guests']] == [
        (guests[0].name, True, False), (guests[1].name, True, False),
        (guests[2].name, False, True), (guests[3].name, False, True)]
    assert all(g.status == 'running' for g in guests)  # nothing stopped: two refused, two never begun
    stops = [t for t in stg.pve.tasklog if t['type'] == 'qmstop' and int(t['id']) in [g.vmid for g in guests]]
    assert stops == []


def test_mcp_bulk_tool_previews_every_guest_then_acts_on_confirm(fleet_lab):
    """bulk_guest_action without confirm lists every selected guest and changes nothing; with confirm it acts."""
    env = ansible_env(env_file=fleet_lab.env_file, extra={'PMX_MCP_ALLOW_WRITE': '1'})
    before = state_of(fleet_lab)

    async def body(client):
        preview = await client.call('bulk_guest_action', action='shutdown', name_pattern='prod-fl*')
        between = state_of(fleet_lab)
        done = await client.call('bulk_guest_action', action='shutdown', name_pattern='prod-fl*', confirm=True,
                                 confirmation_token=preview[1]['confirmation_token'])
        return preview, between, done

    ((err, preview), between, (err2, done)), texts, stderr = run_mcp(env, body)
    assert not err and not err2, (preview, done)
    assert between == before
    assert preview['preview'] is True and preview['changed'] is False and 'confirm=true' in preview['to_confirm']
    assert sorted(g['name'] for g in preview['guests']) == ['prod-fl01', 'prod-fl02', 'prod-fl03', 'prod-fl04']
    assert all(actions(g) == ['shutdown'] for g in preview['guests'])
    assert done['changed'] is True and done['summary']['changed'] == 4
    assert all(named(fleet_lab, 'production', 'prod-fl%02d' % n)[0].status == 'stopped' for n in (1, 2, 3, 4))
    for secret in lab_secrets(fleet_lab):
        assert secret not in '\n'.join(texts) + stderr


def test_mcp_deploy_guests_previews_then_creates_once(fleet_lab):
    """deploy_guests: a list over 3 clusters (a clone, a VM from scratch, a container) is previewed with every
    guest's cluster and plan, changing nothing; the confirmed call creates and starts each once; the same call
    again has nothing to do (no preview, no token). A bad item is refused before any request."""
    env = ansible_env(env_file=fleet_lab.env_file, extra={'PMX_MCP_ALLOW_WRITE': '1'})
    items = [{'name': 'prod-dp01', 'clone': 'prod-tpl-debian12', 'memory': 1024},
             {'name': 'stg-dp01', 'cores': 1, 'memory': 512, 'disk_gb': 4, 'tags': ['deploy']},
             {'name': 'dr-dp01', 'type': 'lxc', 'memory': 256,
              'ostemplate': 'local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst'}]
    before = state_of(fleet_lab)

    async def body(client):
        bad = [await client.call('deploy_guests', guests=[{'name': 'prod-dp09', 'memroy': 1}]),
               await client.call('deploy_guests', guests=[{'name': 'prod-dp09', 'ostemplate': 'local:vztmpl/x'}]),
               await client.call('deploy_guests', guests=[{'name': 'dp09', 'cluster': 'staging'},
                                                          {'name': 'dp09'}])]
        preview = await client.call('deploy_guests', guests=items, state='started')
        between = state_of(fleet_lab)
        done = await client.call('deploy_guests', guests=items, state='started', confirm=True,
                                 confirmation_token=preview[1]['confirmation_token'])
        again = await client.call('deploy_guests', guests=items, state='started')
        return bad, preview, between, done, again

    (bad, (err, preview), between, (err2, done), (err3, again)), texts, stderr = run_mcp(env, body)
    assert [b[0] for b in bad] == [True, True, True], bad
    assert 'memroy' in bad[0][1]
    assert 'ostemplate is for a new container' in bad[1][1] and 'Nothing was changed' in bad[1][1]
    assert 'listed twice' in bad[2][1]
    assert not err and not err2 and not err3, (preview, done, again)
    assert between == before
    assert preview['preview'] is True and preview['changed'] is False and preview['confirmation_token']
    assert [(g['name'], g['cluster']) for g in preview['guests']] == [
        ('prod-dp01', 'production'), ('stg-dp01', 'staging'), ('dr-dp01', 'disaster-recovery')]
    assert [actions(g)[0] for g in preview['guests']] == ['clone', 'create', 'create']
    assert all(actions(g)[-1] == 'start' for g in preview['guests'])
    assert done['changed'] is True and done['summary']['changed'] == 3 and done['summary']['failed'] == 0
    for cluster, name in (('production', 'prod-dp01'), ('staging', 'stg-dp01'), ('disaster-recovery', 'dr-dp01')):
        made = named(fleet_lab, cluster, name)
        assert len(made) == 1 and made[0].status == 'running', (name, made)
    assert again['changed'] is False and 'confirmation_token' not in again and not again.get('preview')
    assert again['summary']['changed'] == 0
    for secret in lab_secrets(fleet_lab):
        assert secret not in '\n'.join(texts) + stderr


@pytest.mark.parametrize('module, expected', [
    ('pmx_guests', ('per_cluster', 'per_node', 'stop_on_failure', 'summary', 'route_reason')),
    ('pmx_guest_action', ('serial', 'max_failures', 'snapname', 'status_before', 'skipped')),
])
def test_ansible_doc_with_examples(module, expected):
    doc = subprocess.run([str(BIN / 'ansible-doc'), 'pmx.multicluster.' + module], env=ansible_env(),
                         capture_output=True, text=True, timeout=120, check=False)
    assert doc.returncode == 0, doc.stderr
    for text in ('MODULE pmx.multicluster.' + module, 'EXAMPLES', 'RETURN VALUES') + expected:
        assert text in doc.stdout, text
