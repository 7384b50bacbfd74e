"""Failures as data: a failed module returns ``error: {type, cluster, status, upid, exitstatus, log}`` beside
``msg``, so that a play rescues on ``error.type``; the MCP server's tool errors carry the same fields."""

import json

from conftest import CT, INFO, VM, ansible_env, capture, lab_secrets, run_mcp, run_play

LOCKED = {'name': 'prod-db01', 'memory': 1024, 'timeout': 2}
START_FAILS = ('POST', '/nodes/prod-pve1/qemu/103/status/start')


def guarded(name, module, params, error_type):
    """A block running one task, and a rescue that handles only ``error_type`` (anything else fails the play)."""
    return {'name': 'guard ' + name, 'block': [{'name': name, module: params, 'register': name}], 'rescue': [
        {'name': 'handle ' + name, 'ansible.builtin.set_fact': {name + '_handled': '{{ %s.error.type }}' % name},
         'when': "%s.error.type == '%s'" % (name, error_type), 'register': 'handled_' + name},
        {'name': 'not expected', 'ansible.builtin.fail': {'msg': 'unexpected failure: {{ %s.error }}' % name},
         'when': "%s.error.type != '%s'" % (name, error_type)}]}


def test_a_play_rescues_on_error_type(fresh_lab, tmp_path):
    """A guest locked past its timeout, an unknown cluster, a task that fails, a cluster down: each failed task
    is rescued by the handler for its error.type only, and its error carries what is known."""
    lab = fresh_lab
    pve = lab.clusters['production'].pve
    lab.call(pve.snapshot_lock, 102, 'backup')
    lab.call(lambda: pve.fail(*START_FAILS, error='qemu_exited_code', times=1))
    down = [{'name': 'offline', 'api_url': 'https://127.0.9.9:8006', 'token_id': 'root@pam!pmx',
             'token_secret': 'offline-secret-value'}]
    result = run_play(tmp_path, [
        guarded('locked', VM, LOCKED, 'GuestLockedError'),
        guarded('unknown', VM, {'name': 'web01', 'cluster': 'nosuch', 'memory': 512}, 'ClusterNotFoundError'),
        guarded('unknown_ct', CT, {'hostname': 'web01', 'cluster': 'stagin'}, 'ClusterNotFoundError'),
        guarded('task', VM, {'name': 'prod-batch01', 'state': 'started'}, 'TaskError'),
        guarded('strict', INFO, {'clusters': down, 'fail_on_unreachable': True}, 'UnreadableClustersError'),
    ], env_file=lab.env_file)
    capture(lab, 'play', result.output, json.dumps(result.results))
    assert result.rc == 0, result.output
    for name in ('locked', 'unknown', 'unknown_ct', 'task', 'strict'):
        assert result[name]['failed'] is True and result[name]['msg'], name
        assert result['handled_' + name].get('skipped') is not True, name

    assert result['locked']['error'] == {'type': 'GuestLockedError', 'cluster': 'production'}
    assert 'is locked (backup)' in result['locked']['msg']
    assert result['unknown']['error'] == {'type': 'ClusterNotFoundError'}
    assert result['unknown_ct']['error'] == {'type': 'ClusterNotFoundError'}
    task = result['task']['error']
    assert set(task) == {'type', 'cluster', 'upid', 'exitstatus', 'log'}
    assert (task['type'], task['cluster']) == ('TaskError', 'production')
    assert task['upid'].startswith('UPID:prod-pve1:') and 'qmstart' in task['upid']
    assert 'QEMU exited with code 1' in task['exitstatus']
    assert any('TASK ERROR: QEMU exited with code 1' in line for line in task['log'])
    assert result['strict']['error'] == {'type': 'UnreadableClustersError'}
    result.assert_no_secret(lab_secrets(lab) + ['offline-secret-value'])


def test_an_api_error_carries_its_status(fresh_lab, tmp_path):
    lab = fresh_lab
    lab.call(lambda: lab.clusters['staging'].pve.fail('GET', '/cluster/resources', 500, 'injected failure'))
    result = run_play(tmp_path, [guarded('api', VM, {'name': 'stg-web01', 'memory': 1024}, 'ApiError')],
                      env_file=lab.env_file)
    capture(lab, 'play', result.output, json.dumps(result.results))
    assert result.rc == 0, result.output
    assert result['api']['error'] == {'type': 'ApiError', 'cluster': 'staging', 'status': 500}


def tool_errors(env, calls):
    """Each call's (is_error, text, structured content), through the official client."""
    async def body(client):
        out = []
        for tool, arguments in calls:
            if arguments.get('confirm') is True:  # through the confirmation gate: preview, then with its token
                preview = (await client.session.call_tool(tool, dict(arguments, confirm=False))).structured_content
                arguments = dict(arguments, confirmation_token=(preview or {}).get('confirmation_token'))
            answer = await client.session.call_tool(tool, arguments)
            out.append((answer.is_error, ' '.join(getattr(b, 'text', '') for b in answer.content),
                        answer.structured_content))
        return out

    return run_mcp(env, body)


def test_mcp_tool_errors_carry_the_same_fields(fresh_lab, tmp_path):
    lab = fresh_lab
    pve = lab.clusters['production'].pve
    lab.call(pve.snapshot_lock, 102, 'backup')
    lab.call(lambda: pve.fail(*START_FAILS, error='qemu_exited_code', times=1))
    env = ansible_env(lab.env_file, {'PMX_MCP_ALLOW_WRITE': '1'})
    results, texts, stderr = tool_errors(env, [
        ('list_guests', {'cluster': 'stagin'}),
        ('stop_guest', {'name': 'prod-db01', 'confirm': True, 'timeout': 2}),
        ('start_guest', {'name': 'prod-batch01'}),
        ('list_clusters', {})])
    capture(lab, 'mcp', json.dumps(results), '\n'.join(texts), stderr)
    (unknown, locked, task, fine) = results

    err, text, data = unknown
    assert err is True and text.startswith('Error executing tool list_guests: ')
    assert "unknown cluster 'stagin'" in text and data['msg'] in text
    assert data['error'] == {'type': 'ClusterNotFoundError'}
    err, text, data = locked
    assert err is True and data['error'] == {'type': 'GuestLockedError', 'cluster': 'production'}
    assert 'is locked (backup)' in data['msg']
    err, text, data = task
    assert err is True and set(data['error']) == {'type', 'cluster', 'upid', 'exitstatus', 'log'}
    assert data['error']['type'] == 'TaskError' and 'QEMU exited with code 1' in data['error']['exitstatus']
    assert fine[0] is False and fine[2]['clusters']
    for secret in lab_secrets(lab):
        assert secret not in json.dumps(results) + stderr


def test_mcp_configuration_error_is_structured(tmp_path):
    bad = tmp_path / 'bad.env'
    bad.write_text('PROXMOX_CLUSTERS=a\nPROXMOX_CLUSTER_a_API_URL=ftp://x\n')
    ((err, text, data),), dummy, stderr = tool_errors(ansible_env(env_file=bad), [('list_nodes', {})])
    assert err is True and data['error'] == {'type': 'ConfigError'} and 'PROXMOX_CLUSTER_a' in data['msg']
    assert 'Traceback' not in stderr
