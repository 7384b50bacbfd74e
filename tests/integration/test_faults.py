"""The reliability and security matrix (issue 9): faults, bad input and secrets, end to end.

Every case goes through the real front ends against the fakepve lab: a module in a play
(ansible-playbook -vvv), the inventory (ansible-inventory --list) and an MCP tool (the installed
server through the official MCP client). Faults come from fakepve's fault injection; what the
fake received (``pve.requests``, and for dropped or hung requests a stand-in for its random
generator that counts every arrival) proves that reads were retried, writes never repeated and
that bad input was refused before any write. Everything any case printed or returned is kept
in conftest.CAPTURED, and test_zz_secret_scan.py scans it all for every form of every secret.
docs/fault-matrix.md lists the cases.
"""

import time

from fakepve.certs import make_cert

from conftest import (
    CHECK,
    CT,
    DEAD,
    INFO,
    MAY_FAIL,
    VM,
    WRITES,
    clear_network,
    effective,
    env_file,
    failed_message,
    inventory,
    mcp,
    network_fault,
    play,
    recorded,
    register_secret,
    url_of,
    vms_named,
    writes,
)

CT_PASSWORD = 'Ct-F4ult-S3cret-pw'
OTHER_SECRET = '0badc0de-f00d-4bee-8f00-5ec2e7000000'
TEMPLATE = 'debian-12-standard_12.7-1_amd64.tar.zst'
# Secrets of this file's cases that the session-wide scan (test_zz_secret_scan.py) also looks for.
register_secret(CT_PASSWORD, OTHER_SECRET)


def steps_failed(result, *names):
    return dict((name, failed_message(result, name)) for name in names)


# ================================================================== fault matrix

def test_cluster_unreachable(lab, tmp_path):
    """production's only API URL is dead: each front end names the cluster and the reason; the others work."""
    env = env_file(lab, tmp_path, replace={'PROXMOX_CLUSTER_production_API_URL': DEAD})
    before = writes(lab)
    result = play(lab, tmp_path, VM, [('down', {'name': 'prod-web01', 'memory': 1024}, MAY_FAIL),
                                      ('other', {'name': 'stg-web01', 'memory': 1024}, CHECK)], env=env)
    assert result.rc == 0, result.output
    assert ("cluster 'production' is unreachable: %s: connection refused. Check that the API URL is right and the "
            "cluster is up (PROXMOX_CLUSTER_production_API_URL)" % DEAD) in failed_message(result, 'down')
    assert result['other']['cluster'] == 'staging' and result['other']['changed'] is True

    inv = inventory(lab, tmp_path, env=env)
    assert inv.rc == 0 and "cluster 'production' cannot be read" in inv.text and 'connection refused' in inv.text
    assert 'stg-web01' in inv.hosts and 'dr-web01' in inv.hosts and 'prod-web01' not in inv.hosts

    guests, details = mcp(lab, [('list_guests', {}), ('guest_details', {'name': 'prod-web01'})], env=env)
    assert not guests[0] and [e['cluster'] for e in guests[1]['errors']] == ['production']
    # The second call in the session is answered from the memory of the failure, naming it as well.
    assert details[0] is True and "cluster 'production' did not answer" in details[1]
    assert '%s: connection refused' % DEAD in details[1]
    assert writes(lab) == before


def test_failover_to_the_next_api_url(fresh_lab, tmp_path):
    """A dead URL first in every cluster's API_URL list: module, inventory and MCP fail over and succeed."""
    lab = fresh_lab
    env = env_file(lab, tmp_path, replace=dict(
        ('PROXMOX_CLUSTER_%s_API_URL' % name, '%s,%s' % (DEAD, c.url)) for name, c in lab.clusters.items()))
    new = {'name': 'prod-fo01', 'cores': 1, 'memory': 512}
    result = play(lab, tmp_path, VM, [('create', new), ('again', new)], env=env)
    assert result.rc == 0, result.output
    assert result['create']['changed'] is True and result['again']['changed'] is False
    assert len(vms_named(lab, 'production', 'prod-fo01')) == 1

    inv = inventory(lab, tmp_path, env=env)
    assert inv.rc == 0 and 'prod-fo01' in inv.hosts and 'dr-web01' in inv.hosts and 'WARNING' not in inv.stderr

    (clusters, create) = mcp(lab, [('list_clusters', {}), ('create_vm', {'name': 'stg-fo01', 'disk_gb': 0})],
                             env=env, write=True)
    assert all(c['reachable'] for c in clusters[1]['clusters'])
    assert create[0] is False and create[1]['cluster'] == 'staging' and create[1]['changed'] is True
    assert len(vms_named(lab, 'staging', 'stg-fo01')) == 1


def test_flaky_network_reads_are_retried(fresh_lab, tmp_path):
    """The first arrival of every GET (and every other one after it) is dropped: reads are retried, the
    change is still made, and its write reached the fake exactly once."""
    lab = fresh_lab
    pve = lab.clusters['production'].pve
    fault = network_fault(lab, 'production', lambda method, path, n: method == 'GET' and n % 2 == 1)
    result = play(lab, tmp_path, VM, [('update', {'name': 'prod-web01', 'memory': 3072})])
    assert result.rc == 0, result.output
    assert result['update']['changed'] is True and effective(pve.vm(100), 'memory') == '3072'
    assert fault.count('GET', '/cluster/resources') >= 2 * len(recorded(pve, 'GET', '/cluster/resources')) - 1
    assert fault.count('POST', '/qemu/100/config') == 1 == len(recorded(pve, 'POST', '/qemu/100/config'))

    inv = inventory(lab, tmp_path)
    assert inv.rc == 0 and 'prod-web01' in inv.hosts and 'WARNING' not in inv.stderr, inv.stderr
    (details,) = mcp(lab, [('guest_details', {'name': 'prod-web01'})])
    assert details[0] is False and details[1]['cluster'] == 'production'


def test_flaky_network_writes_are_never_repeated(fresh_lab, tmp_path):
    """Every write to production is dropped: MCP and the module each send it once and say its outcome is
    unknown; once the network is back, the same play converges (one start, no second one)."""
    lab = fresh_lab
    pve = lab.clusters['production'].pve
    fault = network_fault(lab, 'production', lambda method, path, n: method in WRITES)
    (start,) = mcp(lab, [('start_guest', {'name': 'prod-batch01'})], write=True)
    assert start[0] is True and 'may or may not have been applied' in start[1] and 'Nothing was retried' in start[1]
    assert fault.count('POST', '/qemu/103/status/start') == 1

    step = ('start', {'name': 'prod-batch01', 'state': 'started'})
    result = play(lab, tmp_path, VM, [step + (MAY_FAIL,)])
    msg = failed_message(result, 'start')
    assert "cluster 'production': POST /nodes/prod-pve1/qemu/103/status/start: the connection to" in msg
    assert 'may or may not have been applied. Nothing was retried' in msg
    assert fault.count('POST', '/qemu/103/status/start') == 2  # one per front end, never a retry
    assert recorded(pve, 'POST', '/qemu/103/status/start') == [] and pve.vm(103).status == 'stopped'

    clear_network(lab, 'production')
    result = play(lab, tmp_path, VM, [step, ('again', step[1])])
    assert result.rc == 0, result.output
    assert result['start']['changed'] is True and result['again']['changed'] is False
    assert len(recorded(pve, 'POST', '/qemu/103/status/start')) == 1 and pve.vm(103).status == 'running'


def test_hanging_request_times_out(fresh_lab, tmp_path):
    """TIMEOUT=0.5 and production's /cluster/resources never answers in time: a clear timeout error from each
    front end. A hung write (the fake applies it late) is reported as unknown, and the rerun converges."""
    lab = fresh_lab
    pve = lab.clusters['production'].pve
    env = env_file(lab, tmp_path, extra=['PROXMOX_CLUSTER_production_TIMEOUT=0.5'])
    network_fault(lab, 'production', lambda method, path, n: path.endswith('/cluster/resources'), hang_secs=2)
    started = time.monotonic()
    result = play(lab, tmp_path, VM, [('read', {'name': 'prod-web01', 'memory': 1024}, MAY_FAIL)], env=env)
    msg = failed_message(result, 'read')
    assert "cluster 'production' is unreachable: %s: no answer within 0.5s, PROXMOX_CLUSTER_production_TIMEOUT" \
        % url_of(lab, 'production') in msg, msg
    assert time.monotonic() - started < 30
    inv = inventory(lab, tmp_path, env=env)
    assert inv.rc == 0 and "cluster 'production' cannot be read" in inv.text and 'no answer within 0.5s' in inv.text
    assert 'stg-web01' in inv.hosts
    (guests,) = mcp(lab, [('list_guests', {})], env=env)
    assert guests[1]['errors'][0]['cluster'] == 'production'
    assert 'no answer within 0.5s' in guests[1]['errors'][0]['error']

    # A write that hangs: sent once, reported as unknown; the fake applies it when the hang ends.
    network_fault(lab, 'production', lambda method, path, n: method == 'POST', hang_secs=2)
    step = ('start', {'name': 'prod-batch01', 'state': 'started'})
    result = play(lab, tmp_path, VM, [step + (MAY_FAIL,)], env=env)
    msg = failed_message(result, 'start')
    assert 'no answer within 0.5s' in msg and 'may or may not have been applied' in msg, msg
    deadline = time.monotonic() + 10
    while pve.vm(103).status != 'running' and time.monotonic() < deadline:
        time.sleep(0.1)
    clear_network(lab, 'production')
    result = play(lab, tmp_path, VM, [step], env=env)
    assert result.rc == 0 and result['start']['changed'] is False, result.output
    assert len(recorded(pve, 'POST', '/qemu/103/status/start')) == 1


def test_lost_quorum(fresh_lab, tmp_path):
    """Without quorum reads work and every write fails with PVE's reason; after quorum returns the play converges."""
    lab = fresh_lab
    pve = lab.clusters['production'].pve
    lab.call(pve.lose_quorum)
    update = {'name': 'prod-web01', 'memory': 6144}
    result = play(lab, tmp_path, VM, [('update', update, MAY_FAIL),
                                      ('start', {'name': 'prod-batch01', 'state': 'started'}, MAY_FAIL),
                                      ('info', {'name': ['production']}, {}, INFO)])
    assert result.rc == 0, result.output
    for msg in steps_failed(result, 'update', 'start').values():
        assert "cluster 'production'" in msg and 'no quorum' in msg, msg
    assert result['info']['clusters'][0]['quorate'] is False
    assert str(pve.vm(100).config['memory']) == '4096' and pve.vm(103).status == 'stopped'

    inv = inventory(lab, tmp_path)
    assert inv.rc == 0 and 'prod-web01' in inv.hosts
    clusters, start = mcp(lab, [('list_clusters', {}), ('start_guest', {'name': 'prod-batch01'})], write=True)
    assert clusters[1]['clusters'][0]['quorate'] is False
    assert start[0] is True and 'no quorum' in start[1]

    lab.call(pve.regain_quorum)
    result = play(lab, tmp_path, VM, [('update', update), ('again', update)])
    assert result['update']['changed'] is True and result['again']['changed'] is False, result.output
    assert effective(pve.vm(100), 'memory') == '6144'


def test_node_offline(fresh_lab, tmp_path):
    """A node offline (the module case is test_pmx_vm.py::test_node_offline): MCP refuses to act on its guests,
    cluster_info and the inventory still answer."""
    lab = fresh_lab
    pve = lab.clusters['production'].pve
    lab.call(pve.set_node_offline, 'prod-pve1')
    before = writes(lab)
    start, nodes = mcp(lab, [('start_guest', {'name': 'prod-batch01'}), ('list_nodes', {'cluster': 'production'})],
                       write=True)
    assert start[0] is True and "node 'prod-pve1' of VM 'prod-batch01' (vmid 103) is offline" in start[1]
    assert 'nothing was changed' in start[1]
    assert dict((n['name'], n['status']) for n in nodes[1]['nodes'])['prod-pve1'] != 'online'
    result = play(lab, tmp_path, VM, [('info', {'name': ['production']}, {}, INFO),
                                      ('create', {'name': 'prod-new01', 'node': 'prod-pve1', 'memory': 512},
                                       MAY_FAIL)])
    assert result['info']['clusters'][0]['nodes_online'] == 2
    assert "node 'prod-pve1' is offline" in failed_message(result, 'create')
    inv = inventory(lab, tmp_path)
    assert inv.rc == 0 and 'prod-web01' in inv.hosts
    assert writes(lab) == before and pve.vm(103).status == 'stopped'


def test_guest_locked_by_migration(fresh_lab, tmp_path):
    """A migration holds the VM's lock and moves it: the module waits, then changes the VM on its new node.
    A lock that stays (backup) is named by MCP; the module case is test_pmx_vm.py::test_locked_vm_..."""
    lab = fresh_lab
    pve = lab.clusters['production'].pve
    pve.time_scale = 0.02
    lab.call(pve.migrate(100, 'prod-pve2', secs=200))  # 4 s of real time: the play starts while it runs
    lab.call(pve.snapshot_lock, 102, 'backup')
    result = play(lab, tmp_path, VM, [('update', {'name': 'prod-web01', 'memory': 2048, 'timeout': 30})])
    assert result.rc == 0, result.output
    assert pve.vm(100).node == 'prod-pve2'
    assert result['update']['changed'] is True and result['update']['node'] == 'prod-pve2'
    assert len(recorded(pve, 'POST', '/nodes/prod-pve2/qemu/100/config')) == 1
    assert effective(pve.vm(100), 'memory') == '2048'
    (stop,) = mcp(lab, [('stop_guest', {'name': 'prod-db01', 'confirm': True, 'timeout': 2})], write=True)
    assert stop[0] is True and "VM 'prod-db01' (vmid 102) is locked (backup)" in stop[1], stop
    assert pve.vm(102).status == 'running'


def test_shutdown_outlasting_its_timeout(fresh_lab, tmp_path):
    """MCP shutdown_guest of a VM that does not go down in time: a clear error; the module case (with force)
    is test_pmx_vm.py::test_stop_slow_shutdown_and_force."""
    lab = fresh_lab
    pve = lab.clusters['production'].pve
    pve.time_scale = 0.02
    pve.vm(101).shutdown_secs = 10000
    (shutdown,) = mcp(lab, [('shutdown_guest', {'name': 'prod-web02', 'timeout': 2})], write=True)
    assert shutdown[0] is True and "VM 'prod-web02' (vmid 101) did not shut down within 2s" in shutdown[1]
    assert pve.vm(101).status == 'running'


def test_task_error(fresh_lab, tmp_path):
    """A task ending in TASK ERROR: MCP and the module give its exit status and log; the rerun converges."""
    lab = fresh_lab
    pve = lab.clusters['production'].pve
    lab.call(lambda: pve.fail('POST', '/nodes/prod-pve1/qemu/103/status/start', error='qemu_exited_code', times=2))
    (start,) = mcp(lab, [('start_guest', {'name': 'prod-batch01'})], write=True)
    assert start[0] is True and 'task qmstart on node prod-pve1 failed: QEMU exited with code 1' in start[1]
    step = ('start', {'name': 'prod-batch01', 'state': 'started'})
    result = play(lab, tmp_path, VM, [step + (MAY_FAIL,), ('again', step[1])])
    assert 'TASK ERROR: QEMU exited with code 1' in failed_message(result, 'start')
    assert result['again']['changed'] is True and pve.vm(103).status == 'running'


HTML_PAGE = ('<!DOCTYPE html><html><head><title>502</title><style>p {}</style></head><body><h1>Proxy Error</h1>'
             '<p>upstream &amp; gone</p></body></html>')


def test_http_500_and_html_error_page(fresh_lab, tmp_path):
    """PVE answering 500 with an HTML page: readable text in every front end, no markup; a 500 on a create
    fails the create, the rerun creates exactly one VM."""
    lab = fresh_lab
    pve = lab.clusters['production'].pve
    lab.call(lambda: pve.fail('GET', '/cluster/resources', 500, HTML_PAGE, html=True))
    result = play(lab, tmp_path, VM, [('read', {'name': 'prod-web01', 'memory': 1024}, MAY_FAIL)])
    msg = failed_message(result, 'read')
    assert "cluster 'production': GET /cluster/resources failed (HTTP 500" in msg and 'Proxy Error' in msg, msg
    assert 'upstream & gone' in msg and '<' not in msg
    inv = inventory(lab, tmp_path)
    assert inv.rc == 0 and "cluster 'production' cannot be read" in inv.text and 'Proxy Error' in inv.text
    assert '<h1>' not in inv.stderr and 'stg-web01' in inv.hosts
    (guests,) = mcp(lab, [('list_guests', {})])
    error = guests[1]['errors'][0]['error']
    assert 'Proxy Error' in error and '<' not in error
    lab.call(lambda: pve.failures.clear())

    lab.call(lambda: pve.fail('POST', '/qemu', 500, 'got lock timeout (injected)', times=1))
    new = {'name': 'prod-new500', 'cores': 1, 'memory': 512, 'node': 'prod-pve2'}
    result = play(lab, tmp_path, VM, [('create', new, MAY_FAIL), ('retry', new), ('again', new)])
    assert 'HTTP 500 got lock timeout (injected)' in failed_message(result, 'create')
    assert result['retry']['changed'] is True and result['again']['changed'] is False
    assert len(vms_named(lab, 'production', 'prod-new500')) == 1


def test_revoked_token_is_401(fresh_lab, tmp_path):
    """The token is deleted on production: 401 naming the cluster and token id in each front end, no secret."""
    lab = fresh_lab
    pve = lab.clusters['production'].pve
    lab.call(lambda: pve.apitokens.pop('root@pam!pmx'))
    result = play(lab, tmp_path, VM, [('update', {'name': 'prod-web01', 'memory': 1024}, MAY_FAIL),
                                      ('other', {'name': 'stg-web01', 'memory': 1024}, CHECK)])
    msg = failed_message(result, 'update')
    assert ("cluster 'production': the API at %s rejected the token root@pam!pmx (401 authentication failure)"
            % url_of(lab, 'production')) in msg
    assert result['other']['changed'] is True
    inv = inventory(lab, tmp_path)
    assert inv.rc == 0 and "cluster 'production' cannot be read" in inv.text and 'rejected the token' in inv.text
    clusters, details = mcp(lab, [('list_clusters', {}), ('guest_details', {'name': 'prod-web01'})])
    health = dict((c['name'], c) for c in clusters[1]['clusters'])
    assert health['production']['reachable'] is False and '401' in health['production']['error']
    assert details[0] is True and 'rejected the token root@pam!pmx' in details[1]
    assert writes(lab) == []


def test_missing_privilege_is_403(fresh_lab, tmp_path):
    """A token that may only read: the write fails with 403 naming the cluster, the token and the privilege."""
    lab = fresh_lab
    pve = lab.clusters['production'].pve
    token = 'auditor@pve!pmx'

    def setup():
        pve.apitokens[token] = OTHER_SECRET
        pve.grant(token, '/', 'VM.Audit', 'Sys.Audit', 'Datastore.Audit')
    lab.call(setup)
    env = env_file(lab, tmp_path, replace={'PROXMOX_CLUSTER_production_TOKEN_ID': token,
                                           'PROXMOX_CLUSTER_production_TOKEN_SECRET': OTHER_SECRET})
    result = play(lab, tmp_path, VM, [('update', {'name': 'prod-web01', 'memory': 1024}, MAY_FAIL)], env=env)
    msg = failed_message(result, 'update')
    assert "cluster 'production': task qmconfig on node prod-pve1 failed: Permission check failed (/vms/100, " \
        "VM.Config.Memory). The token %s lacks this privilege. Grant the missing privilege to the token " \
        "(pveum acl modify" % token in msg, msg
    (start,) = mcp(lab, [('start_guest', {'name': 'prod-batch01'})], env=env, write=True)
    assert start[0] is True and 'permission denied' in start[1] and 'VM.PowerMgmt' in start[1], start
    inv = inventory(lab, tmp_path, env=env)
    assert inv.rc == 0 and 'prod-web01' in inv.hosts
    assert str(pve.vm(100).config['memory']) == '4096' and pve.vm(103).status == 'stopped'


def test_failed_writes_converge(fresh_lab, tmp_path):
    """A delete and a container create that fail once: the same play run again finishes the job, with one
    container, never two (the half-done clone case is test_pmx_vm.py::test_task_error_and_half_done_clone...)."""
    lab = fresh_lab
    pve = lab.clusters['staging'].pve
    pve.store_file('local', TEMPLATE, 120 * 1024 ** 2, content='vztmpl')
    lab.call(lambda: pve.fail('DELETE', '/qemu/103', 500, 'storage busy (injected)', times=1))
    lab.call(lambda: pve.fail('POST', '/nodes/stg-pve2/lxc', 503, 'proxy busy (injected)', times=1))
    ct = {'hostname': 'stg-ct-conv01', 'node': 'stg-pve2', 'ostemplate': 'local:vztmpl/' + TEMPLATE,
          'rootfs': 'local-lvm:8', 'memory': 512, 'password': CT_PASSWORD}
    gone = {'name': 'stg-batch01', 'state': 'absent'}
    steps = [('delete', gone, MAY_FAIL), ('ct', ct, MAY_FAIL, CT)]
    result = play(lab, tmp_path, VM, steps)
    assert 'storage busy (injected)' in failed_message(result, 'delete')
    assert 'proxy busy (injected)' in failed_message(result, 'ct')
    assert len(recorded(pve, 'POST', '/nodes/stg-pve2/lxc')) == 1  # a busy answer to a write is not retried
    assert pve.vm(103) is not None
    result = play(lab, tmp_path, VM, steps + [('delete_again', gone), ('ct_again', ct, {}, CT)])
    assert result.rc == 0, result.output
    assert result['delete']['changed'] is True and result['ct']['changed'] is True
    assert result['delete_again']['changed'] is False and result['ct_again']['changed'] is False
    assert pve.vm(103) is None and len([c for c in pve.cts if c.name == 'stg-ct-conv01']) == 1


# ================================================================== bad input: a clear error before any change

BAD_VM_STEPS = [
    ('space_underscore', {'name': 'prod_web 01', 'memory': 512},
     "the VM name 'prod_web 01' is not valid for Proxmox VE (it must be a DNS name such as prod-web01)"),
    ('too_long', {'name': 'prod-' + 'x' * 60, 'memory': 512}, 'longer than 63 characters'),
    ('leading_hyphen', {'name': '-prod-web01', 'memory': 512}, "'-prod-web01' is not a DNS label"),
    ('empty_label', {'name': 'prod-web01..lab', 'memory': 512}, "'' is not a DNS label"),
    ('vmid_low', {'name': 'prod-new01', 'vmid': 99, 'memory': 512}, 'vmid 99 is out of range'),
    ('vmid_high', {'name': 'prod-new01', 'vmid': 1000000000, 'memory': 512}, 'vmid 1000000000 is out of range'),
    ('cores_type', {'name': 'prod-web01', 'cores': 'lots'}, "argument 'cores' is of type"),
    ('bool_type', {'name': 'prod-web01', 'onboot': 'perhaps'}, "argument 'onboot' is of type"),
    ('state_choice', {'name': 'prod-web01', 'state': 'running'}, 'value of state must be one of'),
    ('raw_unknown', {'name': 'prod-web01', 'config': {'memroy': 1024}},
     "config key 'memroy' is not a Proxmox VE VM setting (did you mean 'memory'?); nothing was changed"),
    ('raw_vmid', {'name': 'prod-web01', 'config': {'vmid': 5}}, "config key 'vmid' is not accepted: use the vmid"),
    ('raw_name', {'name': 'prod-web01', 'config': {'name': 'other'}},
     "config key 'name' is not accepted: use the name"),
    ('raw_delete', {'name': 'prod-web01', 'config': {'delete': 'net0'}},
     "config key 'delete' is not accepted (it controls how PVE applies a change"),
    ('unknown_cluster', {'name': 'prod-web01', 'cluster': 'prodution', 'memory': 512}, "Did you mean 'production'?"),
]


def test_bad_guest_input_module(lab, tmp_path):
    """pmx_vm and pmx_lxc with names invalid for PVE, out-of-range vmids, wrong types and bad raw config keys:
    each step fails with a clear message and the clusters receive no write at all."""
    before = writes(lab)
    steps = [(name, params, MAY_FAIL) for name, params, dummy in BAD_VM_STEPS] + [
        ('ct_name', {'hostname': 'stg_ct 01', 'memory': 512}, MAY_FAIL, CT),
        ('ct_raw', {'hostname': 'stg-cache01', 'config': {'swapp': 512}}, MAY_FAIL, CT),
        ('ct_vmid', {'vmid': 5, 'state': 'absent'}, MAY_FAIL, CT)]
    result = play(lab, tmp_path, VM, steps)
    assert result.rc == 0, result.output
    for name, dummy, expected in BAD_VM_STEPS:
        assert expected in failed_message(result, name), (name, result[name]['msg'])
    assert "the container name 'stg_ct 01' is not valid for Proxmox VE" in failed_message(result, 'ct_name')
    assert "config key 'swapp' is not a Proxmox VE container setting (did you mean 'swap'?); nothing was changed" \
        in failed_message(result, 'ct_raw')
    assert 'vmid 5 is out of range' in failed_message(result, 'ct_vmid')
    assert writes(lab) == before


def test_bad_guest_input_mcp(lab, tmp_path):
    """The MCP write tools check names and vmids the same way, before any request."""
    counts = dict((n, len(c.pve.requests)) for n, c in lab.clusters.items())
    results = mcp(lab, [('create_vm', {'name': 'stg_web 01'}), ('create_vm', {'name': 'stg-new01', 'vmid': 99}),
                        ('clone_guest', {'source': 'stg-tpl-debian12', 'name': 'stg-' + 'y' * 70}),
                        ('create_vm', {'name': 'stg-new01', 'vmid': 1000000000})], write=True)
    assert [r[0] for r in results] == [True] * 4
    assert "the VM name 'stg_web 01' is not valid for Proxmox VE" in results[0][1]
    assert 'vmid 99 is out of range' in results[1][1] and 'vmid 1000000000 is out of range' in results[3][1]
    assert 'longer than 63 characters' in results[2][1]
    assert dict((n, len(c.pve.requests)) for n, c in lab.clusters.items()) == counts  # not even a read


BAD_CONFIGS = [
    ('malformed_line', {'extra': ['this line has no equals sign ' + OTHER_SECRET]},
     'has line(s) that are not KEY=VALUE: line 25'),
    ('duplicate_cluster', {'replace': {'PROXMOX_CLUSTERS': 'production,staging,disaster-recovery,staging'}},
     "PROXMOX_CLUSTERS names the cluster 'staging' twice"),
    ('unknown_default', {'replace': {'PROXMOX_DEFAULT_CLUSTER': 'prodution'}},
     "the default cluster 'prodution' (PROXMOX_DEFAULT_CLUSTER) is not configured"),
    ('catch_all_pattern', {'replace': {'PROXMOX_CLUSTER_staging_PATTERNS': 'stg-*,*'}},
     "PROXMOX_CLUSTER_staging_PATTERNS: pattern '*' is not allowed"),
    ('pattern_with_space', {'replace': {'PROXMOX_CLUSTER_staging_PATTERNS': 'stg *'}},
     "PROXMOX_CLUSTER_staging_PATTERNS: pattern 'stg *' is not allowed"),
    ('prefix_map_unknown_cluster', {'extra': ['PROXMOX_CLUSTER_PATTERNS=prod-:prodution']},
     "PROXMOX_CLUSTER_PATTERNS maps 'prod-' to the unknown cluster 'prodution'"),
    ('bad_api_url', {'replace': {'PROXMOX_CLUSTER_staging_API_URL': 'ftp://pve'}},
     'PROXMOX_CLUSTER_staging_API_URL must be an https URL'),
    ('bad_timeout', {'extra': ['PROXMOX_CLUSTER_staging_TIMEOUT=soon']},
     'PROXMOX_CLUSTER_staging_TIMEOUT must be a positive number of seconds'),
]


def test_bad_configuration_every_front_end(lab, tmp_path):
    """Each broken .env: the module fails (one task per file, given as env_file), the inventory fails
    (ANY_UNPARSED_IS_FAILED) and every MCP tool reports it, each with the message naming the variable;
    nothing is written."""
    files = dict((case, env_file(lab, tmp_path, name=case + '.env', **change)) for case, change, dummy in BAD_CONFIGS)
    before = writes(lab)
    result = play(lab, tmp_path, VM, [(case, {'name': 'stg-web01', 'memory': 512, 'env_file': str(files[case])},
                                       MAY_FAIL) for case, dummy, dummy2 in BAD_CONFIGS])
    for case, dummy, expected in BAD_CONFIGS:
        assert expected in failed_message(result, case), case
        inv = inventory(lab, tmp_path, env=files[case], fail_unparsed=True)
        assert inv.rc != 0 and expected in inv.text and 'Traceback' not in inv.stderr, (case, inv.stderr)
        (clusters,) = mcp(lab, [('list_clusters', {})], env=files[case])
        assert clusters[0] is True and expected in clusters[1], case
    assert writes(lab) == before


def test_unknown_cluster_name_every_front_end(lab, tmp_path):
    """An unknown cluster name (the module case is in BAD_VM_STEPS): inventory and MCP suggest the close match."""
    inv = inventory(lab, tmp_path, {'include_clusters': ['stagin']}, fail_unparsed=True)
    assert inv.rc != 0 and "unknown cluster 'stagin'" in inv.text and "Did you mean 'staging'?" in inv.text
    (guests,) = mcp(lab, [('list_guests', {'cluster': 'stagin'})])
    assert guests[0] is True and "Did you mean 'staging'?" in guests[1]


# ================================================================== security

def test_tls_verification_on_by_default(lab, tmp_path):
    """Without CA_BUNDLE the lab's self-signed certificate is refused (verification is on by default); with a
    CA that did not sign it, too: a clear message naming the cluster and the two ways out, in every front end."""
    other_ca = make_cert(str(tmp_path), name='other', hosts=(lab.clusters['production'].host,))[0]
    no_ca = env_file(lab, tmp_path, drop=['PROXMOX_CLUSTER_production_CA_BUNDLE'], name='no-ca.env')
    wrong_ca = env_file(lab, tmp_path, replace={'PROXMOX_CLUSTER_production_CA_BUNDLE': other_ca}, name='wrong.env')
    result = play(lab, tmp_path, VM, [(name, {'name': 'prod-web01', 'memory': 512, 'env_file': str(env)}, MAY_FAIL)
                                      for name, env in (('no_ca', no_ca), ('wrong_ca', wrong_ca))])
    for name, env in (('no_ca', no_ca), ('wrong_ca', wrong_ca)):
        msg = failed_message(result, name)
        assert "cluster 'production': TLS certificate verification failed for %s" % url_of(lab, 'production') in msg
        assert 'PROXMOX_CLUSTER_production_CA_BUNDLE' in msg and 'PROXMOX_CLUSTER_production_VERIFY_SSL=false' in msg
        inv = inventory(lab, tmp_path, env=env)
        assert inv.rc == 0 and 'TLS certificate verification failed' in inv.text and 'prod-web01' not in inv.hosts
        (details,) = mcp(lab, [('guest_details', {'name': 'prod-web01'})], env=env)
        assert details[0] is True and 'TLS certificate verification failed' in details[1]


def test_verify_ssl_off_is_per_cluster_and_warns(lab, tmp_path):
    """VERIFY_SSL=false for staging only: staging works with a warning naming it; production, given a wrong CA,
    is still verified and refused."""
    other_ca = make_cert(str(tmp_path), name='other', hosts=(lab.clusters['production'].host,))[0]
    env = env_file(lab, tmp_path, drop=['PROXMOX_CLUSTER_staging_CA_BUNDLE'],
                   replace={'PROXMOX_CLUSTER_production_CA_BUNDLE': other_ca},
                   extra=['PROXMOX_CLUSTER_staging_VERIFY_SSL=false'])
    warning = "TLS certificate verification is off for cluster 'staging'"
    result = play(lab, tmp_path, VM, [('stg', {'name': 'stg-web01', 'memory': 512}, CHECK),
                                      ('prod', {'name': 'prod-web01', 'memory': 512}, MAY_FAIL)], env=env)
    assert result['stg']['changed'] is True and warning in ' '.join(result.output.split())
    assert "verification is off for cluster 'production'" not in result.output
    assert 'TLS certificate verification failed' in failed_message(result, 'prod')
    inv = inventory(lab, tmp_path, env=env)
    assert inv.rc == 0 and warning in inv.text and 'stg-web01' in inv.hosts and 'prod-web01' not in inv.hosts
    stderr = []
    (details,) = mcp(lab, [('guest_details', {'name': 'stg-web01'})], env=env, stderr_out=stderr)
    assert details[0] is False and warning in ' '.join(stderr[0].split())


def test_world_readable_env_file_warns(lab, tmp_path):
    """A .env other users can read: each front end warns (the module case is also in test_bad_input.py)."""
    env = env_file(lab, tmp_path, mode=0o644)
    warning = 'holds secrets but other users can read it; run: chmod 600'
    result = play(lab, tmp_path, VM, [('task', {'name': 'stg-web01', 'memory': 512}, CHECK)], env=env)
    assert result.rc == 0 and warning in ' '.join(result.output.split())
    inv = inventory(lab, tmp_path, env=env)
    assert inv.rc == 0 and warning in inv.text
    stderr = []
    mcp(lab, [('list_clusters', {})], env=env, stderr_out=stderr)
    assert warning in ' '.join(stderr[0].split())


def test_mcp_writes_off_by_default_and_destructive_needs_confirm(lab, tmp_path):
    """Default server: no write tool; with writes on, delete without confirm is only a preview (the full cases
    are test_mcp.py::test_write_refused_by_default and ::test_destructive_without_confirm_changes_nothing)."""
    (start,) = mcp(lab, [('start_guest', {'name': 'stg-batch01'})])
    assert start[0] is True and 'Unknown tool' in start[1]
    (preview,) = mcp(lab, [('delete_guest', {'name': 'stg-batch01'})], write=True)
    assert preview[0] is False and preview[1]['preview'] is True and preview[1]['changed'] is False
    assert lab.clusters['staging'].pve.vm(103) is not None and lab.clusters['staging'].pve.vm(103).status == 'stopped'
