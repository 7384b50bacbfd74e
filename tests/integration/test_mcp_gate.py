"""The MCP server's confirmation gate, audit log and streamable HTTP transport, and its tools for the
migration, day-2 and fleet operations, through the official MCP client (stdio and streamable HTTP) against
a lab of its own. The fakes' own state and request records prove what a call did, or did not, do."""

import asyncio
import json
import socket
import subprocess
import sys
import time

import httpx2
import pytest

from conftest import _NET, MCP_SERVER, ansible_env, capture, lab_secrets, pmxlab, register_secret, run_mcp, writes

HOST = '127.%d.11.2' % _NET
CLIENT = ('pmx-gate-test', '1.2.3')
GATED = {'stop_guest', 'delete_guest', 'snapshot_rollback', 'snapshot_delete', 'snapshot_retention', 'prune_backups',
         'restore_backup', 'migrate_guest', 'bulk_guest_action', 'evacuate_node', 'disk_move', 'disk_detach'}


@pytest.fixture(scope='module')
def gate_lab(tmp_path_factory):
    with pmxlab.Lab(str(tmp_path_factory.mktemp('gatelab')), clusters=3, first_host=HOST) as running:
        running.add_storage('production', 'fast')
        yield running


def server_env(lab, **extra):
    extra = dict({'PMX_MCP_ALLOW_WRITE': '1'}, **extra)
    return ansible_env(env_file=lab.env_file, extra=dict((k, str(v)) for k, v in extra.items()))


def session(lab, body, session_options=None, **extra):
    """run_mcp with writes on, as CLIENT; the output is kept for the session-wide secret scan."""
    value, texts, stderr = run_mcp(server_env(lab, **extra), body, client_info=CLIENT, session_options=session_options)
    capture(lab, 'mcp', json.dumps(value, default=str), '\n'.join(texts), stderr)
    assert 'Traceback' not in stderr, stderr
    return value, texts, stderr


def status(lab, cluster, vmid):
    return lab.clusters[cluster].pve.vm(vmid).status


# ------------------------------------------------------------------ the gate

def test_gated_tools_schemas(gate_lab):
    """Every destructive tool takes a strict boolean confirm and a confirmation_token; write tools' output
    schemas list their fields, the preview and token fields included. Without PMX_MCP_AUDIT_LOG, audit_log says
    the log is off."""
    async def body(client):
        return (await client.session.list_tools()).tools, await client.call('audit_log')

    (tools, (err, text)), dummy, dummy = session(gate_lab, body)
    assert err is True and 'the audit log is off' in text and 'PMX_MCP_AUDIT_LOG' in text
    by_name = dict((t.name, t) for t in tools)
    destructive = set(n for n, t in by_name.items() if t.annotations.destructive_hint and t.annotations.idempotent_hint)
    assert destructive == GATED
    for name in GATED:
        props = by_name[name].input_schema['properties']
        assert props['confirm']['type'] == 'boolean' and props['confirm']['default'] is False
        assert props['confirmation_token']['description'], name
        assert 'mcp_context' not in props and 'mcp_context' not in json.dumps(by_name[name].input_schema)
        out = by_name[name].output_schema['properties']
        for field in ('preview', 'would', 'confirmation_token', 'token_expires_in', 'changed'):
            assert field in out, (name, field)
    for name in ('start_guest', 'create_vm', 'snapshot_create', 'backup_now', 'disk_resize'):
        assert 'cluster' in by_name[name].output_schema['properties'], name
        assert 'confirmation_token' not in by_name[name].input_schema['properties']
    assert {'entries', 'matched'} <= set(by_name['audit_log'].output_schema['properties'])


def test_token_gate(gate_lab):
    """No token: a preview and a token, nothing written; confirm without token, a string confirm, the token for
    another guest or tool: refused, nothing written; the right token with confirm=true acts, once."""
    lab = gate_lab
    before = len(writes(lab))

    async def body(client):
        out = {'preview': await client.call('stop_guest', name='prod-web01')}
        token = out['preview'][1]['confirmation_token']
        out['no_token'] = await client.call('stop_guest', name='prod-web01', confirm=True)
        out['token_only'] = await client.call('stop_guest', name='prod-web01', confirmation_token=token)
        out['yes'] = await client.call('stop_guest', name='prod-web01', confirm='yes', confirmation_token=token)
        out['true_text'] = await client.call('stop_guest', name='prod-web01', confirm='true', confirmation_token=token)
        out['other_guest'] = await client.call('stop_guest', name='prod-web02', confirm=True, confirmation_token=token)
        out['other_tool'] = await client.call('delete_guest', name='prod-web01', confirm=True,
                                              confirmation_token=token)
        out['other_args'] = await client.call('stop_guest', name='prod-web01', timeout=30, confirm=True,
                                              confirmation_token=token)
        out['forged'] = await client.call('stop_guest', name='prod-web01', confirm=True,
                                          confirmation_token=token[:-4] + 'AAAA')
        out['written_before_act'] = len(writes(lab)) - before
        out['act'] = await client.call('stop_guest', name='prod-web01', confirm=True, confirmation_token=token)
        out['reuse'] = await client.call('stop_guest', name='prod-web01', confirm=True, confirmation_token=token)
        out['refused_raw'] = await client.session.call_tool('stop_guest', {'name': 'prod-web02', 'confirm': True,
                                                                           'confirmation_token': token})
        return out

    res, texts, stderr = session(lab, body)
    err, preview = res['preview']
    assert not err and preview['preview'] is True and preview['changed'] is False
    assert preview['cluster'] == 'production' and preview['guest']['vmid'] == 100 and 'power off' in preview['would']
    assert preview['token_expires_in'] == 300 and preview['token_id'] in preview['confirmation_token']
    assert 'confirm=true' in preview['to_confirm'] and 'confirmation_token' in preview['to_confirm']
    assert res['no_token'][0] is False and res['no_token'][1]['preview'] is True
    assert 'does not act' in res['no_token'][1]['note']
    assert res['token_only'][1]['preview'] is True and 'only with confirm=true' in res['token_only'][1]['note']
    for key in ('yes', 'true_text'):
        assert res[key][0] is True and 'confirm' in res[key][1] and 'valid boolean' in res[key][1], res[key]
    assert res['other_guest'][0] is True and 'issued for another action (stop_guest of prod-web01 (vmid 100)' \
        in res['other_guest'][1] and 'nothing was changed' in res['other_guest'][1]
    assert res['other_tool'][0] is True and 'another action' in res['other_tool'][1]
    assert res['other_args'][0] is True and 'another action' in res['other_args'][1]
    assert res['forged'][0] is True and 'another action' in res['forged'][1]
    assert res['written_before_act'] == 0
    err, act = res['act']
    assert not err and act['changed'] is True and act['confirmed_token_id'] == preview['token_id']
    assert [t['action'] for t in act['tasks']] == ['stop']
    assert status(lab, 'production', 100) == 'stopped'
    assert res['reuse'][0] is True and 'already used' in res['reuse'][1]
    # A refusal carries a fresh preview of the call made (its guest, a new token), as data and as text.
    raw = res['refused_raw']
    fresh = raw.structured_content['error']['preview']
    assert raw.is_error and raw.structured_content['error']['type'] == 'ConfirmationRefused'
    assert fresh['guest']['name'] == 'prod-web02' and fresh['confirmation_token'] != preview['confirmation_token']
    assert json.loads(raw.content[1].text)['confirmation_token'] == fresh['confirmation_token']
    assert status(lab, 'production', 101) == 'running'
    for secret in lab_secrets(lab):
        assert secret not in '\n'.join(texts) + stderr


def test_stale_token_refused_then_fresh_one_acts(gate_lab):
    """PMX_MCP_CONFIRM_TTL=1: a token 2 s old is refused as expired (nothing written); the fresh preview's
    token in that refusal acts."""
    lab = gate_lab

    async def body(client):
        err, preview = await client.call('stop_guest', name='prod-db01')
        await asyncio.sleep(2.2)
        before = len(writes(lab))
        stale = await client.session.call_tool('stop_guest', {'name': 'prod-db01', 'confirm': True,
                                                              'confirmation_token': preview['confirmation_token']})
        written = len(writes(lab)) - before
        fresh = stale.structured_content['error']['preview']['confirmation_token']
        act = await client.call('stop_guest', name='prod-db01', confirm=True, confirmation_token=fresh)
        return preview, stale, written, act

    (preview, stale, written, act), dummy, dummy = session(lab, body, PMX_MCP_CONFIRM_TTL=1)
    assert preview['token_expires_in'] == 1
    assert stale.is_error and 'expired' in stale.content[0].text and 'valid for 1s' in stale.content[0].text
    assert written == 0
    assert act[0] is False and act[1]['changed'] is True and status(lab, 'production', 102) == 'stopped'


def test_bulk_preview_lists_every_guest_and_binds_the_selection(gate_lab):
    """bulk_guest_action previews every selected guest; its token does not confirm another selection; with it
    the action runs on exactly those guests."""
    lab = gate_lab
    expected = sorted((c, g.vmid) for c in lab.clusters for g in lab.clusters[c].guests()
                      if g.name.startswith(('stg-', 'dr-')) and g.name.endswith('01') and not g.template)
    assert len(expected) == 10

    async def body(client):
        args = {'action': 'snapshot', 'name_pattern': '*01', 'snapname': 'gate-bulk', 'cluster': '[sd]*'}
        err, preview = await client.call('bulk_guest_action', **args)
        other = await client.call('bulk_guest_action', **dict(args, name_pattern='*-web01'), confirm=True,
                                  confirmation_token=preview['confirmation_token'])
        act = await client.call('bulk_guest_action', **args, confirm=True,
                                confirmation_token=preview['confirmation_token'])
        return preview, other, act

    (preview, other, act), dummy, dummy = session(lab, body)
    assert preview['preview'] is True and sorted((g['cluster'], g['vmid']) for g in preview['guests']) == expected
    assert all(g['plan'] for g in preview['guests']) and str(len(expected)) in preview['would']
    assert other[0] is True and 'another action (bulk_guest_action of %d guest(s)' % len(expected) in other[1]
    assert act[0] is False and act[1]['changed'] is True and len(act[1]['guests']) == len(expected)
    snapped = sorted((c, g.vmid) for c in lab.clusters for g in lab.clusters[c].guests() if 'gate-bulk' in g.snapshots)
    assert snapped == expected


def test_elicitation_asks_the_person_when_enabled(gate_lab):
    """PMX_MCP_ELICIT=1 and a client that supports elicitation: the person is asked (the preview's words); an
    approval acts at once (no token), a refusal changes nothing and answers with the preview and a token."""
    from mcp.types import ElicitResult

    lab = gate_lab
    asked = []

    async def answer(context, params):
        asked.append(params.message)
        return ElicitResult(action='accept', content={'approve': 'dr-web01' in params.message})

    async def body(client):
        before = len(writes(lab))
        declined = await client.call('stop_guest', name='dr-web02')
        written = len(writes(lab)) - before
        approved = await client.call('stop_guest', name='dr-web01')
        return declined, written, approved

    (declined, written, approved), dummy, dummy = session(lab, body, session_options={'elicitation_callback': answer},
                                                          PMX_MCP_ELICIT=1)
    assert len(asked) == 2 and asked[0].startswith('stop_guest: power off the running VM') and 'Approve?' in asked[0]
    assert declined[0] is False and declined[1]['preview'] is True and 'declined' in declined[1]['note']
    assert declined[1]['confirmation_token'] and written == 0 and status(lab, 'disaster-recovery', 101) == 'running'
    assert approved[0] is False and approved[1]['changed'] is True and approved[1]['confirmed_by'] == 'elicitation'
    assert status(lab, 'disaster-recovery', 100) == 'stopped'


# ------------------------------------------------------------------ the audit log

def test_audit_log(gate_lab, tmp_path):
    """Every preview, refusal and write is one JSON line (time, tool, arguments, cluster, route reason, plan,
    UPIDs, outcome, client name); no token secret and no confirmation token in it; audit_log reads it."""
    lab = gate_lab
    log = tmp_path / 'audit.jsonl'

    async def body(client):
        out = {'start': await client.call('start_guest', name='prod-batch01')}
        err, preview = await client.call('snapshot_create', name='prod-batch01', snapname='audit1')
        err, preview = out['preview'] = await client.call('snapshot_delete', name='prod-batch01', snapname='audit1')
        out['refused'] = await client.call('snapshot_delete', name='prod-batch01', snapname='other', confirm=True,
                                           confirmation_token=preview['confirmation_token'])
        out['delete'] = await client.call('snapshot_delete', name='prod-batch01', snapname='audit1', confirm=True,
                                          confirmation_token=preview['confirmation_token'])
        out['failed'] = await client.call('start_guest', name='prod-nosuch01')
        out['read'] = await client.call('audit_log')
        out['deletes'] = await client.call('audit_log', tool_name='snapshot_delete', event='write')
        out['staging'] = await client.call('audit_log', cluster='staging')
        out['token'] = preview['confirmation_token']
        await client.call('shutdown_guest', name='prod-batch01')  # as it was
        return out

    res, texts, stderr = session(lab, body, PMX_MCP_AUDIT_LOG=log)
    text = log.read_text()
    lines = [json.loads(line) for line in text.splitlines()][:6]
    assert [(e['tool'], e['event'], e['outcome']) for e in lines] == [
        ('start_guest', 'write', 'changed'), ('snapshot_create', 'write', 'changed'),
        ('snapshot_delete', 'preview', 'preview'), ('snapshot_delete', 'refused', 'refused'),
        ('snapshot_delete', 'write', 'changed'), ('start_guest', 'write', 'failed')]
    for entry in lines:
        assert {'time', 'tool', 'arguments', 'cluster', 'route_reason', 'plan', 'tasks', 'outcome',
                'client'} <= set(entry)
        assert entry['client'] == CLIENT[0] and entry['client_version'] == CLIENT[1]
    start, dummy, preview, refused, delete, failed = lines
    assert start['cluster'] == 'production' and start['route_reason'] == "pattern 'prod-*'"
    assert start['tasks'] and all(t.startswith('UPID:') for t in start['tasks'])
    assert start['plan'] and start['arguments']['name'] == 'prod-batch01'
    assert preview['would'].startswith('delete snapshot(s) audit1') and preview['tasks'] == []
    assert preview['token_id'] == delete['token_id'] == res['preview'][1]['token_id']
    assert refused['arguments']['confirmation_token'] == {'token_id': preview['token_id']}
    assert 'another action' in refused['error'] and delete['tasks'] and delete['changed'] is True
    assert 'no guest' in failed['error']
    assert res['token'] not in text and res['token'].rsplit('.', 1)[1] not in text
    for secret in lab_secrets(lab):
        assert secret not in text
    err, read = res['read']
    assert not err and read['matched'] == 6 and [e['tool'] for e in read['entries']][0] == 'start_guest'
    assert read['entries'][0]['outcome'] == 'failed'
    assert [e['outcome'] for e in res['deletes'][1]['entries']] == ['changed']
    assert res['staging'][1]['matched'] == 0


def test_audit_log_unwritable(gate_lab, tmp_path):
    """A PMX_MCP_AUDIT_LOG that cannot be appended to is a configuration error that every tool reports (no
    write happens that the log would miss)."""
    async def body(client):
        return [await client.call('audit_log'), await client.call('start_guest', name='prod-batch01')]

    before = len(writes(gate_lab))
    (dummy, (err, text)), dummy, stderr = session(gate_lab, body, PMX_MCP_AUDIT_LOG=tmp_path / 'nosuch' / 'a.jsonl')
    assert err is True and 'cannot be appended to: No such file or directory' in text
    assert len(writes(gate_lab)) == before and 'configuration error' in stderr


# ------------------------------------------------------------------ streamable HTTP

def free_port(host):
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def start_http(lab, host, port, token=None, args=()):
    extra = {'PMX_MCP_HTTP_TOKEN': token} if token else {}
    return subprocess.Popen([sys.executable, str(MCP_SERVER), '--transport', 'http', '--host', host, '--port',
                             str(port)] + list(args), env=server_env(lab, **extra), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_listening(proc, host, port, seconds=20):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            socket.create_connection((host, port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError('the HTTP server did not listen within %ss' % seconds)


INIT = {'jsonrpc': '2.0', 'id': 1, 'method': 'initialize',
        'params': {'protocolVersion': '2025-06-18', 'capabilities': {}, 'clientInfo': {'name': 'raw', 'version': '0'}}}


def test_http_bearer_token(gate_lab):
    """--transport http with a token: no token or a wrong one is 401; the right one lists the tools through
    the SDK's streamable HTTP client, and calls a tool; the token never shows in the log."""
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    lab = gate_lab
    host = '127.%d.11.90' % _NET
    port = free_port(host)
    token = 'http-bearer-token-0123456789abcdef'
    register_secret(token)  # the session-wide scan looks for it too
    proc = start_http(lab, host, port, token, ['--allowed-host', 'mcp.example.test'])
    url = 'http://%s:%d/mcp' % (host, port)
    try:
        wait_listening(proc, host, port)
        headers = {'Accept': 'application/json, text/event-stream', 'Content-Type': 'application/json'}
        missing = httpx2.post(url, json=INIT, headers=headers, timeout=10)
        wrong = httpx2.post(url, json=INIT, headers=dict(headers, Authorization='Bearer not-the-token'), timeout=10)
        rebinding = httpx2.post(url, json=INIT, headers=dict(headers, Authorization='Bearer ' + token,
                                                             Host='evil.example:%d' % port), timeout=10)
        proxied = httpx2.post(url, json=INIT, headers=dict(headers, Authorization='Bearer ' + token,
                                                           Host='mcp.example.test'), timeout=10)

        async def client():
            async with httpx2.AsyncClient(headers={'Authorization': 'Bearer ' + token}, timeout=30) as http:
                async with streamable_http_client(url, http_client=http) as (read, write):
                    async with ClientSession(read, write) as mcp_session:
                        await mcp_session.initialize()
                        tools = (await mcp_session.list_tools()).tools
                        route = await mcp_session.call_tool('route_guest', {'name': 'stg-new01'})
                        return tools, route

        tools, route = asyncio.run(asyncio.wait_for(client(), 60))
    finally:
        proc.terminate()
        stdout, stderr = proc.communicate(timeout=20)
    assert missing.status_code == 401 and wrong.status_code == 401, (missing.text, wrong.text)
    assert 'invalid_token' in missing.text
    assert rebinding.status_code in (403, 421), rebinding.text
    assert proxied.status_code == 200, proxied.text
    assert {'list_guests', 'stop_guest', 'audit_log'} <= set(t.name for t in tools)
    assert route.structured_content['cluster'] == 'staging'
    assert token not in stdout + stderr and 'Traceback' not in stderr
    capture(lab, 'mcp-http', stdout, stderr, json.dumps(route.structured_content))


def test_http_refuses_non_loopback_without_token(gate_lab):
    """Listening on a non-loopback address without a bearer token is refused at start, with what to set (an
    empty or short token: tests/mcp/test_confirm_gate.py); loopback without a token is the documented default."""
    lab = gate_lab
    refused = subprocess.run([sys.executable, str(MCP_SERVER), '--transport', 'http', '--port', '9', '--host',
                              '0.0.0.0'], env=server_env(lab), capture_output=True, text=True, timeout=60,
                             stdin=subprocess.DEVNULL, check=False)
    assert refused.returncode == 2 and 'refusing to listen on 0.0.0.0 without a bearer token' in refused.stderr
    assert 'PMX_MCP_HTTP_TOKEN' in refused.stderr and 'Traceback' not in refused.stderr
    host = '127.%d.11.91' % _NET
    port = free_port(host)
    proc = start_http(lab, host, port)
    try:
        wait_listening(proc, host, port)
        answer = httpx2.post('http://%s:%d/mcp' % (host, port), json=INIT, timeout=10,
                             headers={'Accept': 'application/json, text/event-stream',
                                      'Content-Type': 'application/json'})
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
    assert answer.status_code == 200, answer.text


# ------------------------------------------------------------------ the tools for the newer operations

def test_evacuate_node_and_disk_tools(gate_lab):
    """evacuate_node previews every guest of the node and where it goes, then moves them all; disk_move and
    disk_detach preview, then act through the core's planner; prune_backups takes the keep rules of
    pmx_backup (at least one)."""
    lab = gate_lab
    pve = lab.clusters['staging'].pve
    on_node = sorted(g.vmid for g in lab.clusters['staging'].guests() if g.node == 'stg-pve2' and not g.template)
    assert on_node

    async def body(client):
        out = {'evacuate_preview': await client.call('evacuate_node', cluster='staging', node='stg-pve2')}
        out['evacuate'] = await client.confirmed('evacuate_node', cluster='staging', node='stg-pve2')
        out['evacuate_again'] = await client.call('evacuate_node', cluster='staging', node='stg-pve2')
        out['move_preview'] = await client.call('disk_move', name='prod-batch01', disk='scsi0', storage='fast')
        out['move'] = await client.confirmed('disk_move', name='prod-batch01', disk='scsi0', storage='fast')
        out['moved_config'] = dict(lab.clusters['production'].pve.vm(103).config)
        out['move_again'] = await client.call('disk_move', name='prod-batch01', disk='scsi0', storage='fast')
        out['detach_preview'] = await client.call('disk_detach', name='prod-batch01', disk='scsi0')
        out['detach'] = await client.confirmed('disk_detach', name='prod-batch01', disk='scsi0')
        out['no_disk'] = await client.call('disk_detach', name='prod-batch01', disk='scsi7')
        out['prune_no_rule'] = await client.call('prune_backups', name='prod-web02', storage='backup-nfs')
        out['prune_daily'] = await client.call('prune_backups', name='prod-web02', storage='backup-nfs', keep_daily=1)
        return out

    res, dummy, dummy = session(lab, body)
    err, preview = res['evacuate_preview']
    assert not err and preview['preview'] is True and sorted(m['vmid'] for m in preview['moves']) == on_node
    assert all(m['target_node'] in ('stg-pve1', 'stg-pve3') for m in preview['moves'])
    err, done = res['evacuate']
    assert not err and done['changed'] is True and not done['failed'] and len(done['results']) == len(on_node)
    assert not [g for g in lab.clusters['staging'].guests() if g.node == 'stg-pve2' and not g.template]
    for move in preview['moves']:
        assert pve.vm(move['vmid']).node == move['target_node']
    assert res['evacuate_again'][1]['changed'] is False and 'nothing' in res['evacuate_again'][1]['would']
    err, move = res['move_preview']
    assert not err and move['preview'] is True and 'move disk scsi0 to storage fast' in move['would']
    assert [s['action'] for s in move['plan']] == ['move_disk']
    assert res['move'][1]['changed'] is True
    moved = res['moved_config']
    assert moved['scsi0'].startswith('fast:') and [k for k, v in moved.items()
                                                  if k.startswith('unused') and v.startswith('local-lvm:')]
    vm = lab.clusters['production'].pve.vm(103)
    assert res['move_again'][1]['changed'] is False and 'preview' not in res['move_again'][1]
    assert res['detach_preview'][1]['preview'] is True and 'detach disk scsi0' in res['detach_preview'][1]['would']
    assert res['detach'][1]['changed'] is True and 'scsi0' not in vm.config
    assert res['no_disk'][0] is True and "has no disk 'scsi7'" in res['no_disk'][1]
    err, text = res['prune_no_rule']
    assert err is True and 'keep: give at least one of last, hourly, daily' in text
    assert res['prune_daily'][0] is False and res['prune_daily'][1]['preview'] is True
    assert res['prune_daily'][1]['removed'] == [] and res['prune_daily'][1]['confirmation_token']
