"""health.py against the lab: clusters_health() in the order asked, and with a cluster down (the rows without
a lab: tests/unit/plugins/module_utils/test_health.py)."""

from ansible_collections.pmx.multicluster.plugins.module_utils import health
from ansible_collections.pmx.multicluster.plugins.module_utils.config import load_config
from ansible_collections.pmx.multicluster.plugins.module_utils.registry import ClusterRegistry
from ansible_collections.pmx.multicluster.tests.unit.plugins.module_utils.test_health import (
    HEALTH_FIELDS,
    NODE_FIELDS,
    STORAGE_FIELDS,
)


def test_clusters_health_against_the_lab(lab, lab_config):
    """In the order asked, with the fake's storages; the registry's validate_all_clusters is the same answer."""
    registry = ClusterRegistry(lab_config)
    answer = health.clusters_health(registry, ['disaster-recovery', 'staging'], storages=True)
    assert [h['name'] for h in answer] == ['disaster-recovery', 'staging']
    for info in answer:
        assert set(info) == HEALTH_FIELDS | {'storages'} and info['reachable'] is True
        assert all(set(n) == NODE_FIELDS for n in info['nodes'])
        assert all(set(s) == STORAGE_FIELDS for s in info['storages']) and info['storages']
    assert registry.validate_all_clusters(['staging'], storages=True)[0]['nodes'] == answer[1]['nodes']


def test_clusters_health_with_a_cluster_down(lab):
    """A cluster that refuses: reachable false with its error, the others answered."""
    cfg = load_config(environ={}, env_file=lab.env_file,
                      clusters={'staging': {'api_url': 'https://127.0.9.9:8006', 'timeout': 2}})
    by_name = dict((h['name'], h) for h in health.clusters_health(ClusterRegistry(cfg)))
    assert by_name['staging']['reachable'] is False and 'connection refused' in by_name['staging']['error']
    assert by_name['production']['reachable'] is True and by_name['production']['guests']['qemu']['total'] == 4
