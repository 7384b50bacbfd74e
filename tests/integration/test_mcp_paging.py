"""The MCP server's read side at scale, through the official MCP client over stdio: 3 x 507 guests (1,521).

Answers that fit (a default list_guests under 20 KB that says how many there are in all), pages walked to the
end (every guest exactly once, also with fields, while guests come and go), summary counts, arguments refused
(unknown, wrong type), typed results (every read tool's outputSchema, structuredContent valid against it),
serverInfo.version, the pmx://clusters resources and the routing prompt, and a hanging cluster: a read answers
within PMX_MCP_DEADLINE naming it, the next one at once, and the server exits within 2 s of stdin closing with
a call in flight.
"""

import asyncio
import json
import os
import sys
import time
from contextlib import asynccontextmanager
from typing import get_type_hints

import anyio
import jsonschema
import pytest
import yaml
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.shared.message import SessionMessage
from mcp.types import JSONRPCRequest
from test_mcp import mcp_env

from ansible_collections.pmx.multicluster.plugins.module_utils import health

from conftest import (
    _NET,
    MCP_SERVER,
    REPO,
    capture,
    clear_network,
    lab_secrets,
    network_fault,
    pmxlab,
    run_mcp,
)

GUESTS_PER_CLUSTER = 500          # plus the 7 sample guests of each cluster: 507
ALL_GUESTS = 3 * (GUESTS_PER_CLUSTER + 7)
SIZE_LIMIT = 20 * 1024
READ_CALLS = (('list_clusters', {}), ('cluster_status', {'cluster': 'staging'}), ('list_nodes', {}),
              ('list_guests', {}), ('guest_details', {'name': 'stg-web01'}), ('list_storages', {}),
              ('recent_tasks', {}), ('route_guest', {'name': 'stg-new01'}), ('snapshot_list', {'name': 'dr-db01'}),
              ('list_backups', {'name': 'prod-web01'}))
LIST_TOOLS = ('list_clusters', 'list_nodes', 'list_guests', 'list_storages', 'recent_tasks', 'snapshot_list',
              'list_backups')
# What the last run measured, printed at the end of the module (pytest -s) for the README.
FIGURES = {}


@pytest.fixture(scope='module')
def big_lab(tmp_path_factory):
    with pmxlab.Lab(str(tmp_path_factory.mktemp('paging-lab')), clusters=3, guests_per_cluster=GUESTS_PER_CLUSTER,
                    first_host='127.%d.4.2' % _NET) as lab:
        yield lab
    if FIGURES:
        print('\nMCP paging figures: %s' % json.dumps(FIGURES, sort_keys=True))


def lab_guests(lab):
    """(cluster, vmid) of every guest the fakes hold."""
    return set((name, int(g.vmid)) for name, c in lab.clusters.items() for g in list(c.pve.vms) + list(c.pve.cts))


async def walk(client, tool, rows_key, **arguments):
    """Every page of a list tool: (rows, pages); each page's paging fields checked on the way."""
    rows, pages, cursor = [], [], None
    while True:
        err, res = await client.call(tool, **dict(arguments, **({'cursor': cursor} if cursor else {})))
        assert not err, res
        pages.append(res)
        rows.extend(res[rows_key])
        assert res['count'] == len(res[rows_key]) and res['summary'] is None
        cursor = res['next_cursor']
        assert res['truncated'] is (cursor is not None)
        if cursor is None:
            return rows, pages
        assert len(pages) < 200, 'the cursor does not advance'


def assert_clean(lab, texts, stderr):
    everything = '\n'.join(texts) + stderr
    capture(lab, 'mcp', everything)
    for secret in lab_secrets(lab):
        assert secret not in everything
    assert 'Traceback' not in everything, stderr


# ------------------------------------------------------------------ answers that fit, pages, summary

def test_default_list_guests_fits_and_says_how_many(big_lab):
    """The default list_guests of 1,521 guests: under 20 KB (text and structured content alike), compact JSON,
    the first page in (cluster, vmid) order, with the total and a cursor."""
    async def body(client):
        started = time.monotonic()
        result = await client.session.call_tool('list_guests', {})
        return result, time.monotonic() - started

    (result, seconds), texts, stderr = run_mcp(mcp_env(big_lab), body)
    text = result.content[0].text
    res = result.structured_content
    wire = result.model_dump_json(by_alias=True, exclude_none=True)
    FIGURES.update(default_list_guests_text_bytes=len(text.encode()), default_list_guests_message_bytes=len(wire),
                   default_list_guests_seconds=round(seconds, 2))
    assert len(text.encode()) < SIZE_LIMIT and len(wire.encode()) < SIZE_LIMIT, (len(text), len(wire))
    assert json.loads(text) == res and text == json.dumps(res, separators=(',', ':'), ensure_ascii=False)
    assert res['total'] == ALL_GUESTS and res['truncated'] is True and res['next_cursor']
    assert res['count'] == len(res['guests']) == 40
    assert [(g['cluster'], g['vmid']) for g in res['guests']] == sorted(
        ((g['cluster'], g['vmid']) for g in res['guests']), key=lambda k: (k[0] != 'production', k[1]))
    assert res['guests'][0] == dict({'cluster': 'production'}, **res['guests'][0]) and res['guests'][0]['vmid'] == 100
    assert res['clusters'] == ['production', 'staging', 'disaster-recovery'] and res['errors'] == []
    assert_clean(big_lab, texts, stderr)


def test_walk_every_page_exactly_once(big_lab):
    """Walking list_guests to the end yields every guest exactly once: with the default limit, with fields and
    the largest limit, and while guests are created before and after the cursor's position (the cursor holds
    the position, not an offset). summary counts what the pages hold."""
    production, staging = big_lab.clusters['production'].pve, big_lab.clusters['staging'].pve
    before = lab_guests(big_lab)

    async def body(client):
        out = {}
        started = time.monotonic()
        out['default'] = await walk(client, 'list_guests', 'guests')
        out['default_seconds'] = time.monotonic() - started
        out['fields'] = await walk(client, 'list_guests', 'guests', limit=500, fields=['cluster', 'vmid', 'status'])
        out['summary'] = await client.call('list_guests', summary=True)
        out['filtered_summary'] = await client.call('list_guests', summary=True, cluster='staging', type='lxc')
        # Guests come and go while a walk is under way: one before the cursor's position, one after it.
        err, first = await client.call('list_guests', limit=100, fields=['cluster', 'vmid'])
        big_lab.call(lambda: production.add_vm(150, 'prod-paging-new', node='prod-pve1'))
        big_lab.call(lambda: staging.add_vm(99999, 'stg-paging-new', node='stg-pve1'))
        try:
            rest = await walk(client, 'list_guests', 'guests', limit=300, fields=['cluster', 'vmid'],
                              cursor=first['next_cursor'])
        finally:
            big_lab.call(lambda: production.vms.remove(production.vm(150)))
            big_lab.call(lambda: staging.vms.remove(staging.vm(99999)))
        out['moving'] = first['guests'] + rest[0]
        return out

    out, texts, stderr = run_mcp(mcp_env(big_lab), body)
    rows, pages = out['default']
    FIGURES.update(walk_default_pages=len(pages), walk_default_seconds=round(out['default_seconds'], 2))
    keys = [(g['cluster'], g['vmid']) for g in rows]
    assert len(pages) == -(-ALL_GUESTS // 40) and len(keys) == ALL_GUESTS == len(set(keys))
    assert set(keys) == before
    assert all(p['total'] == ALL_GUESTS for p in pages)
    assert all(len(json.dumps(p, separators=(',', ':'))) < SIZE_LIMIT for p in pages)

    rows, pages = out['fields']
    assert len(pages) == 4 and [p['count'] for p in pages] == [500, 500, 500, 21]
    assert all(set(g) == {'cluster', 'vmid', 'status'} for g in rows)
    assert sorted((g['cluster'], g['vmid']) for g in rows) == sorted(before)

    err, summary = out['summary']
    assert not err and summary['guests'] == [] and summary['total'] == ALL_GUESTS and summary['next_cursor'] is None
    counts = summary['summary']
    assert counts['cluster'] == {'production': 507, 'staging': 507, 'disaster-recovery': 507}
    by_status = {}
    for g in rows:
        by_status[g['status']] = by_status.get(g['status'], 0) + 1
    assert counts['status'] == by_status
    assert sum(counts['type'].values()) == ALL_GUESTS and set(counts['type']) == {'qemu', 'lxc'}
    # The lab tags every 10th bulk guest 'bulk;<tier>' and every 3rd of the rest 'bulk' (lab/README.md).
    assert counts['tag']['bulk'] == 3 * (50 + 150)
    err, filtered = out['filtered_summary']
    assert filtered['summary']['cluster'] == {'staging': filtered['total']} and filtered['summary']['type'] == {
        'lxc': filtered['total']}

    moving = [(g['cluster'], g['vmid']) for g in out['moving']]
    assert len(moving) == len(set(moving)), 'a row was answered twice'
    assert set(moving) == before | {('staging', 99999)}, 'the new guest before the cursor shifted nothing'
    assert_clean(big_lab, texts, stderr)


def test_every_list_tool_pages(big_lab):
    """The same paging on every list tool: small pages walked to the end give the whole list once, fields trim
    the rows, summary counts them."""
    lists = (('list_clusters', 'clusters', {}), ('list_nodes', 'nodes', {}), ('list_storages', 'storages', {}),
             ('recent_tasks', 'tasks', {}), ('snapshot_list', 'snapshots', {'name': 'prod-web01'}),
             ('list_backups', 'backups', {'name': 'prod-web01'}))

    async def body(client):
        out = {}
        for tool, key, args in lists:
            out[tool] = (await client.call(tool, **dict(args, limit=500)),
                         await walk(client, tool, key, limit=2, **args),
                         await client.call(tool, summary=True, **args))
        out['fields'] = await client.call('list_nodes', fields=['cluster', 'name', 'status'], limit=3)
        return out

    out, texts, stderr = run_mcp(mcp_env(big_lab), body)
    for tool, key, dummy in lists:
        (err, whole), (rows, pages), (serr, summary) = out[tool]
        assert not err and not serr, (tool, whole, summary)
        assert rows == whole[key], tool
        assert len(pages) == max(1, -(-whole['total'] // 2)), tool
        assert summary['total'] == whole['total'] and summary[key] == [] and summary['summary'], tool
    assert [c['name'] for c in out['list_clusters'][1][0]] == ['production', 'staging', 'disaster-recovery']
    assert len(out['list_nodes'][1][0]) == 9
    assert out['list_nodes'][2][1]['summary'] == {'cluster': {'disaster-recovery': 3, 'production': 3, 'staging': 3},
                                                  'status': {'online': 9}}
    err, nodes = out['fields']
    assert not err and nodes['count'] == 3 and nodes['total'] == 9 and nodes['truncated'] is True
    assert [set(n) for n in nodes['nodes']] == [{'cluster', 'name', 'status'}] * 3
    assert_clean(big_lab, texts, stderr)


# ------------------------------------------------------------------ arguments refused

def test_unknown_arguments_and_wrong_types_are_refused(big_lab):
    """An unknown argument (limit where there is none, foo), a value of the wrong JSON type, an unknown field
    and a cursor of another call are tool errors that say what is wrong; nothing is silently ignored."""
    async def body(client):
        calls = (('list_guests', {'foo': 1}), ('route_guest', {'name': 'stg-x', 'limit': 3}),
                 ('list_guests', {'limit': '5'}), ('list_guests', {'include_templates': 'yes'}),
                 ('list_guests', {'limit': 0}), ('list_guests', {'fields': ['vmid', 'colour']}),
                 ('list_guests', {'cursor': 'not-a-cursor'}), ('cluster_status', {}))
        out = [await client.call(tool, **args) for tool, args in calls]
        err, page = await client.call('list_guests', status='running')
        out.append(await client.call('list_guests', status='stopped', cursor=page['next_cursor']))
        out.append(await client.call('list_nodes', cursor=page['next_cursor']))
        return out

    (foo, limit, text_int, text_bool, zero, field, cursor, missing, other_filter, other_tool), texts, stderr = \
        run_mcp(mcp_env(big_lab), body)
    assert foo[0] is True and 'unknown argument(s) foo' in foo[1] and 'it takes: cluster, status' in foo[1]
    assert limit[0] is True and 'unknown argument(s) limit' in limit[1] and 'it takes: name' in limit[1]
    assert text_int[0] is True and 'limit' in text_int[1] and 'valid integer' in text_int[1]
    assert text_bool[0] is True and 'include_templates' in text_bool[1] and 'valid boolean' in text_bool[1]
    assert zero[0] is True and 'greater than or equal to 1' in zero[1]
    assert field[0] is True and 'fields.1' in field[1] and "'memory_total'" in field[1]
    assert cursor[0] is True and 'is not a next_cursor of this server' in cursor[1]
    assert missing[0] is True and 'cluster' in missing[1] and 'Field required' in missing[1]
    for err, text in (other_filter, other_tool):
        assert err is True and 'this cursor belongs to another call' in text
    assert_clean(big_lab, texts, stderr)


# ------------------------------------------------------------------ typed results, version, resources, prompt

def test_output_schemas_version_resources_and_prompt(big_lab):
    """Every read tool publishes an outputSchema with its real fields (the rows' from health.py) and its
    structuredContent validates against it; serverInfo.version is galaxy.yml's; input schemas refuse unknown
    names; pmx://clusters and pmx://clusters/{name} hold the health rows; the routing prompt explains the rules."""
    async def body(client):
        tools = dict((t.name, t) for t in (await client.session.list_tools()).tools)
        results = {}
        for name, args in READ_CALLS:
            results[name] = await client.call(name, **args)
        resources = await client.session.list_resources()
        templates = await client.session.list_resource_templates()
        clusters = await client.session.read_resource('pmx://clusters')
        staging = await client.session.read_resource('pmx://clusters/staging')
        prompts = await client.session.list_prompts()
        prompt = await client.session.get_prompt('routing_rules')
        return tools, results, resources, templates, clusters, staging, prompts, prompt

    (tools, results, resources, templates, clusters, staging, prompts, prompt), texts, stderr = run_mcp(
        mcp_env(big_lab), body)
    for name, (err, res) in results.items():
        schema = tools[name].output_schema
        assert not err, (name, res)
        assert schema and schema['type'] == 'object' and schema.get('properties'), name
        assert set(schema['required']) <= set(res), name
        jsonschema.validate(res, schema)
        assert tools[name].input_schema.get('additionalProperties') is False, name
    for name in LIST_TOOLS:
        assert {'total', 'count', 'truncated', 'next_cursor', 'summary'} <= set(tools[name].output_schema['required'])
        assert {'limit', 'cursor', 'fields', 'summary'} <= set(tools[name].input_schema['properties']), name
    defs = tools['list_guests'].output_schema['$defs']
    assert set(defs['ClusterGuestRow']['properties']) == {'cluster'} | set(get_type_hints(health.GuestRow))
    assert set(tools['list_nodes'].output_schema['$defs']['ClusterNodeRow']['properties']) == \
        {'cluster'} | set(get_type_hints(health.NodeRow))
    assert set(get_type_hints(health.ClusterHealth)) <= set(
        tools['list_clusters'].output_schema['$defs']['HealthRow']['properties'])
    assert set(results['list_guests'][1]['guests'][0]) == {'cluster'} | set(get_type_hints(health.GuestRow))

    assert [str(r.uri) for r in resources.resources] == ['pmx://clusters']
    assert [t.uri_template for t in templates.resource_templates] == ['pmx://clusters/{name}']
    rows = json.loads(clusters.contents[0].text)
    assert [r['name'] for r in rows] == ['production', 'staging', 'disaster-recovery']
    assert all(r['reachable'] and r['guests']['qemu']['total'] > 400 for r in rows)
    one = json.loads(staging.contents[0].text)
    assert one['name'] == 'staging' and one['storages'] and one['nodes_online'] == 3
    assert [p.name for p in prompts.prompts] == ['routing_rules']
    text = prompt.messages[0].content.text
    assert 'stg-* -> staging' in text and 'default cluster is production' in text and 'route_guest' in text
    assert 'next_cursor' in text and 'summary' in text
    assert_clean(big_lab, texts, stderr)


def test_server_version_is_the_collections(big_lab, tmp_path):
    """serverInfo.version is the version galaxy.yml gives (read from the installed collection's MANIFEST.json)."""
    async def main():
        with open(tmp_path / 'stderr', 'w+') as errlog:
            async with raw_server(mcp_env(big_lab), errlog) as (dummy, dummy, dummy, init):
                return init

    init = asyncio.run(asyncio.wait_for(main(), 60))
    galaxy = yaml.safe_load((REPO / 'galaxy.yml').read_text())
    assert init.server_info.name == 'pmx-multicluster' and init.server_info.version == galaxy['version']


# ------------------------------------------------------------------ a hanging cluster: deadline, cancel, shutdown

HANG_SECS = 5


@pytest.fixture
def staging_hangs(big_lab):
    """Every request to staging hangs for HANG_SECS (its client's timeout is longer)."""
    network_fault(big_lab, 'staging', lambda method, path, n: True, hang_secs=HANG_SECS)
    yield
    clear_network(big_lab, 'staging')


def test_hanging_cluster_answers_within_the_deadline(big_lab, staging_hangs):
    """PMX_MCP_DEADLINE=2 and staging hangs: list_guests answers after about 2 s with the other clusters' guests
    and staging named; the next reads answer at once (staging is remembered as failed)."""
    async def body(client):
        out = []
        for tool, args in (('list_guests', {'summary': True}), ('list_guests', {}), ('list_clusters', {})):
            started = time.monotonic()
            out.append((await client.call(tool, **args), time.monotonic() - started))
        return out

    ((first, first_secs), (second, second_secs), (health_, health_secs)), texts, stderr = run_mcp(
        mcp_env(big_lab, PMX_MCP_DEADLINE=2), body)
    FIGURES.update(hanging_first_seconds=round(first_secs, 2), hanging_next_seconds=round(second_secs, 2))
    assert 2 <= first_secs < 3.5, first_secs
    err, res = first
    assert not err and res['total'] == 2 * 507 and 'staging' not in res['summary']['cluster']
    assert res['errors'] == [{'cluster': 'staging',
                              'error': "cluster 'staging' did not answer within 2s; it is left out of this answer"}]
    assert second_secs < 1 and health_secs < 1, (second_secs, health_secs)
    err, res = second
    assert not err and res['total'] == 2 * 507 and [e['cluster'] for e in res['errors']] == ['staging']
    assert 'not retried for another' in res['errors'][0]['error']
    err, res = health_
    assert not err and [u['cluster'] for u in res['unreachable']] == ['staging']
    assert_clean(big_lab, texts, stderr)


@asynccontextmanager
async def raw_server(env, errlog):
    """The installed server under the official client: (session, its write stream, the server's process id,
    the initialize result). The shell writes its pid, then execs the server."""
    pidfile = os.path.join(os.path.dirname(errlog.name), 'pmx_mcp.pid')
    params = StdioServerParameters(command='/bin/sh', args=['-c', 'echo $$ > "$0"; exec "$1" "$2"', pidfile,
                                                            sys.executable, str(MCP_SERVER)], env=env)
    async with stdio_client(params, errlog=errlog) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            with open(pidfile) as handle:
                yield session, write, int(handle.read()), init


def alive(pid):
    try:
        with open('/proc/%d/stat' % pid) as handle:
            return handle.read().split(') ')[1][0] != 'Z'
    except OSError:
        return False


def test_cancel_and_shutdown_with_a_call_in_flight(big_lab, staging_hangs, tmp_path):
    """A call waiting on the hanging cluster (deadline 30 s): cancelled (notifications/cancelled), the server
    answers the next call at once; with one still in flight, closing stdin ends the server within 2 s."""
    env = mcp_env(big_lab, PMX_MCP_DEADLINE=30)

    async def main():
        with open(tmp_path / 'stderr', 'w+') as errlog:
            async with raw_server(env, errlog) as (session, write, pid, dummy):
                async with anyio.create_task_group() as group:
                    group.start_soon(session.call_tool, 'list_guests', {})
                    await anyio.sleep(0.5)
                    group.cancel_scope.cancel()
                started = time.monotonic()
                after_cancel = await session.call_tool('guest_details', {'name': 'prod-web01', 'cluster': 'production'})
                after_cancel_secs = time.monotonic() - started
                # One more in flight, sent as it is (no cancellation from the client): then stdin closes.
                await write.send(SessionMessage(JSONRPCRequest(jsonrpc='2.0', id=4242, method='tools/call', params={
                    'name': 'list_nodes', 'arguments': {}})))
                await anyio.sleep(0.5)
                assert alive(pid)
                closed = time.monotonic()
            # stdio_client closes stdin, then waits up to 2 s before it terminates the server itself.
            exit_secs = time.monotonic() - closed
            errlog.seek(0)
            return after_cancel, after_cancel_secs, exit_secs, alive(pid), errlog.read()

    after_cancel, after_cancel_secs, exit_secs, still_alive, stderr = asyncio.run(asyncio.wait_for(main(), 60))
    FIGURES.update(after_cancel_seconds=round(after_cancel_secs, 2),
                   exit_after_stdin_closed_seconds=round(exit_secs, 2))
    assert not after_cancel.is_error and after_cancel.structured_content['guest']['name'] == 'prod-web01'
    assert after_cancel_secs < 1.5, after_cancel_secs
    assert exit_secs < 1.9 and not still_alive, exit_secs
    assert_clean(big_lab, [after_cancel.content[0].text], stderr)
