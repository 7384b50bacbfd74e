"""The MCP server's confirmation gate and audit log (extensions/mcp/pmx_gate.py) as plain Python: token
binding and lifetime with an injected clock, one use under concurrency, and concurrent audit writers."""

import json
import multiprocessing
import threading

from ansible_collections.pmx.multicluster.extensions.mcp import pmx_gate
from ansible_collections.pmx.multicluster.plugins.module_utils.redact import Scrubber


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now


def test_token_binding_lifetime_and_one_use():
    clock = Clock()
    gate = pmx_gate.Gate(ttl=60, clock=clock)
    target = pmx_gate.target_of({'cluster': 'production', 'guest': {'vmid': 100, 'name': 'prod-web01'},
                                 'was': {'cluster': 'production', 'node': 'n1', 'status': 'running'}})
    assert target == {'cluster': 'production', 'guest': [100, 'prod-web01'],
                      'was': {'cluster': 'production', 'node': 'n1', 'vmid': None, 'name': None}}
    binding = gate.binding('stop_guest', {'name': 'prod-web01', 'timeout': 120}, target)
    other = gate.binding('stop_guest', {'name': 'prod-web01', 'timeout': 30}, target)
    token = gate.issue('stop_guest', binding, target)['confirmation_token']
    assert 'another action (stop_guest of prod-web01 (vmid 100)' in gate.redeem(token, other)[0]
    assert 'not a token' in gate.redeem('nonsense', binding)[0]
    clock.now += 61
    assert 'expired' in gate.redeem(token, binding)[0]
    token = gate.issue('stop_guest', binding, target)['confirmation_token']
    assert gate.redeem(token, binding)[0] is None
    assert 'already used' in gate.redeem(token, binding)[0]
    # Another process (a restart): the same token is unknown there.
    assert 'not issued by this server process' in pmx_gate.Gate(ttl=60, clock=clock).redeem(token, binding)[0]


def test_a_token_confirms_one_of_many_concurrent_calls():
    gate = pmx_gate.Gate(ttl=60)
    binding = gate.binding('delete_guest', {'name': 'x'}, {'cluster': 'c'})
    token = gate.issue('delete_guest', binding, {'cluster': 'c'})['confirmation_token']
    results = []
    start = threading.Barrier(16)

    def redeem():
        start.wait()
        results.append(gate.redeem(token, binding)[0])

    threads = [threading.Thread(target=redeem) for dummy in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(None) == 1 and all('already used' in r for r in results if r is not None)


def test_http_token_and_bind_checks(tmp_path):
    empty = tmp_path / 'empty'
    empty.write_text('\n')
    good = tmp_path / 'token'
    good.write_text('0123456789abcdef0123\n')
    for environ, path, message in (({}, str(empty), 'is empty'), ({'PMX_MCP_HTTP_TOKEN': 'short'}, None, 'too short'),
                                   ({}, str(tmp_path / 'nosuch'), 'cannot be read: No such file')):
        try:
            pmx_gate.http_token(environ, path)
        except pmx_gate.ConfigError as exc:
            assert message in str(exc)
        else:
            raise AssertionError(message)
    assert pmx_gate.http_token({'PMX_MCP_HTTP_TOKEN': 'x' * 20}, str(good)) == '0123456789abcdef0123'
    assert pmx_gate.http_token({'PMX_MCP_HTTP_TOKEN_FILE': str(good)}, None) == '0123456789abcdef0123'
    assert pmx_gate.http_token({}, None) is None
    for host in ('127.0.0.1', '127.42.11.90', 'localhost', '::1'):
        pmx_gate.check_bind(host, None)
    for host in ('0.0.0.0', '192.0.2.10', '::', 'mcp.example.com'):
        try:
            pmx_gate.check_bind(host, None)
        except pmx_gate.ConfigError as exc:
            assert 'refusing to listen on %s without a bearer token' % host in str(exc)
        else:
            raise AssertionError(host)
        pmx_gate.check_bind(host, 'a-token-of-sixteen-chars')
    security = pmx_gate.transport_security('10.0.0.5', 8765, ['mcp.example.com', 'other:9000'])
    assert {'10.0.0.5:8765', 'mcp.example.com', 'mcp.example.com:*', 'other:9000'} <= set(security.allowed_hosts)
    assert 'https://mcp.example.com' in security.allowed_origins


def _writer(path, number):
    audit = pmx_gate.Audit(path, Scrubber(['writer-secret-value']).deep)
    for index in range(200):
        audit.record('stop_guest', {'name': 'w%d-%d' % (number, index), 'note': 'writer-secret-value ' + 'x' * 3000},
                     0.0, result={'changed': True, 'cluster': 'c', 'tasks': [{'upid': 'UPID:n:%d' % index}]})


def test_concurrent_audit_writers_never_interleave(tmp_path):
    path = str(tmp_path / 'audit.jsonl')
    procs = [multiprocessing.Process(target=_writer, args=(path, n)) for n in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    text = open(path, encoding='utf-8').read()
    rows = [json.loads(line) for line in text.splitlines()]
    assert len(rows) == 800 and len(set(r['arguments']['name'] for r in rows)) == 800
    assert all(r['tasks'] == ['UPID:n:%s' % r['arguments']['name'].split('-')[1]] for r in rows)
    assert 'writer-secret-value' not in text
    answer = pmx_gate.Audit(path, lambda v: v).read(limit=5, tool='stop_guest')
    assert answer['matched'] == 800 and answer['count'] == 5 and answer['truncated'] is True


def test_a_bulk_preview_binds_new_guests_by_name_and_steps_and_existing_ones_by_vmid():
    """The vmid a preview shows for a guest to be created is the free one it would take at that moment: guests
    planned at once take them in any order, so it is not bound; the guest's cluster, name and steps are. An
    existing guest is bound by its vmid."""
    def row(vmid, first_step, name='prod-a'):
        return {'cluster': 'production', 'vmid': vmid, 'name': name,
                'plan': [{'action': first_step, 'params': {'vmid': vmid}}, {'action': 'start'}]}

    new_106, new_107 = (pmx_gate.target_of({'guests': [row(vmid, 'create')]}) for vmid in (106, 107))
    assert new_106 == new_107 == {'guests': [['production', None, 'prod-a', ['create', 'start']]]}
    clone = pmx_gate.target_of({'guests': [row(106, 'clone')]})
    assert clone != new_106 and clone['guests'][0][3] == ['clone', 'start']
    existing_106, existing_107 = (pmx_gate.target_of({'guests': [row(vmid, 'shutdown')]}) for vmid in (106, 107))
    assert existing_106 == {'guests': [['production', 106, 'prod-a']]} and existing_106 != existing_107
