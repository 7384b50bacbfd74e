"""ClusterRegistry against the lab: health, locate and select on the shared lab, faults on a lab of its own (the
client cache, match() and map() without a lab: tests/unit/plugins/module_utils/test_registry.py)."""

import json

import pytest

from ansible_collections.pmx.multicluster.plugins.module_utils.config import load_config
from ansible_collections.pmx.multicluster.plugins.module_utils.errors import AmbiguousClusterSelectionError
from ansible_collections.pmx.multicluster.plugins.module_utils.registry import ClusterRegistry
from ansible_collections.pmx.multicluster.plugins.module_utils.router import Route
from ansible_collections.pmx.multicluster.tests.unit.plugins.module_utils.test_registry import NAMES, Factory

import pmxlab

# ------------------------------------------------------------------------------- against the shared lab

def expected_guest_counts():
    """What health() must count for the lab's sample guests (templates are not in total)."""
    counts = {'qemu': {'running': 0, 'stopped': 0, 'total': 0, 'templates': 0},
              'lxc': {'running': 0, 'stopped': 0, 'total': 0, 'templates': 0}}
    for _, kind, _, status, _, _, _, _ in pmxlab.SAMPLE_GUESTS:
        if kind == 'template':
            counts['qemu']['templates'] += 1
        else:
            counts[kind][status] += 1
            counts[kind]['total'] += 1
    return counts


def test_expected_guest_counts_match_the_lab_description():
    assert expected_guest_counts() == {'qemu': {'running': 3, 'stopped': 1, 'total': 4, 'templates': 1},
                                       'lxc': {'running': 1, 'stopped': 1, 'total': 2, 'templates': 0}}


def test_validate_all_clusters(lab, lab_config):
    registry = ClusterRegistry(lab_config)
    health = registry.validate_all_clusters()
    assert [h['name'] for h in health] == NAMES
    for info in health:
        cluster = lab.clusters[info['name']]
        assert info['reachable'] is True
        assert info['error'] is None
        assert info['version'] == cluster.pve.version
        assert info['release'] == cluster.pve.release_version
        assert info['quorate'] is True
        assert info['nodes_online'] == 3
        assert info['nodes_total'] == 3
        assert [n['name'] for n in info['nodes']] == cluster.nodes
        assert all(n['status'] == 'online' for n in info['nodes'])
        assert info['guests'] == expected_guest_counts()
        assert info['region'] == cluster.region
        assert info['tier'] == cluster.tier
        assert info['patterns'] == cluster.patterns
        assert info['api_url'] == cluster.url
        assert 'storages' not in info
        text = json.dumps(info)
        for secret in lab_config.secrets:
            assert secret not in text


def test_validate_some_clusters_with_storages(lab, lab_config):
    health = ClusterRegistry(lab_config).validate_all_clusters(names=['staging'], storages=True)
    assert [h['name'] for h in health] == ['staging']
    storages = health[0]['storages']
    # Each node lists the fake's two storages and the lab's shared NFS backup storage.
    assert sorted(set(s['storage'] for s in storages)) == ['backup-nfs', 'local', 'local-lvm']
    assert sorted(set(s['node'] for s in storages)) == lab.clusters['staging'].nodes


@pytest.mark.parametrize('kwargs,expected', [
    (dict(name='stg-web01'), ['staging']),
    (dict(name='dr-tpl-debian12'), ['disaster-recovery']),
    (dict(name='prod-proxy01'), ['production']),
    (dict(vmid=100), NAMES),
    (dict(vmid='9000'), NAMES),
    (dict(name='unknown-x'), []),
    (dict(vmid=4242), []),
])
def test_locate(lab_config, kwargs, expected):
    found = ClusterRegistry(lab_config).locate(**kwargs)
    assert (found.clusters, found.unreadable) == (expected, {})


@pytest.mark.parametrize('kwargs,expected', [
    (dict(name='unknown-x'), ('production', 'default')),
    (dict(name='stg-web01'), ('staging', "pattern 'stg-*'")),
    (dict(cluster='DISASTER_RECOVERY', vmid=100), ('disaster-recovery', 'explicit')),
])
def test_select(lab_config, kwargs, expected):
    route = ClusterRegistry(lab_config).select(**kwargs)
    assert isinstance(route, Route)
    assert (route.cluster, route.reason) == expected


def test_select_vmid_in_every_cluster_is_ambiguous(lab_config):
    with pytest.raises(AmbiguousClusterSelectionError) as caught:
        ClusterRegistry(lab_config).select(vmid=100)
    assert sorted(caught.value.candidates) == sorted(NAMES)
    for name in NAMES:
        assert name in str(caught.value)


def test_select_without_lookup_never_asks_the_clusters(lab_config):
    factory = Factory()
    route = ClusterRegistry(lab_config, client_factory=factory).select(vmid=100, lookup=False)
    assert (route.cluster, route.reason) == ('production', 'default')
    assert factory.built == []


# ------------------------------------------------------------------------------ against a lab of its own

def test_select_locates_a_guest_without_a_pattern(fresh_lab, fresh_config):
    pve = fresh_lab.clusters['staging'].pve
    fresh_lab.call(pve.add_vm, 555, 'orphan-01', 'stg-pve2')
    registry = ClusterRegistry(fresh_config)
    assert registry.locate(name='orphan-01').clusters == ['staging']
    assert registry.locate(name='ORPHAN-01').clusters == ['staging']  # DNS names: case does not count
    route = registry.select(name='orphan-01')
    assert (route.cluster, route.reason, route.located) == ('staging', 'located', ['staging'])
    route = registry.select(vmid=555)
    assert (route.cluster, route.reason) == ('staging', 'located')


def test_lost_quorum_shows_in_health(fresh_lab, fresh_config):
    fresh_lab.call(fresh_lab.clusters['staging'].pve.lose_quorum)
    health = dict((h['name'], h) for h in ClusterRegistry(fresh_config).validate_all_clusters())
    assert health['staging']['quorate'] is False
    assert health['staging']['reachable'] is True
    assert health['production']['quorate'] is True
    assert health['disaster-recovery']['quorate'] is True


def test_offline_node_shows_in_health(fresh_lab, fresh_config):
    cluster = fresh_lab.clusters['disaster-recovery']
    fresh_lab.call(cluster.pve.set_node_offline, cluster.nodes[1])
    info = ClusterRegistry(fresh_config).validate_all_clusters(names=['disaster-recovery'])[0]
    assert info['nodes_online'] == 2
    assert info['nodes_total'] == 3
    assert dict((n['name'], n['status']) for n in info['nodes'])[cluster.nodes[1]] == 'offline'


def check_degraded(health, down):
    by_name = dict((h['name'], h) for h in health)
    assert list(by_name) == NAMES
    info = by_name[down]
    assert info['reachable'] is False
    assert "cluster '%s'" % down in info['error']
    assert 'connection refused' in info['error']
    assert info['guests'] is None and info['nodes'] == [] and info['quorate'] is None
    assert info['name'] == down and info['region']  # the configuration is still shown
    for name in NAMES:
        if name != down:
            assert by_name[name]['reachable'] is True
            assert by_name[name]['error'] is None
            assert by_name[name]['guests'] == expected_guest_counts()


def test_a_stopped_cluster_degrades_health(fresh_lab, fresh_config):
    fresh_lab.call(fresh_lab.clusters['staging'].pve.stop())
    registry = ClusterRegistry(fresh_config)
    check_degraded(registry.validate_all_clusters(), 'staging')
    # locate() names the cluster it cannot reach instead of skipping it silently.
    found = registry.locate(vmid=100)
    assert found.clusters == ['production', 'disaster-recovery']
    assert list(found.unreadable) == ['staging'] and 'connection refused' in found.unreadable['staging']


def test_an_unreachable_address_degrades_health(fresh_lab):
    config = load_config(environ={}, env_file=fresh_lab.env_file,
                         clusters={'disaster-recovery': {'api_url': 'https://127.0.9.9:8006'}})
    check_degraded(ClusterRegistry(config).validate_all_clusters(), 'disaster-recovery')
