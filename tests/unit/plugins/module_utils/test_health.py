"""health.py: the node, storage and guest rows, guest counts and cluster health, without a lab
(tests/lab/test_health_lab.py: against it)."""

import json

import pytest

from ansible_collections.pmx.multicluster.plugins.module_utils import health
from ansible_collections.pmx.multicluster.plugins.module_utils.config import load_config
from ansible_collections.pmx.multicluster.plugins.module_utils.errors import ClusterConnectionError

# The field names pmx_cluster_info documents in its RETURN (clusters[].nodes[], clusters[].storages[]).
NODE_FIELDS = {'name', 'status', 'cpu', 'maxcpu', 'memory_used', 'memory_total', 'uptime'}
STORAGE_FIELDS = {'storage', 'node', 'status', 'plugintype', 'content', 'shared', 'disk_used', 'disk_total'}
GUEST_FIELDS = {'vmid', 'name', 'type', 'status', 'node', 'template', 'tags', 'pool', 'maxcpu', 'memory_total',
                'uptime'}
HEALTH_FIELDS = {'name', 'api_url', 'api_urls', 'token_id', 'verify_ssl', 'ca_bundle', 'region', 'tier', 'patterns',
                 'reachable', 'error', 'version', 'release', 'quorate', 'nodes', 'nodes_online', 'nodes_total',
                 'guests'}

NODE = {'type': 'node', 'id': 'node/pve1', 'node': 'pve1', 'status': 'online', 'cpu': 0.25, 'maxcpu': 8,
        'mem': 1024, 'maxmem': 4096, 'uptime': 77, 'disk': 1, 'maxdisk': 2}
STORAGE = {'type': 'storage', 'id': 'storage/pve1/local-lvm', 'node': 'pve1', 'storage': 'local-lvm',
           'status': 'available', 'plugintype': 'lvmthin', 'content': 'images,rootdir', 'shared': 0,
           'disk': 10, 'maxdisk': 100}
VM = {'type': 'qemu', 'id': 'qemu/100', 'vmid': 100, 'name': 'web01', 'node': 'pve1', 'status': 'running',
      'template': 0, 'tags': 'web;prod', 'pool': 'apps', 'maxcpu': 2, 'maxmem': 2048, 'uptime': 5, 'mem': 9}


def test_node_row():
    assert health.node_row(NODE) == {'name': 'pve1', 'status': 'online', 'cpu': 0.25, 'maxcpu': 8,
                                     'memory_used': 1024, 'memory_total': 4096, 'uptime': 77}
    # A /nodes entry (as the MCP server's list_nodes reads) has the same keys as a /cluster/resources one.
    assert set(health.node_row({'node': 'pve2', 'status': 'offline'})) == NODE_FIELDS
    assert health.node_row({'node': 'pve2', 'status': 'offline'})['memory_used'] is None


def test_storage_row():
    assert health.storage_row(STORAGE) == {'storage': 'local-lvm', 'node': 'pve1', 'status': 'available',
                                           'plugintype': 'lvmthin', 'content': 'images,rootdir', 'shared': False,
                                           'disk_used': 10, 'disk_total': 100}
    assert health.storage_row(dict(STORAGE, shared=1))['shared'] is True
    assert set(health.storage_row({})) == STORAGE_FIELDS


@pytest.mark.parametrize('entry,expected', [
    (VM, {'vmid': 100, 'name': 'web01', 'type': 'qemu', 'status': 'running', 'node': 'pve1', 'template': False,
          'tags': ['web', 'prod'], 'pool': 'apps', 'maxcpu': 2, 'memory_total': 2048, 'uptime': 5}),
    (dict(VM, vmid='101', tags='a,b;c', template=1), {'vmid': 101, 'tags': ['a', 'b', 'c'], 'template': True}),
    (dict(VM, tags=None, pool=None), {'tags': [], 'pool': None}),
    (dict(VM, tags=''), {'tags': []}),
])
def test_guest_row(entry, expected):
    row = health.guest_row(entry)
    assert set(row) == GUEST_FIELDS
    assert dict((k, row[k]) for k in expected) == expected


def guest(kind='qemu', status='running', template=0):
    return health.guest_row(dict(VM, type=kind, status=status, template=template))


@pytest.mark.parametrize('guests,expected', [
    ([], {'qemu': (0, 0, 0, 0), 'lxc': (0, 0, 0, 0)}),
    ([guest(), guest(status='stopped'), guest(template=1)], {'qemu': (1, 1, 2, 1), 'lxc': (0, 0, 0, 0)}),
    ([guest('lxc'), guest('lxc', 'paused')], {'qemu': (0, 0, 0, 0), 'lxc': (1, 1, 2, 0)}),  # paused counts stopped
    ([guest('lxc', template=1), guest('lxc', 'stopped', 1)], {'qemu': (0, 0, 0, 0), 'lxc': (0, 0, 0, 2)}),
    ([dict(guest(), type='storage')], {'qemu': (0, 0, 0, 0), 'lxc': (0, 0, 0, 0)}),
])
def test_guest_counts(guests, expected):
    counts = health.guest_counts(guests)
    assert counts == dict((kind, dict(zip(('running', 'stopped', 'total', 'templates'), numbers)))
                          for kind, numbers in expected.items())


class Client:
    """Answers the three health reads from plain data and counts them."""

    def __init__(self, status, resources, version=None):
        self.answers = {'version': version or {'version': '9.0.10', 'release': '9.0'}, 'cluster/status': status,
                        'cluster/resources': resources}
        self.asked = []

    def get(self, path, **params):
        self.asked.append(path)
        return self.answers[path]


def config(name='production'):
    return load_config(environ={}, clusters={name: {'api_url': 'https://pve.invalid:8006', 'token_id': 'root@pam!t',
                                                    'token_secret': 'not-shown-anywhere', 'region': 'eu'}})


@pytest.mark.parametrize('status,quorate', [
    ([{'type': 'cluster', 'quorate': 1}, {'type': 'node', 'name': 'pve1'}], True),
    ([{'type': 'cluster', 'quorate': 0}], False),
    ([{'type': 'node', 'name': 'pve1'}], True),  # a single node without a cluster is its own majority
    ([], True),
])
def test_cluster_health(status, quorate):
    cfg = config()
    offline = dict(NODE, node='pve0', status='offline')
    client = Client(status, [NODE, offline, STORAGE, VM, dict(VM, type='lxc', vmid=101, status='stopped')])
    info = health.cluster_health(cfg.clusters['production'], client)
    assert client.asked == ['version', 'cluster/status', 'cluster/resources']
    assert set(info) == HEALTH_FIELDS
    assert info['quorate'] is quorate and info['reachable'] is True and info['error'] is None
    assert (info['version'], info['release'], info['region']) == ('9.0.10', '9.0', 'eu')
    assert [n['name'] for n in info['nodes']] == ['pve0', 'pve1'] and info['nodes'][1] == health.node_row(NODE)
    assert (info['nodes_online'], info['nodes_total']) == (1, 2)
    assert info['guests']['qemu']['running'] == 1 and info['guests']['lxc']['stopped'] == 1
    assert 'not-shown-anywhere' not in json.dumps(info)
    with_storages = health.cluster_health(cfg.clusters['production'], client, storages=True)
    assert with_storages['storages'] == [health.storage_row(STORAGE)]


def test_unreachable_health():
    cfg = config().clusters['production']
    info = health.unreachable_health(cfg, ClusterConnectionError("cluster 'production' is unreachable"))
    assert set(info) == HEALTH_FIELDS
    assert info['reachable'] is False and info['error'] == "cluster 'production' is unreachable"
    assert info['guests'] is None and info['nodes'] == [] and info['region'] == 'eu'
    assert health.unreachable_health(cfg, 'x', storages=True)['storages'] == []

