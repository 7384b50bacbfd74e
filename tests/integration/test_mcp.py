"""The bundled MCP server, through the official MCP client (mcp.ClientSession over stdio_client).

The server runs as a subprocess from the collection as `ansible-galaxy collection install` put it,
against the fakepve lab; results are read from the tools' structured content, and the fake's own
state proves what a write did (or did not) do.
"""

import json

import pytest

from conftest import ansible_env, lab_secrets, run_mcp

READ_TOOLS = {'list_clusters', 'cluster_status', 'list_nodes', 'list_guests', 'guest_details', 'list_storages',
              'recent_tasks', 'route_guest', 'snapshot_list', 'list_backups', 'audit_log'}
WRITE_TOOLS = {'start_guest', 'shutdown_guest', 'stop_guest', 'reboot_guest', 'create_vm', 'clone_guest',
               'delete_guest', 'snapshot_create', 'snapshot_rollback', 'migrate_guest', 'backup_now', 'prune_backups',
               'restore_backup', 'snapshot_delete', 'snapshot_retention', 'disk_resize',
               'bulk_guest_action', 'deploy_guests', 'evacuate_node', 'disk_move', 'disk_detach'}
DOWN_URL = 'https://127.0.9.9:8006'


def mcp_env(lab, **extra):
    return ansible_env(env_file=lab.env_file, extra=dict((k, str(v)) for k, v in extra.items()))


def down_cluster_env(lab, **extra):
    """The lab plus a fourth cluster, 'offline', whose API does not answer."""
    env = dict(lab.env())
    env['PROXMOX_CLUSTERS'] += ',offline'
    env.update({'PROXMOX_CLUSTER_offline_API_URL': DOWN_URL, 'PROXMOX_CLUSTER_offline_TOKEN_ID': 'root@pam!pmx',
                'PROXMOX_CLUSTER_offline_TOKEN_SECRET': 'not-a-real-secret', 'PROXMOX_CLUSTER_offline_TIMEOUT': '2',
                'PROXMOX_CLUSTER_offline_PATTERNS': 'off-*'})
    env.update(extra)
    return ansible_env(extra=env)


def assert_clean(lab, texts, stderr):
    """No secret anywhere, no traceback anywhere."""
    everything = '\n'.join(texts) + stderr
    for secret in lab_secrets(lab):
        assert secret not in everything, 'a token secret appears in a tool result or the server log'
    assert 'Traceback' not in everything, stderr


# ------------------------------------------------------------------ tools, schemas, annotations

def test_read_tools_schemas_and_annotations(lab):
    """Default server: every read tool is listed with a description, typed parameters with descriptions and
    read-only annotations; no write tool is registered."""
    async def body(client):
        return (await client.session.list_tools()).tools

    tools, texts, stderr = run_mcp(mcp_env(lab), body)
    by_name = dict((t.name, t) for t in tools)
    assert set(by_name) == READ_TOOLS
    for tool in tools:
        assert tool.description and len(tool.description) > 40, tool.name
        assert tool.annotations.read_only_hint is True and tool.annotations.destructive_hint is False, tool.name
        assert tool.input_schema['type'] == 'object'
        for prop, schema in tool.input_schema.get('properties', {}).items():
            assert schema.get('description'), '%s.%s has no description' % (tool.name, prop)
    guests = by_name['list_guests'].input_schema['properties']
    assert set(guests) == {'cluster', 'status', 'type', 'name_pattern', 'tag', 'include_templates', 'limit', 'cursor',
                           'fields', 'summary'}
    assert 'lxc' in json.dumps(guests['type']) and 'running' in json.dumps(guests['status'])
    assert by_name['route_guest'].input_schema['required'] == ['name']
    assert by_name['recent_tasks'].input_schema['properties']['limit']['type'] == 'integer'
    assert_clean(lab, texts, stderr)


def test_write_tools_schemas_and_annotations(lab):
    """PMX_MCP_ALLOW_WRITE=1 adds the write tools: destructive ones take confirm (default false), hints set."""
    async def body(client):
        return (await client.session.list_tools()).tools

    tools, dummy, stderr = run_mcp(mcp_env(lab, PMX_MCP_ALLOW_WRITE=1), body)
    by_name = dict((t.name, t) for t in tools)
    assert set(by_name) == READ_TOOLS | WRITE_TOOLS
    for name in WRITE_TOOLS:
        assert by_name[name].annotations.read_only_hint is False, name
    for name in ('stop_guest', 'delete_guest', 'snapshot_rollback', 'migrate_guest', 'snapshot_delete',
                 'snapshot_retention'):
        confirm = by_name[name].input_schema['properties']['confirm']
        assert confirm['type'] == 'boolean' and confirm['default'] is False and confirm['description']
        assert by_name[name].input_schema['properties']['confirmation_token']['description']
        assert by_name[name].annotations.destructive_hint is True
    for name in ('start_guest', 'create_vm', 'snapshot_create', 'disk_resize'):
        assert by_name[name].annotations.destructive_hint is False
        assert by_name[name].annotations.idempotent_hint is True
    assert 'confirm' not in by_name['start_guest'].input_schema['properties']
    assert by_name['create_vm'].input_schema['required'] == ['name']
    assert 'Traceback' not in stderr


# ------------------------------------------------------------------ reads

def test_list_guests_across_clusters_and_filters(lab):
    """list_guests answers for all three clusters at once, and its filters narrow it."""
    async def body(client):
        return [await client.call('list_guests'),
                await client.call('list_guests', cluster='st*', status='running', type='qemu'),
                await client.call('list_guests', name_pattern='*-db*'),
                await client.call('list_guests', include_templates=False, tag='cache')]

    (everything, staging, dbs, cache), texts, stderr = run_mcp(mcp_env(lab), body)
    err, res = everything
    assert not err and res['errors'] == []
    assert res['clusters'] == ['production', 'staging', 'disaster-recovery'] and res['count'] == 21
    names = set((g['cluster'], g['name']) for g in res['guests'])
    assert ('production', 'prod-web01') in names and ('staging', 'stg-cache01') in names
    assert ('disaster-recovery', 'dr-tpl-debian12') in names
    err, res = staging
    assert not err and res['clusters'] == ['staging']
    assert sorted(g['name'] for g in res['guests']) == ['stg-db01', 'stg-web01', 'stg-web02']
    assert sorted(g['name'] for g in dbs[1]['guests']) == ['dr-db01', 'prod-db01', 'stg-db01']
    assert sorted(g['cluster'] for g in cache[1]['guests']) == ['disaster-recovery', 'production', 'staging']
    assert_clean(lab, texts, stderr)


def test_other_reads(lab):
    """list_clusters (health of all three), cluster_status, list_nodes, list_storages, recent_tasks,
    guest_details (routed by pattern) and snapshot_list."""
    async def body(client):
        out = {}
        for name, args in (('list_clusters', {}), ('cluster_status', {'cluster': 'staging'}), ('list_nodes', {}),
                           ('list_storages', {'cluster': 'production'}), ('recent_tasks', {'limit': 5}),
                           ('guest_details', {'name': 'stg-web01'}), ('snapshot_list', {'name': 'dr-db01'})):
            out[name] = await client.call(name, **args)
        return out

    res, texts, stderr = run_mcp(mcp_env(lab), body)
    assert not any(err for err, dummy in res.values()), res
    clusters = res['list_clusters'][1]
    assert [c['name'] for c in clusters['clusters']] == ['production', 'staging', 'disaster-recovery']
    assert all(c['reachable'] and c['quorate'] and c['nodes_online'] == 3 for c in clusters['clusters'])
    assert clusters['unreachable'] == [] and clusters['writes']['enabled'] is False
    assert clusters['clusters'][1]['patterns'] == ['stg-*']
    status = res['cluster_status'][1]
    assert status['name'] == 'staging' and status['reachable'] and status['storages']
    assert len(res['list_nodes'][1]['nodes']) == 9
    assert set(s['cluster'] for s in res['list_storages'][1]['storages']) == {'production'}
    assert len(res['recent_tasks'][1]['tasks']) <= 5
    details = res['guest_details'][1]
    assert details['cluster'] == 'staging' and details['route_reason'] == "pattern 'stg-*'"
    assert details['guest']['vmid'] == 100 and details['status']['status'] == 'running'
    assert details['config']['name'] == 'stg-web01' and 'scsi0' in details['config']
    assert res['snapshot_list'][1]['cluster'] == 'disaster-recovery' and res['snapshot_list'][1]['snapshots'] == []
    assert_clean(lab, texts, stderr)


def test_route_guest(lab):
    """route_guest says which cluster a name goes to and why: pattern, or default when nothing matches."""
    async def body(client):
        return [await client.call('route_guest', name='stg-new01'), await client.call('route_guest', name='misc-01')]

    (pattern, default), texts, stderr = run_mcp(mcp_env(lab), body)
    assert pattern == (False, {'name': 'stg-new01', 'cluster': 'staging', 'reason': "pattern 'stg-*'", 'located': [],
                               'pattern_matches': {'staging': ["pattern 'stg-*'"]}, 'writable': False,
                               'unreadable': [], 'write_refused': None})
    assert default[1]['cluster'] == 'production' and default[1]['reason'] == 'default'
    assert_clean(lab, texts, stderr)


# ------------------------------------------------------------------ errors

def test_unknown_cluster_and_ambiguous_name_are_tool_errors(lab):
    """The core's messages come back as tool errors (isError), never a traceback."""
    async def body(client):
        return [await client.call('list_guests', cluster='stagin'),
                await client.call('guest_details', vmid=100),
                await client.call('route_guest', name='stg-web01'),
                await client.call('guest_details', name='prod-nosuch01'),
                await client.call('list_guests', status='sleeping')]

    # The lab's settings in the environment (no .env), with patterns that overlap for *-web01.
    env = ansible_env(extra=dict(lab.env(), **{'PROXMOX_CLUSTER_disaster-recovery_PATTERNS': 'dr-*,*-web01'}))
    (unknown, vmid, ambiguous, missing, invalid), texts, stderr = run_mcp(env, body)
    assert unknown[0] is True
    assert "unknown cluster 'stagin'; configured clusters: production, staging, disaster-recovery" in unknown[1]
    assert "Did you mean 'staging'?" in unknown[1]
    assert vmid[0] is True and 'a guest with vmid 100 exists in several clusters' in vmid[1]
    assert ambiguous[0] is True and "the name 'stg-web01' matches the routing rules of several clusters" in ambiguous[1]
    assert 'staging' in ambiguous[1] and 'disaster-recovery' in ambiguous[1]
    assert missing[0] is True and "cluster 'production' (pattern 'prod-*'): no guest 'prod-nosuch01'" in missing[1]
    assert invalid[0] is True and 'status' in invalid[1]
    assert_clean(lab, texts, stderr)


def test_bad_configuration_is_a_tool_error(lab, tmp_path):
    """A broken configuration: the server starts, every tool answers with the ConfigError."""
    bad = tmp_path / 'bad.env'
    bad.write_text('PROXMOX_CLUSTERS=a\nPROXMOX_CLUSTER_a_API_URL=ftp://x\n')

    async def body(client):
        return await client.call('list_clusters')

    (err, text), dummy, stderr = run_mcp(ansible_env(env_file=bad), body)
    assert err is True and 'PROXMOX_CLUSTER_a' in text
    assert 'configuration error' in stderr and 'Traceback' not in stderr


def test_one_cluster_down(lab):
    """A fourth cluster that does not answer is reported in list_clusters and list_guests; the rest answer."""
    async def body(client):
        return [await client.call('list_clusters'), await client.call('list_guests'),
                await client.call('list_nodes', cluster='offline')]

    (clusters, guests, nodes), texts, stderr = run_mcp(down_cluster_env(lab), body)
    assert not clusters[0] and not guests[0] and not nodes[0]
    health = dict((c['name'], c) for c in clusters[1]['clusters'])
    assert health['offline']['reachable'] is False and 'unreachable' in health['offline']['error']
    assert all(health[n]['reachable'] for n in ('production', 'staging', 'disaster-recovery'))
    assert [u['cluster'] for u in clusters[1]['unreachable']] == ['offline']
    assert guests[1]['count'] == 21 and [e['cluster'] for e in guests[1]['errors']] == ['offline']
    # Asked a moment ago by list_clusters: answered from the memory of that failure.
    assert "cluster 'offline' did not answer" in guests[1]['errors'][0]['error']
    assert 'connection refused' in guests[1]['errors'][0]['error']
    assert nodes[1]['nodes'] == [] and nodes[1]['errors'][0]['cluster'] == 'offline'
    assert_clean(lab, texts, stderr)
    assert 'not-a-real-secret' not in '\n'.join(texts) + stderr


# ------------------------------------------------------------------ writes

def test_write_refused_by_default(lab):
    """Without PMX_MCP_ALLOW_WRITE a write tool does not exist: calling it is an error, nothing runs."""
    async def body(client):
        return [await client.call('start_guest', name='stg-batch01'),
                await client.call('delete_guest', name='stg-batch01', confirm=True)]

    results, texts, stderr = run_mcp(mcp_env(lab), body)
    for err, text in results:
        assert err is True and 'Unknown tool' in text
    assert lab.clusters['staging'].pve.vm(103).status == 'stopped'
    assert_clean(lab, texts, stderr)


def test_write_limited_to_named_clusters(fresh_lab):
    """PMX_MCP_WRITE_CLUSTERS=staging: a write routed to production is refused with a clear message."""
    async def body(client):
        return [await client.call('start_guest', name='prod-batch01'),
                await client.call('create_vm', name='prod-new01'),
                await client.call('start_guest', name='stg-batch01')]

    env = mcp_env(fresh_lab, PMX_MCP_ALLOW_WRITE=1, PMX_MCP_WRITE_CLUSTERS='staging')
    (prod, create, stg), texts, stderr = run_mcp(env, body)
    assert prod[0] is True and "writes to cluster 'production' are not allowed" in prod[1]
    assert 'PMX_MCP_WRITE_CLUSTERS=staging' in prod[1] and 'nothing was changed' in prod[1]
    assert create[0] is True and "writes to cluster 'production' are not allowed" in create[1]
    assert fresh_lab.clusters['production'].pve.vm(103).status == 'stopped'
    assert not [vm for vm in fresh_lab.clusters['production'].pve.vms if vm.name == 'prod-new01']
    assert stg[0] is False and stg[1]['cluster'] == 'staging' and stg[1]['changed'] is True
    assert fresh_lab.clusters['staging'].pve.vm(103).status == 'running'
    assert_clean(fresh_lab, texts, stderr)


def test_create_start_delete_routed_by_pattern(fresh_lab):
    """create_vm + start routed by 'stg-*'; delete without confirm is a preview that deletes nothing;
    delete with confirm destroys it. Every write answers cluster, route reason and task results."""
    pve = fresh_lab.clusters['staging'].pve

    async def body(client):
        out = {'create': await client.call('create_vm', name='stg-mcp01', cores=2, memory=1024, disk_gb=8)}
        out['again'] = await client.call('create_vm', name='stg-mcp01', cores=2, memory=1024, disk_gb=8)
        out['start'] = await client.call('start_guest', name='stg-mcp01')
        out['preview'] = await client.call('delete_guest', name='stg-mcp01')
        out['still_there'] = await client.call('guest_details', name='stg-mcp01')
        out['delete'] = await client.call('delete_guest', name='stg-mcp01', confirm=True,
                                          confirmation_token=out['preview'][1]['confirmation_token'])
        out['gone'] = await client.call('guest_details', name='stg-mcp01')
        return out

    res, texts, stderr = run_mcp(mcp_env(fresh_lab, PMX_MCP_ALLOW_WRITE=1), body)
    err, create = res['create']
    assert not err, create
    assert create['cluster'] == 'staging' and create['route_reason'] == "pattern 'stg-*'" and create['changed'] is True
    vmid = create['vmid']
    assert [t['action'] for t in create['tasks']] == ['create'] and create['tasks'][0]['exitstatus'] == 'OK'
    assert res['again'][1]['changed'] is False and res['again'][1]['vmid'] == vmid
    err, start = res['start']
    assert not err and start['changed'] is True and start['status'] == 'running'
    assert start['route_reason'] == "pattern 'stg-*'" and [t['action'] for t in start['tasks']] == ['start']
    err, preview = res['preview']
    assert not err and preview['preview'] is True and preview['changed'] is False
    assert preview['cluster'] == 'staging' and preview['current_status'] == 'running'
    assert preview['guest']['vmid'] == vmid and 'destroy' in preview['would']
    assert 'confirm=true' in preview['to_confirm'] and preview['confirmation_token']
    assert res['still_there'][0] is False
    err, delete = res['delete']
    assert not err and delete['changed'] is True and delete['status'] == 'absent'
    assert [t['action'] for t in delete['tasks']] == ['stop', 'delete']
    assert res['gone'][0] is True and 'no guest' in res['gone'][1]
    assert pve.vm(vmid) is None
    assert not [vm for c in fresh_lab.clusters.values() for vm in c.pve.vms if vm.name == 'stg-mcp01']
    assert_clean(fresh_lab, texts, stderr)


def test_power_snapshots_and_confirmations(fresh_lab):
    """stop without confirm changes nothing; shutdown/reboot/stop act; snapshots are created (idempotently),
    listed, and rolled back only with confirm; clone routes by the new name."""
    pve = fresh_lab.clusters['disaster-recovery'].pve

    async def body(client):
        steps = [('stop_preview', 'stop_guest', {'name': 'dr-web01'}),
                 ('snap', 'snapshot_create', {'name': 'dr-web01', 'snapname': 'before-mcp', 'description': 'test'}),
                 ('snap_again', 'snapshot_create', {'name': 'dr-web01', 'snapname': 'before-mcp'}),
                 ('snaps', 'snapshot_list', {'name': 'dr-web01'}),
                 ('rollback_preview', 'snapshot_rollback', {'name': 'dr-web01', 'snapname': 'before-mcp'}),
                 ('rollback_missing', 'snapshot_rollback', {'name': 'dr-web01', 'snapname': 'nosuch', 'confirm': True}),
                 ('reboot', 'reboot_guest', {'name': 'dr-web02'}),
                 ('shutdown', 'shutdown_guest', {'name': 'dr-web02'}),
                 ('stop', 'stop_guest', {'name': 'dr-web01', 'confirm': True}),
                 ('rollback', 'snapshot_rollback', {'name': 'dr-web01', 'snapname': 'before-mcp', 'confirm': True}),
                 ('clone', 'clone_guest', {'source': 'dr-tpl-debian12', 'name': 'dr-clone01'})]
        out = {}
        for key, tool, args in steps:
            out[key] = await (client.confirmed if args.get('confirm') else client.call)(tool, **args)
        return out

    res, texts, stderr = run_mcp(mcp_env(fresh_lab, PMX_MCP_ALLOW_WRITE=1), body)
    errors = dict((k, v[1]) for k, v in res.items() if v[0] and k != 'rollback_missing')
    assert not errors, errors
    assert res['stop_preview'][1]['preview'] is True and 'power off' in res['stop_preview'][1]['would']
    assert res['snap'][1]['changed'] is True and res['snap_again'][1]['changed'] is False
    assert [s['name'] for s in res['snaps'][1]['snapshots']] == ['before-mcp']
    assert res['rollback_preview'][1]['preview'] is True
    assert res['rollback_preview'][1]['snapshot']['name'] == 'before-mcp'
    assert res['rollback_missing'][0] is True and "has no snapshot 'nosuch'; its snapshots: before-mcp" in \
        res['rollback_missing'][1]
    assert res['reboot'][1]['cluster'] == 'disaster-recovery' and res['reboot'][1]['tasks'][0]['action'] == 'reboot'
    assert res['shutdown'][1]['status'] == 'stopped' and pve.vm(101).status == 'stopped'
    assert res['stop'][1]['changed'] is True and res['stop'][1]['tasks'][0]['action'] == 'stop'
    assert res['rollback'][1]['changed'] is True and res['rollback'][1]['tasks'][0]['exitstatus'] == 'OK'
    clone = res['clone'][1]
    assert clone['cluster'] == 'disaster-recovery' and clone['route_reason'] == "pattern 'dr-*'"
    assert [vm for vm in pve.vms if vm.name == 'dr-clone01']
    assert_clean(fresh_lab, texts, stderr)


@pytest.mark.parametrize('tool', ['delete_guest', 'stop_guest'])
def test_destructive_without_confirm_changes_nothing(fresh_lab, tool):
    """A destructive call without confirm returns a preview (guest, cluster, status, what would happen)."""
    pve = fresh_lab.clusters['production'].pve

    async def body(client):
        return await client.call(tool, name='prod-web01')

    (err, preview), texts, stderr = run_mcp(mcp_env(fresh_lab, PMX_MCP_ALLOW_WRITE=1), body)
    assert not err and preview['preview'] is True and preview['changed'] is False
    assert preview['cluster'] == 'production' and preview['route_reason'] == "pattern 'prod-*'"
    assert preview['guest'] == {'name': 'prod-web01', 'vmid': 100, 'type': 'qemu', 'node': 'prod-pve1',
                                'status': 'running', 'template': False}
    assert preview['current_status'] == 'running' and preview['would']
    assert pve.vm(100) is not None and pve.vm(100).status == 'running'
    assert_clean(fresh_lab, texts, stderr)


def test_bad_write_clusters_setting_refuses_every_write(lab):
    """PMX_MCP_WRITE_CLUSTERS naming an unknown cluster: reads work, every write is refused with the reason."""
    async def body(client):
        return [await client.call('start_guest', name='stg-batch01'), await client.call('route_guest', name='stg-x')]

    env = mcp_env(lab, PMX_MCP_ALLOW_WRITE=1, PMX_MCP_WRITE_CLUSTERS='staging,nosuch')
    (write, read), texts, stderr = run_mcp(env, body)
    assert write[0] is True and "PMX_MCP_WRITE_CLUSTERS: unknown cluster 'nosuch'" in write[1]
    assert read[0] is False and read[1]['writable'] is False
    assert lab.clusters['staging'].pve.vm(103).status == 'stopped'
    assert_clean(lab, texts, stderr)
