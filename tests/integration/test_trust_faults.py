"""Retries, hangs, ports that do not speak TLS, and secrets that cannot be sent (issue 12), end to end.

Through the real front ends against the fakepve lab, as in test_faults.py: a module in a play
(ansible-playbook -vvv), the inventory (ansible-inventory --list) and the installed MCP server through the
official client. Timing comes from the lab's hooks, never from sleeps: fakepve's flaky network with a
seeded generator, and conftest's NetworkFault stand-in to hang chosen requests and count every one that
reached the fake. Everything printed or returned is captured for the session-wide secret scan
(test_zz_secret_scan.py). docs/fault-matrix.md lists the cases (F1...).
"""

import random
import time

import pytest

import pmxlab
from conftest import (
    FRESH_LAB_HOST,
    INFO,
    MAY_FAIL,
    VM,
    env_file,
    failed_message,
    inventory,
    mcp,
    network_fault,
    play,
    register_secret,
    url_of,
)

JUNK = 'Junk-after-the-break-7c1e'
# The hang outlasts every timeout and deadline of these cases: an answer can only come from the collection.
HANG = 20


class CountingRandom(random.Random):
    """A fake's generator, seeded, that counts the requests reaching the fake.

    fakepve draws the latency jitter (uniform) once per request, before it decides to drop it.
    """

    def __init__(self, seed):
        super().__init__(seed)
        self.arrivals = 0

    def uniform(self, a, b):
        self.arrivals += 1
        return super().uniform(a, b)


def flaky(lab, cluster, drop_rate, seed):
    """fakepve's flaky network for one cluster, its generator seeded (run on the lab's loop)."""
    pve = lab.clusters[cluster].pve
    generator = CountingRandom(seed)

    def install():
        pve._random = generator  # pylint: disable=protected-access
        pve.flaky_network(drop_rate=drop_rate)
    lab.call(install)
    return generator


def health_is_right(info, lab):
    """A cluster's health as the lab has it: reachable, its version, quorate, 3 of 3 nodes, the sample guests."""
    cluster = lab.clusters[info['name']]
    return (info['reachable'] is True and info['error'] is None and info['version'] == cluster.pve.version
            and info['quorate'] is True and info['nodes_online'] == info['nodes_total'] == 3
            and [n['name'] for n in info['nodes']] == cluster.nodes
            and info['guests'] == {'qemu': {'running': 3, 'stopped': 1, 'total': 4, 'templates': 1},
                                   'lxc': {'running': 1, 'stopped': 1, 'total': 2, 'templates': 0}})


# ================================================================== 30% of the requests dropped

def test_thirty_percent_drops_in_process(fresh_lab, fresh_config):
    """100 health gatherings (a new registry each, as 100 pmx_cluster_info runs) while 30% of production's
    requests are dropped: reads are retried within the policy, and at least 99 answer correctly."""
    from ansible_collections.pmx.multicluster.plugins.module_utils.registry import ClusterRegistry
    lab = fresh_lab
    pve = lab.clusters['production'].pve
    generator = flaky(lab, 'production', 0.3, seed=20261201)
    answered_before = len(pve.requests)
    started = time.monotonic()
    correct = 0
    wrong = []
    for dummy in range(100):
        health = ClusterRegistry(fresh_config).validate_all_clusters()
        if all(health_is_right(info, lab) for info in health):
            correct += 1
        else:
            wrong.extend(info['error'] for info in health if not health_is_right(info, lab))
    elapsed = time.monotonic() - started
    answered = len(pve.requests) - answered_before
    dropped = generator.arrivals - answered
    print('\n30%% drops: %d of 100 health gatherings correct in %.1fs; production received %d requests, dropped %d '
          '(%.0f%%), answered %d' % (correct, elapsed, generator.arrivals, dropped,
                                     100.0 * dropped / generator.arrivals, answered))
    assert correct >= 99, wrong
    assert answered == 300  # version, cluster/status and cluster/resources, 100 times
    assert 0.2 < dropped / generator.arrivals < 0.4


def test_thirty_percent_drops_play(fresh_lab, tmp_path):
    """pmx_cluster_info in a real play, 30% of production's requests dropped: every cluster's health is right."""
    lab = fresh_lab
    pve = lab.clusters['production'].pve
    generator = flaky(lab, 'production', 0.3, seed=7)
    answered_before = len(pve.requests)
    result = play(lab, tmp_path, INFO, [('info%d' % n, {}) for n in range(3)])
    assert result.rc == 0, result.output
    for n in range(3):
        clusters = result['info%d' % n]['clusters']
        assert [c['name'] for c in clusters] == list(lab.clusters)
        assert all(health_is_right(info, lab) for info in clusters), clusters
        assert result['info%d' % n]['unreachable_clusters'] == []
    answered = len(pve.requests) - answered_before
    assert answered == 9 and generator.arrivals > answered  # some requests were dropped, and retried


# ================================================================== a hanging cluster

def test_hanging_cluster_mcp_answers_within_the_deadline(fresh_lab, tmp_path, monkeypatch):
    """production's /cluster/resources hangs (20 s) and PMX_MCP_DEADLINE=1: list_guests answers within the
    deadline with the other clusters' guests and production named; the next call in the same session answers
    at once, saying production is remembered as failed, without sending it a request."""
    lab = fresh_lab
    monkeypatch.setenv('PMX_MCP_DEADLINE', '1')
    fault = network_fault(lab, 'production', lambda method, path, n: path.endswith('/cluster/resources'),
                          hang_secs=HANG)
    seconds = []
    first, second, clusters = mcp(lab, [('list_guests', {}), ('list_guests', {}), ('list_clusters', {})],
                                  seconds_out=seconds)
    print('\nMCP with a hanging cluster, deadline 1 s: list_guests %.2fs, again %.2fs, list_clusters %.2fs'
          % tuple(seconds))
    assert first[0] is False and second[0] is False
    assert seconds[0] < 8 and seconds[1] < 1 and seconds[2] < 1
    assert {g['cluster'] for g in first[1]['guests']} == {'staging', 'disaster-recovery'}
    assert first[1]['count'] == 14 and first[1]['clusters'] == list(lab.clusters)
    assert first[1]['errors'] == [{'cluster': 'production', 'error': "cluster 'production' did not answer within 1s; "
                                                                     "it is left out of this answer"}]
    error = second[1]['errors'][0]
    print('the second call: %s' % error['error'])
    assert error['cluster'] == 'production' and second[1]['count'] == 14
    assert "cluster 'production' did not answer" in error['error']
    assert '(no answer within the 1s deadline); not retried for another' in error['error']
    health = dict((c['name'], c) for c in clusters[1]['clusters'])
    assert health['production']['reachable'] is False and health['staging']['reachable'] is True
    assert [u['cluster'] for u in clusters[1]['unreachable']] == ['production']
    # list_clusters asks for /version first: nothing of production's was asked after the first call.
    assert fault.count('GET', '/cluster/resources') == 1 and fault.count('GET', '/version') == 0


def test_hanging_cluster_costs_the_inventory_one_timeout(tmp_path):
    """want_config with production's config requests hanging (TIMEOUT=1, 26 guests, 10 requests at a time):
    the first requests time out together, the rest fail at once from the memory of the failure. In all about
    one timeout, not one per guest; the other clusters are listed with their config."""
    with pmxlab.Lab(str(tmp_path / 'lab'), clusters=3, first_host=FRESH_LAB_HOST, guests_per_cluster=20) as lab:
        guests = len([g for g in lab.clusters['production'].pve.vms if not g.template]) + len(
            lab.clusters['production'].pve.cts)
        assert guests == 26
        env = env_file(lab, tmp_path, extra=['PROXMOX_CLUSTER_production_TIMEOUT=1'])
        fault = network_fault(lab, 'production', lambda method, path, n: method == 'GET' and path.endswith('/config'),
                              hang_secs=HANG)
        started = time.monotonic()
        inv = inventory(lab, tmp_path, {'want_config': True}, env=env)
        elapsed = time.monotonic() - started
        sent = fault.count('GET', '/config')
        print('\ninventory want_config, production hanging: %.1fs for %d guests with TIMEOUT=1 (one timeout per '
              'guest would be %ds); %d config requests reached production' % (elapsed, guests, guests, sent))
        assert inv.rc == 0, inv.stderr
        assert elapsed < 12, elapsed
        assert sent <= 10  # at most the requests in flight when the first timed out
        assert "cluster 'production' details of some guests cannot be read" in inv.text
        assert '%d guest(s)' % guests in inv.text and 'did not answer' in inv.text
        assert inv.data['_meta']['hostvars']['stg-web01']['pmx_config']['cores'] == 2
        assert 'pmx_config' not in inv.data['_meta']['hostvars']['prod-web01']


def test_hanging_read_is_sent_once_by_a_module(fresh_lab, tmp_path):
    """A module whose first read hangs fails after one timeout: the GET is not repeated (it was sent 3 times),
    and the play's other task, for another cluster, works."""
    lab = fresh_lab
    env = env_file(lab, tmp_path, extra=['PROXMOX_CLUSTER_production_TIMEOUT=1'])
    fault = network_fault(lab, 'production', lambda method, path, n: method == 'GET', hang_secs=HANG)
    started = time.monotonic()
    result = play(lab, tmp_path, VM, [('read', {'name': 'prod-web01', 'memory': 1024}, MAY_FAIL),
                                      ('info', {}, {}, INFO)], env=env)
    elapsed = time.monotonic() - started
    print('\nmodule, production hanging: play of 2 tasks in %.1fs, %d GET(s) reached production'
          % (elapsed, len(fault.arrived)))
    msg = failed_message(result, 'read')
    assert "cluster 'production' is unreachable: %s: no answer within 1s, PROXMOX_CLUSTER_production_TIMEOUT" \
        % url_of(lab, 'production') in msg, msg
    # One GET per process (pmx_vm, then pmx_cluster_info): each paid one timeout, then remembered it.
    assert len(fault.arrived) == 2, fault.arrived
    info = dict((c['name'], c) for c in result['info']['clusters'])
    assert info['production']['reachable'] is False and 'no answer within 1s' in info['production']['error']
    assert health_is_right(info['staging'], lab)


# ================================================================== a port that does not speak TLS

def test_port_without_tls(lab, tmp_path, plain_http):
    """production's API_URL points at a plain HTTP server: every front end says the port answered but not with
    TLS and to check it is the PVE API (https, 8006); none advises turning verification off."""
    env = env_file(lab, tmp_path, replace={'PROXMOX_CLUSTER_production_API_URL': plain_http})
    expected = ("cluster 'production': %s answered, but not with TLS (wrong version number). Check that "
                "PROXMOX_CLUSTER_production_API_URL is the Proxmox VE API: https:// and its port, 8006" % plain_http)

    result = play(lab, tmp_path, VM, [('vm', {'name': 'prod-web01', 'memory': 1024}, MAY_FAIL),
                                      ('info', {}, {}, INFO)], env=env)
    assert expected in failed_message(result, 'vm')
    info = dict((c['name'], c) for c in result['info']['clusters'])
    assert expected in info['production']['error'] and info['staging']['reachable'] is True
    inv = inventory(lab, tmp_path, env=env)
    assert inv.rc == 0 and "cluster 'production' cannot be read" in inv.text and expected in inv.text
    assert 'stg-web01' in inv.hosts and 'prod-web01' not in inv.hosts
    clusters, details = mcp(lab, [('list_clusters', {}), ('guest_details', {'name': 'prod-web01'})], env=env)
    assert [u['cluster'] for u in clusters[1]['unreachable']] == ['production']
    assert expected in clusters[1]['unreachable'][0]['error']
    assert details[0] is True and 'answered, but not with TLS' in details[1]
    for text in (result.output, inv.stderr, str(clusters), details[1]):
        assert 'VERIFY_SSL' not in text and 'verification off' not in text


# ================================================================== a secret that cannot be an HTTP header

@pytest.mark.parametrize('escape', ['\\n', '\\t'], ids=['newline', 'tab'])
def test_secret_that_cannot_be_a_header(lab, tmp_path, escape):
    """production's token secret with a line break (or a tab) in the middle, as pasted into .env: the configuration
    is refused when it is read (a PVE token secret is one line), in every front end, naming the variable; nothing
    is sent to any cluster and no part of the secret is shown. (The client refuses such a secret too, before any
    request, should one reach it another way: tests/lab/test_client.py.)"""
    secret = lab.clusters['production'].token_secret
    bad = secret + {'\\n': '\n', '\\t': '\t'}[escape] + JUNK
    register_secret(bad, JUNK)
    env = env_file(lab, tmp_path, replace={'PROXMOX_CLUSTER_production_TOKEN_SECRET': '"%s%s%s"'
                                           % (secret, escape, JUNK)})
    expected = 'PROXMOX_CLUSTER_production_TOKEN_SECRET contains a line break or another control character'
    before = dict((name, len(c.pve.requests)) for name, c in lab.clusters.items())

    result = play(lab, tmp_path, VM, [('vm', {'name': 'prod-web01', 'memory': 1024}, MAY_FAIL),
                                      ('info', {}, MAY_FAIL, INFO)], env=env)
    assert expected in failed_message(result, 'vm') and expected in failed_message(result, 'info')
    inv = inventory(lab, tmp_path, env=env, fail_unparsed=True)
    assert inv.rc != 0 and expected in inv.text
    guests, details = mcp(lab, [('list_guests', {}), ('guest_details', {'name': 'prod-web01'})], env=env)
    assert guests[0] is True and expected in guests[1]
    assert details[0] is True and expected in details[1]
    assert dict((name, len(c.pve.requests)) for name, c in lab.clusters.items()) == before  # nothing sent
    for text in (result.output, inv.stdout, inv.stderr, str(guests), details[1]):
        assert JUNK not in text and 'in header value' not in text
