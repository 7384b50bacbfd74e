"""deploy_guests (the MCP server's many-guest create) under the three conditions every write path must survive:
a cluster that is down, two calls at the same moment over overlapping lists, and a call whose server goes away
halfway, then made again.

Each test drives the installed server through the official client against its own lab; the interleaving is
made certain with the lab's holds (a request kept in flight, a task kept running), never with sleeps.
"""

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from conftest import ansible_env, capture, lab_secrets, recorded, run_mcp, vms_named

WAIT = 60  # seconds a test waits for a call to reach a hold: a bound, not a pace
DOWN_URL = 'https://127.0.9.9:8006'  # nothing listens there


def deploy_env(lab, **extra):
    env = dict(lab.env(), PMX_MCP_ALLOW_WRITE='1')
    env.update(extra)
    return ansible_env(extra=env)


def session(lab, env, body):
    """Run ``body(client)`` against the installed server; the output is kept for the secret scan."""
    value, texts, stderr = run_mcp(env, body)
    capture(lab, 'mcp deploy_guests', repr(value), '\n'.join(texts), stderr)
    assert 'Traceback' not in stderr, stderr
    for secret in lab_secrets(lab):
        assert secret not in '\n'.join(texts) + stderr
    return value


def vm_items(names, node='prod-pve1'):
    return [{'name': name, 'node': node, 'cores': 1, 'memory': 256, 'disk_gb': 0} for name in names]


def test_a_cluster_that_is_down_is_named_and_nothing_is_written(fresh_lab):
    """A fourth cluster is down. A guest routed to it fails with a message naming it; a new guest routed to a
    cluster that answers is refused too, because whether it already exists on the cluster that is down cannot be
    known (never create what may be a duplicate). Nothing is written anywhere, and there is no token to confirm."""
    env = deploy_env(fresh_lab, PROXMOX_CLUSTERS=','.join(list(fresh_lab.clusters) + ['offline']),
                     PROXMOX_CLUSTER_offline_API_URL=DOWN_URL, PROXMOX_CLUSTER_offline_TOKEN_ID='root@pam!pmx',
                     PROXMOX_CLUSTER_offline_TOKEN_SECRET='not-a-real-secret', PROXMOX_CLUSTER_offline_TIMEOUT='2',
                     PROXMOX_CLUSTER_offline_PATTERNS='off-*')
    writes_before = dict((name, len([r for r in c.pve.requests if r[0] != 'GET']))
                         for name, c in fresh_lab.clusters.items())

    async def body(client):
        return await client.call('deploy_guests', guests=vm_items(['off-dp01', 'prod-dp01']), state='started')

    err, answer = session(fresh_lab, env, body)
    assert err is False, answer
    rows = dict((g['name'], g) for g in answer['guests'])
    assert rows['off-dp01']['failed'] and rows['off-dp01']['cluster'] == 'offline'
    assert "'offline'" in rows['off-dp01']['error']['msg'], rows['off-dp01']
    assert rows['prod-dp01']['failed'] and "'offline'" in rows['prod-dp01']['error']['msg'], rows['prod-dp01']
    assert answer['changed'] is False and 'confirmation_token' not in answer and not answer.get('preview')
    assert answer['summary']['failed'] == 2
    assert writes_before == dict((name, len([r for r in c.pve.requests if r[0] != 'GET']))
                                 for name, c in fresh_lab.clusters.items())
    assert not vms_named(fresh_lab, 'production', 'prod-dp01')


def test_two_calls_at_once_over_overlapping_lists_make_each_guest_once(fresh_lab):
    """Two servers (two assistants) confirm deploy_guests at the same moment, over lists that share two names:
    every create of both is held in flight until all six were sent, then released together. Each name ends as one
    VM; the call that lost a race adopts the other's guest (a create that lost its vmid to the other call is sent
    again with a fresh one, which is why there are more than six creates)."""
    env = deploy_env(fresh_lab)
    pve = fresh_lab.clusters['production'].pve
    lists = (vm_items(['prod-dup1', 'prod-dup2', 'prod-dup3']), vm_items(['prod-dup2', 'prod-dup3', 'prod-dup4']))
    hold = fresh_lab.hold_requests('production', 'POST', '/nodes/prod-pve1/qemu', count=None)

    def one(items):
        async def body(client):
            return await client.confirmed('deploy_guests', guests=items)
        return session(fresh_lab, env, body)

    with ThreadPoolExecutor(2) as pool:
        calls = [pool.submit(one, items) for items in lists]
        try:
            deadline = time.monotonic() + WAIT
            while hold.held < 6 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert hold.held == 6, hold.held  # every create of both calls in flight at once
        finally:
            hold.release()
        answers = [call.result(timeout=WAIT) for call in calls]
    for err, answer in answers:
        assert err is False and answer['summary']['failed'] == 0, answer
    for n in (1, 2, 3, 4):
        assert len(vms_named(fresh_lab, 'production', 'prod-dup%d' % n)) == 1, n
    adopted = [g for err, answer in answers for g in answer['guests'] if g.get('adopted')]
    assert adopted, 'the overlapping creates did not race'
    assert len([vm for vm in pve.vms if vm.name.startswith('prod-dup')]) == 4  # no leftover of a lost race


def test_a_call_cut_off_halfway_is_finished_by_the_next_without_a_duplicate(fresh_lab):
    """The server goes away (its client closes the connection) while the confirmed call's create task runs in PVE.
    The tasks go on. The same call made again finds both creates in progress, waits for them, then starts the
    guests they made: no second VM of either."""
    env = deploy_env(fresh_lab)
    pve = fresh_lab.clusters['production'].pve
    items = vm_items(['prod-cut1']) + vm_items(['prod-cut2'], node='prod-pve2')
    hold = fresh_lab.hold_tasks('production', 'qmcreate', count=2)  # both creates are held running

    async def cut_off(client):
        err, preview = await client.call('deploy_guests', guests=items, state='started')
        assert err is False and preview['preview'] is True, preview
        confirmed = asyncio.ensure_future(client.call('deploy_guests', guests=items, state='started', confirm=True,
                                                      confirmation_token=preview['confirmation_token']))
        confirmed.add_done_callback(lambda call: call.cancelled() or call.exception())  # it ends with the server
        deadline = time.monotonic() + WAIT
        while hold.held < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert hold.held == 2, 'the confirmed call did not begin both creates'
        return True  # leaving the session closes stdin: the server ends with the call in flight

    assert session(fresh_lab, env, cut_off)
    held = [vm for vm in pve.vms if vm.name in ('prod-cut1', 'prod-cut2') and vm.lock == 'create']
    assert len(held) == 2, [(vm.name, vm.lock) for vm in pve.vms]

    released = threading.Timer(3, hold.release)  # the rerun finds the create in progress and waits for it
    released.start()
    try:
        async def again(client):
            return await client.confirmed('deploy_guests', guests=items, state='started')
        err, answer = session(fresh_lab, env, again)
    finally:
        released.cancel()
        hold.release()
    assert err is False and answer['summary']['failed'] == 0, answer
    for name in ('prod-cut1', 'prod-cut2'):
        made = vms_named(fresh_lab, 'production', name)
        assert len(made) == 1 and made[0].status == 'running', (name, made)
    assert len(recorded(pve, 'POST', '/qemu')) == 2  # one create per guest, over both calls


def test_a_list_reaching_a_cluster_writes_may_not_touch_is_refused_whole(fresh_lab):
    """PMX_MCP_WRITE_CLUSTERS=staging: a list with one production guest is refused before any preview or token,
    naming the cluster; the staging guest of the same list is not made either."""
    env = deploy_env(fresh_lab, PMX_MCP_WRITE_CLUSTERS='staging')

    async def body(client):
        return await client.call('deploy_guests', guests=[{'name': 'stg-lim01', 'disk_gb': 0},
                                                          {'name': 'prod-lim01', 'disk_gb': 0}])

    err, text = session(fresh_lab, env, body)
    assert err is True and "writes to cluster 'production' are not allowed" in text, text
    assert 'confirmation_token' not in text
    assert not vms_named(fresh_lab, 'staging', 'stg-lim01') and not vms_named(fresh_lab, 'production', 'prod-lim01')
