"""Moving guests: the router's rules after a move between clusters, and the pure parts of guests/migration.py.

Tables of (case, input) -> expected, as test_router.py does; registries over plain Python clients.
"""

import pytest

from ansible_collections.pmx.multicluster.plugins.module_utils.config import load_config
from ansible_collections.pmx.multicluster.plugins.module_utils.errors import (
    AmbiguousClusterSelectionError,
    ConfigError,
    GuestConflictError,
    GuestNotFoundError,
    UnreadableClustersError,
)
from ansible_collections.pmx.multicluster.plugins.module_utils.guests.migration import (
    MoveSpec,
    choose_vmid,
    endpoint,
    evacuation_plan,
    guest_bridges,
    guest_storages,
    mapped,
    masked_endpoint,
    pair_list,
    precondition_errors,
)
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.kinds import LXC, QEMU
from ansible_collections.pmx.multicluster.plugins.module_utils.registry import ClusterRegistry
from ansible_collections.pmx.multicluster.plugins.module_utils.router import (
    Located,
    Router,
    kept_source,
    live_clusters,
)

PATTERNS = {'production': ['prod-*'], 'staging': ['stg-*'], 'disaster-recovery': ['dr-*']}


def make_config():
    explicit = dict((name, {'api_url': 'https://%s.invalid:8006' % name, 'token_id': 'root@pam!t',
                            'token_secret': 'secret-' + name, 'patterns': patterns})
                    for name, patterns in PATTERNS.items())
    return load_config(environ={}, clusters=explicit)


def vm(name, vmid=100, node='n1', status='running', lock=None, kind='qemu'):
    entry = {'type': kind, 'name': name, 'vmid': vmid, 'node': node, 'status': status}
    if lock:
        entry['lock'] = lock
    return entry


KEPT = dict(status='stopped', lock='migrate')

# ------------------------------------------------------------------ which copy is the guest

KEPT_ROWS = [
    ('stopped-and-locked-migrate', vm('a', **KEPT), True),
    ('running-locked-migrate-is-a-move-in-progress', vm('a', lock='migrate'), False),
    ('stopped-locked-backup', vm('a', status='stopped', lock='backup'), False),
    ('stopped-unlocked', vm('a', status='stopped'), False),
    ('running', vm('a'), False),
]


@pytest.mark.parametrize('entry,expected', [r[1:] for r in KEPT_ROWS], ids=[r[0] for r in KEPT_ROWS])
def test_kept_source(entry, expected):
    assert kept_source(entry) is expected


LIVE_ROWS = [
    ('copy-and-kept-source', {'production': [vm('a', **KEPT)], 'staging': [vm('a')]}, ['staging']),
    ('stopped-copy-and-kept-source', {'production': [vm('a', **KEPT)], 'staging': [vm('a', status='stopped')]},
     ['staging']),
    ('two-live', {'production': [vm('a')], 'staging': [vm('a')]}, ['production', 'staging']),
    ('two-kept', {'production': [vm('a', **KEPT)], 'staging': [vm('a', **KEPT)]}, []),
    ('a-copy-still-copying-counts-as-live', {'production': [vm('a', **KEPT)], 'staging': [vm('a', lock='migrate')]},
     ['staging']),
]


@pytest.mark.parametrize('entries,expected', [r[1:] for r in LIVE_ROWS], ids=[r[0] for r in LIVE_ROWS])
def test_live_clusters(entries, expected):
    assert live_clusters(entries) == expected


class Locate:
    def __init__(self, entries, unreadable=None):
        self.entries = entries
        self.unreadable = unreadable or {}

    def __call__(self, name, vmid):
        return Located(list(self.entries), dict(self.unreadable), dict(self.entries))


# (case, select() arguments, where the name exists, expected (cluster, reason, moved_from) or an error class)
SELECT_ROWS = [
    ('located-live-copy-not-kept-source', dict(name='web01'),
     {'production': [vm('web01', **KEPT)], 'staging': [vm('web01')]}, ('staging', 'located', ['production'])),
    ('located-two-live-copies-is-ambiguous', dict(name='web01'),
     {'production': [vm('web01')], 'staging': [vm('web01')]}, AmbiguousClusterSelectionError),
    ('located-two-kept-sources-is-ambiguous', dict(name='web01'),
     {'production': [vm('web01', **KEPT)], 'staging': [vm('web01', **KEPT)]}, AmbiguousClusterSelectionError),
    ('located-by-vmid-never-prefers', dict(vmid=100),
     {'production': [vm('web01', **KEPT)], 'staging': [vm('web01')]}, AmbiguousClusterSelectionError),
    ('pattern-still-wins-in-the-router', dict(name='prod-web01'),
     {'production': [vm('prod-web01', **KEPT)], 'staging': [vm('prod-web01')]},
     ('production', "pattern 'prod-*'", [])),
]


@pytest.mark.parametrize('kwargs,entries,expected', [r[1:] for r in SELECT_ROWS], ids=[r[0] for r in SELECT_ROWS])
def test_router_after_a_move(kwargs, entries, expected):
    router = Router(make_config())
    if isinstance(expected, type):
        with pytest.raises(expected):
            router.select(locate=Locate(entries), **kwargs)
        return
    route = router.select(locate=Locate(entries), **kwargs)
    assert (route.cluster, route.reason, route.moved_from) == expected


# ------------------------------------------------------------------ the registry follows a moved guest

class Client:
    """A cluster's /cluster/resources, or an error when it cannot be read."""

    def __init__(self, guests=None, error=None):
        self.guests = guests or []
        self.error = error

    def get(self, path, **params):
        if self.error:
            raise self.error
        assert path == 'cluster/resources'
        return list(self.guests)


def registry(clusters):
    return ClusterRegistry(make_config(), client_factory=lambda conf: clusters[conf.name])


FOLLOW_ROWS = [
    # (case, the clusters' guests, find_guest arguments, expected (cluster, vmid, moved_from) or error)
    ('pattern-to-kept-source-follows-the-copy',
     {'production': [vm('prod-web01', **KEPT)], 'staging': [vm('prod-web01', 250, 'stg-pve1')]},
     dict(name='prod-web01'), ('staging', 250, ['production'])),
    ('pattern-to-deleted-source-follows-the-copy',
     {'production': [], 'staging': [vm('prod-web01', 250, 'stg-pve1')]},
     dict(name='prod-web01'), ('staging', 250, ['production'])),
    ('pattern-to-live-guest-stays', {'production': [vm('prod-web01')], 'staging': [vm('prod-web01', 250)]},
     dict(name='prod-web01'), ('production', 100, [])),
    ('explicit-cluster-gets-the-kept-source',
     {'production': [vm('prod-web01', **KEPT)], 'staging': [vm('prod-web01', 250)]},
     dict(name='prod-web01', cluster='production'), ('production', 100, [])),
    ('kept-source-without-a-copy-is-the-guest', {'production': [vm('prod-web01', **KEPT)], 'staging': []},
     dict(name='prod-web01'), ('production', 100, [])),
    ('nowhere-is-not-found', {'production': [], 'staging': []}, dict(name='prod-web01'), GuestNotFoundError),
    ('copies-in-two-other-clusters-are-not-followed',
     {'production': [], 'staging': [vm('prod-web01')], 'disaster-recovery': [vm('prod-web01')]},
     dict(name='prod-web01'), GuestNotFoundError),
    ('kept-source-and-an-unreadable-cluster-refuses',
     {'production': [vm('prod-web01', **KEPT)], 'staging': Client(error=ConnectionError)},
     dict(name='prod-web01'), UnreadableClustersError),
]


@pytest.mark.parametrize('clusters,kwargs,expected', [r[1:] for r in FOLLOW_ROWS], ids=[r[0] for r in FOLLOW_ROWS])
def test_find_guest_after_a_move(clusters, kwargs, expected):
    from ansible_collections.pmx.multicluster.plugins.module_utils.errors import ClusterConnectionError
    built = {}
    for name in PATTERNS:
        value = clusters.get(name, [])
        if isinstance(value, Client):
            value = Client(error=ClusterConnectionError('down', name))
        built[name] = value if isinstance(value, Client) else Client(value)
    reg = registry(built)
    if isinstance(expected, type):
        with pytest.raises(expected):
            reg.find_guest(**kwargs)
        return
    route, dummy, entry = reg.find_guest(**kwargs)
    assert (route.cluster, entry['vmid'], route.moved_from) == expected


def test_follow_move_needs_a_rule():
    reg = registry(dict((n, Client()) for n in PATTERNS))
    route = reg.select(cluster='production', lookup=False)
    assert reg.follow_move(route, 'prod-web01', vm('prod-web01', **KEPT)) is None


# ------------------------------------------------------------------ pure helpers

PAIRS = [
    ('map', dict(mapping={'local-lvm': 'ceph', 'nfs': 'local'}), 'local-lvm:ceph,nfs:local'),
    ('single', dict(single='ceph'), 'ceph'),
    ('map-and-default', dict(mapping={'a': 'b'}, single='c'), 'a:b,c'),
    ('nothing-is-identity', dict(), '1'),
]


@pytest.mark.parametrize('kwargs,expected', [r[1:] for r in PAIRS], ids=[r[0] for r in PAIRS])
def test_pair_list(kwargs, expected):
    assert pair_list(**kwargs) == expected


@pytest.mark.parametrize('pairs,source,expected', [
    ('a:b,c:d', 'a', 'b'), ('a:b,c:d', 'x', 'x'), ('ceph', 'x', 'ceph'), ('1', 'x', 'x'), ('a:b,z', 'q', 'z'),
])
def test_mapped(pairs, source, expected):
    assert mapped(pairs, source) == expected


def test_guest_storages_and_bridges():
    config = {'scsi0': 'local-lvm:vm-100-disk-0,size=32G', 'ide2': 'none,media=cdrom',
              'ide0': 'nfs-iso:iso/debian.iso,media=cdrom', 'unused0': 'ceph:vm-100-disk-1',
              'net0': 'virtio=BC:24:11:00:00:01,bridge=vmbr0', 'net1': 'virtio,bridge=vmbr7,tag=5', 'name': 'x'}
    assert sorted(guest_storages(QEMU, config)) == ['ceph', 'local-lvm', 'nfs-iso']
    assert guest_bridges(QEMU, config) == ['vmbr0', 'vmbr7']
    ct = {'rootfs': 'local-lvm:subvol-104-disk-0,size=8G', 'mp0': 'data:subvol-104-disk-1,mp=/d',
          'net0': 'name=eth0,bridge=vmbr1,ip=dhcp'}
    assert sorted(guest_storages(LXC, ct)) == ['data', 'local-lvm']
    assert guest_bridges(LXC, ct) == ['vmbr1']


VMIDS = [
    ('source-free', dict(source_vmid=100, taken=[101]), (100, 'same as the source')),
    ('source-taken', dict(source_vmid=100, taken=[100, 101]), (107, 'source vmid taken on the target: next free id')),
    ('explicit', dict(source_vmid=100, taken=[100], wanted=300), (300, 'explicit')),
    ('explicit-taken', dict(source_vmid=100, taken=[300], wanted=300), GuestConflictError),
]


@pytest.mark.parametrize('kwargs,expected', [r[1:] for r in VMIDS], ids=[r[0] for r in VMIDS])
def test_choose_vmid(kwargs, expected):
    if isinstance(expected, type):
        with pytest.raises(expected):
            choose_vmid(next_free=lambda: 107, **kwargs)
    else:
        assert choose_vmid(next_free=lambda: 107, **kwargs) == expected


def test_endpoint_and_its_mask():
    text = endpoint('https://pve.example.com:8007', 'root@pam!pmx', 's3cret-uuid', 'AA:BB')
    assert text == 'host=pve.example.com,apitoken=PVEAPIToken=root@pam!pmx=s3cret-uuid,port=8007,fingerprint=AA:BB'
    assert 's3cret' not in masked_endpoint(text, 's3cret-uuid')


PRE = [
    # (case, kind, PVE's answer, spec, online, the words the problem must contain, or [] for none)
    ('clean', QEMU, {'allowed_nodes': ['n2'], 'local_disks': [], 'local_resources': []}, MoveSpec(), True, []),
    ('local-disk-live', QEMU, {'local_disks': [{'volid': 'local-lvm:vm-100-disk-0'}]}, MoveSpec(), True,
     ['with_local_disks', 'local-lvm:vm-100-disk-0']),
    ('local-disk-live-allowed', QEMU, {'local_disks': [{'volid': 'local-lvm:vm-100-disk-0'}]},
     MoveSpec(with_local_disks=True), True, []),
    ('local-disk-offline-is-copied', QEMU, {'local_disks': [{'volid': 'local-lvm:vm-100-disk-0'}]}, MoveSpec(),
     False, []),
    ('local-cdrom-does-not-count', QEMU, {'local_disks': [{'volid': 'local:iso/x.iso', 'cdrom': 1}]}, MoveSpec(),
     True, []),
    ('passthrough', QEMU, {'local_resources': ['hostpci0']}, MoveSpec(), False, ['hostpci0']),
    ('storage-missing-on-target', QEMU, {'not_allowed_nodes': {'n2': {'unavailable_storages': ['zfs']}}},
     MoveSpec(), False, ['zfs', 'target_storage']),
    ('storage-missing-but-mapped', QEMU, {'not_allowed_nodes': {'n2': {'unavailable_storages': ['zfs']}}},
     MoveSpec(target_storage='local-lvm'), False, []),
    ('container-answer-has-hyphens', LXC, {'allowed-nodes': ['n3'], 'not-allowed-nodes': {}}, MoveSpec(), False,
     ["allowed: n3"]),
]


@pytest.mark.parametrize('kind,answer,spec,online,words', [r[1:] for r in PRE], ids=[r[0] for r in PRE])
def test_precondition_errors(kind, answer, spec, online, words):
    problems = precondition_errors(kind, answer, 'n2', spec, online)
    if not words:
        assert problems == []
    else:
        assert len(problems) == 1 and all(w in problems[0] for w in words), problems


def node(name, mem, maxmem=64 * 1024 ** 3, status='online'):
    return {'type': 'node', 'node': name, 'mem': mem, 'maxmem': maxmem, 'status': status}


def test_evacuation_plan_balances_by_free_memory():
    gib = 1024 ** 3
    resources = [node('n1', 40 * gib), node('n2', 10 * gib), node('n3', 20 * gib), node('n4', 0, status='offline'),
                 dict(vm('a', 100, 'n1'), maxmem=8 * gib), dict(vm('b', 101, 'n1'), maxmem=16 * gib),
                 dict(vm('c', 102, 'n1', kind='lxc'), maxmem=4 * gib), dict(vm('d', 103, 'n2'), maxmem=gib),
                 dict(vm('tpl', 9000, 'n1', status='stopped'), maxmem=gib, template=1),
                 dict(vm('kept', 104, 'n1', **KEPT), maxmem=32 * gib)]
    plan = evacuation_plan(resources, 'n1')
    # largest first, each to the node with most free memory then: n2 (54 free) <- b (16) -> 38; n3 (44) <- a -> 36;
    # n2 (38) <- c.
    assert [(p['name'], p['target_node']) for p in plan] == [('b', 'n2'), ('a', 'n3'), ('c', 'n2')]
    with pytest.raises(GuestConflictError):
        evacuation_plan([node('n1', 0), node('n2', 0, status='offline')], 'n1')


def test_a_move_needs_a_target():
    from ansible_collections.pmx.multicluster.plugins.module_utils.guests.migration import Migrator
    with pytest.raises(ConfigError, match='target_node'):
        Migrator(None).ensure(MoveSpec(name='prod-web01'))
