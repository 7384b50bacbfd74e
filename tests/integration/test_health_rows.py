"""pmx_cluster_info and the MCP server answer with the same rows: one builder each for nodes, storages, guests."""

from ansible_collections.pmx.multicluster.plugins.module_utils import health

from conftest import INFO, lab_secrets, mcp, play

# Fields that change from one read to the next on a running cluster.
MOVING = {'cpu', 'uptime', 'memory_used', 'disk_used'}


def steady(row):
    return dict((k, v) for k, v in row.items() if k not in MOVING)


def test_module_and_mcp_rows_have_the_same_fields(lab, tmp_path):
    result = play(lab, tmp_path, INFO, [('info', {'name': ['staging'], 'storages': True})])
    assert result.rc == 0, result.output
    info = result['info']['clusters'][0]
    clusters, status, nodes, storages, guests = mcp(lab, [
        ('list_clusters', {}), ('cluster_status', {'cluster': 'staging'}), ('list_nodes', {'cluster': 'staging'}),
        ('list_storages', {'cluster': 'staging'}), ('list_guests', {'cluster': 'staging'})])
    assert not any(err for err, dummy in (clusters, status, nodes, storages, guests))

    # A cluster: list_clusters and cluster_status have pmx_cluster_info's fields (cluster_status adds its own two).
    listed = dict((c['name'], c) for c in clusters[1]['clusters'])['staging']
    assert set(listed) == set(info) - {'storages'}
    assert set(status[1]) == set(info) | {'is_default', 'writable'}
    assert (status[1]['version'], status[1]['guests']) == (info['version'], info['guests'])

    # Nodes: the MCP rows are the module's rows, with the cluster they are in.
    assert [steady(dict(n)) for n in status[1]['nodes']] == [steady(n) for n in info['nodes']]
    assert [steady(dict((k, v) for k, v in n.items() if k != 'cluster')) for n in nodes[1]['nodes']] \
        == [steady(n) for n in info['nodes']]
    assert all(n['cluster'] == 'staging' for n in nodes[1]['nodes'])

    # Storages: the same, with disk_used / disk_total and plugintype.
    rows = [dict((k, v) for k, v in s.items() if k != 'cluster') for s in storages[1]['storages']]
    assert [steady(s) for s in rows] == [steady(s) for s in info['storages']]
    assert set(rows[0]) == {'storage', 'node', 'status', 'plugintype', 'content', 'shared', 'disk_used', 'disk_total'}

    # Guests: the core's guest row; counted, they are the module's guest counts.
    guest_fields = set(health.guest_row({'vmid': 100})) | {'cluster'}
    assert all(set(g) == guest_fields for g in guests[1]['guests'])
    assert health.guest_counts(guests[1]['guests']) == info['guests']
    result.assert_no_secret(lab_secrets(lab))
