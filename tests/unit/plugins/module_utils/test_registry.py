"""ClusterRegistry without a lab: the client cache (TTL), match(), concurrent map() (tests/lab/test_registry_lab.py:
health, locate and select against the lab)."""

import threading

import pytest

from ansible_collections.pmx.multicluster.plugins.module_utils.client import FailureMemory, PveClient
from ansible_collections.pmx.multicluster.plugins.module_utils.config import ClusterConfig, load_config
from ansible_collections.pmx.multicluster.plugins.module_utils.errors import (
    ApiError,
    ClusterConnectionError,
    ClusterNotFoundError,
)
from ansible_collections.pmx.multicluster.plugins.module_utils.registry import ClusterRegistry, ClusterResult

NAMES = ['production', 'staging', 'disaster-recovery']
BARRIER_TIMEOUT = 5


def make_config(cache_ttl=3600, names=NAMES):
    explicit = dict((name, {'api_url': 'https://%s.invalid:8006' % name, 'token_id': 'root@pam!t',
                            'token_secret': 'secret-' + name}) for name in names)
    return load_config(environ={}, clusters=explicit, cache_ttl=cache_ttl)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now=0.0):
        self.now = now

    def __call__(self):
        return self.now


class FakeClient:
    def __init__(self, cluster):
        self.cluster = cluster


class Factory:
    """A client factory that records what it built."""

    def __init__(self, make=FakeClient):
        self.make = make
        self.built = []

    def __call__(self, cluster):
        client = self.make(cluster)
        self.built.append((cluster.name, client))
        return client

    def count(self, name):
        return sum(1 for n, _ in self.built if n == name)


# ------------------------------------------------------------------------------------------- client cache

# (id, cache TTL, clock readings at which client('production') is asked for, how many clients get built)
CACHE = [
    ('within-ttl', 100, [0, 1, 50, 99.9], 1),
    ('at-ttl-rebuilt', 100, [0, 100], 2),
    ('after-ttl-rebuilt-then-cached', 100, [0, 150, 200, 249.9], 2),
    ('rebuilt-twice', 100, [0, 150, 200, 250, 251], 3),
    ('ttl-zero-rebuilds-every-time', 0, [0, 0, 0, 1], 4),
    ('ttl-one', 1, [0, 0.5, 1, 1.5, 2.5], 3),
]


@pytest.mark.parametrize('ttl,readings,builds', [c[1:] for c in CACHE], ids=[c[0] for c in CACHE])
def test_client_cache_ttl(ttl, readings, builds):
    clock, factory = Clock(), Factory()
    registry = ClusterRegistry(make_config(cache_ttl=ttl), client_factory=factory, clock=clock)
    seen = []
    for now in readings:
        clock.now = now
        seen.append(registry.client('production'))
    assert factory.count('production') == builds
    assert len(set(map(id, seen))) == builds
    # The client handed out is always the newest one built.
    assert seen[-1] is factory.built[-1][1]


def test_client_is_the_same_object_within_ttl_and_new_after():
    clock, factory = Clock(1000.0), Factory()
    registry = ClusterRegistry(make_config(cache_ttl=60), client_factory=factory, clock=clock)
    first = registry.client('production')
    clock.now += 59
    assert registry.client('production') is first
    clock.now += 1
    second = registry.client('production')
    assert second is not first
    assert isinstance(second, FakeClient)
    clock.now += 30
    assert registry.client('production') is second


def test_clients_are_per_cluster_and_get_their_config():
    factory = Factory()
    registry = ClusterRegistry(make_config(), client_factory=factory, clock=Clock())
    clients = dict((name, registry.client(name)) for name in NAMES)
    assert len(set(map(id, clients.values()))) == 3
    for name, client in clients.items():
        assert isinstance(client.cluster, ClusterConfig)
        assert client.cluster.name == name
        assert client.cluster is registry.config.clusters[name]
    assert [n for n, _ in factory.built] == NAMES


def test_client_by_upper_case_spelling_shares_the_cache():
    factory = Factory()
    registry = ClusterRegistry(make_config(), client_factory=factory, clock=Clock())
    assert registry.client('DISASTER_RECOVERY') is registry.client('disaster-recovery')
    assert factory.count('disaster-recovery') == 1


def test_unknown_cluster_builds_nothing():
    factory = Factory()
    registry = ClusterRegistry(make_config(), client_factory=factory, clock=Clock())
    with pytest.raises(ClusterNotFoundError) as caught:
        registry.client('prodution')
    assert caught.value.suggestion == 'production'
    assert factory.built == []


def test_invalidate_one_cluster():
    factory = Factory()
    registry = ClusterRegistry(make_config(), client_factory=factory, clock=Clock())
    prod, stg = registry.client('production'), registry.client('staging')
    registry.invalidate('production')
    assert registry.client('production') is not prod
    assert registry.client('staging') is stg
    assert factory.count('production') == 2
    assert factory.count('staging') == 1


def test_invalidate_all():
    factory = Factory()
    registry = ClusterRegistry(make_config(), client_factory=factory, clock=Clock())
    before = dict((name, registry.client(name)) for name in NAMES)
    registry.invalidate()
    for name in NAMES:
        assert registry.client(name) is not before[name]
        assert factory.count(name) == 2


def test_invalidate_unknown_or_unbuilt_is_harmless():
    factory = Factory()
    registry = ClusterRegistry(make_config(), client_factory=factory, clock=Clock())
    registry.invalidate('staging')
    registry.invalidate('nowhere')
    registry.client('staging')
    assert factory.count('staging') == 1


def test_default_factory_builds_a_pve_client_without_network():
    registry = ClusterRegistry(make_config())
    client = registry.client('staging')
    assert isinstance(client, PveClient)
    assert client.cluster.name == 'staging'
    assert registry.client('staging') is client


# ------------------------------------------------------------------------------------------------ match()

# (id, selectors, clusters selected, in configuration order)
MATCH = [
    ('none', None, NAMES),
    ('empty', [], NAMES),
    ('empty-strings', ['', None], NAMES),
    ('one-name', ['staging'], ['staging']),
    ('names-in-config-order', ['disaster-recovery', 'production'], ['production', 'disaster-recovery']),
    ('upper-case-spelling', ['DISASTER_RECOVERY'], ['disaster-recovery']),
    ('glob-all', ['*'], NAMES),
    ('glob-prefix', ['prod*'], ['production']),
    ('glob-hyphen', ['*-*'], ['disaster-recovery']),
    ('glob-question-mark', ['stag?ng'], ['staging']),
    ('glob-class', ['[ps]*'], ['production', 'staging']),
    ('name-and-glob-overlap', ['staging', 's*', 'staging'], ['staging']),
]


@pytest.mark.parametrize('selectors,expected', [m[1:] for m in MATCH], ids=[m[0] for m in MATCH])
def test_match(selectors, expected):
    registry = ClusterRegistry(make_config(), client_factory=Factory(), clock=Clock())
    assert registry.match(selectors) == expected


@pytest.mark.parametrize('selectors,needle,suggestion', [
    (['nowhere'], "'nowhere'", None),
    (['prodution'], "'prodution'", 'production'),
    (['staging', 'x*'], "'x*'", None),
])
def test_match_unknown(selectors, needle, suggestion):
    registry = ClusterRegistry(make_config(), client_factory=Factory(), clock=Clock())
    with pytest.raises(ClusterNotFoundError) as caught:
        registry.match(selectors)
    assert needle in str(caught.value)
    assert 'production, staging, disaster-recovery' in str(caught.value)
    assert caught.value.suggestion == suggestion


# -------------------------------------------------------------------------------------------------- map()

class BarrierClient(FakeClient):
    """A client whose get() returns only when the other clusters' calls are running at the same time."""

    def __init__(self, cluster, barrier):
        super().__init__(cluster)
        self.barrier = barrier

    def get(self, path):
        self.barrier.wait(BARRIER_TIMEOUT)  # BrokenBarrierError if the calls ran one after the other
        return '%s:%s' % (self.cluster.name, path)


def test_map_runs_the_calls_concurrently():
    barrier = threading.Barrier(3)
    factory = Factory(lambda cluster: BarrierClient(cluster, barrier))
    registry = ClusterRegistry(make_config(), client_factory=factory, clock=Clock())
    results = registry.map(lambda name, client: client.get('version'))
    assert list(results) == NAMES
    for name, result in results.items():
        assert isinstance(result, ClusterResult)
        assert result.ok, result.error
        assert result.cluster == name
        assert result.value == name + ':version'
    assert not barrier.broken


def test_map_builds_the_clients_concurrently():
    """A factory that blocks (say, one that logs in) must not hold up the other clusters."""
    barrier = threading.Barrier(3)

    def make(cluster):
        try:
            barrier.wait(2)
        except threading.BrokenBarrierError:
            raise ClusterConnectionError('clients were built one at a time', cluster.name)
        return FakeClient(cluster)

    registry = ClusterRegistry(make_config(), client_factory=Factory(make), clock=Clock())
    results = registry.map(lambda name, client: client.cluster.name)
    assert dict((n, r.error and str(r.error)) for n, r in results.items()) == dict.fromkeys(NAMES)
    assert dict((n, r.value) for n, r in results.items()) == dict((n, n) for n in NAMES)


def test_map_keeps_errors_per_cluster():
    registry = ClusterRegistry(make_config(), client_factory=Factory(), clock=Clock())
    down = ClusterConnectionError("cluster 'staging' is unreachable", 'staging')

    def func(name, client):
        if name == 'staging':
            raise down
        if name == 'disaster-recovery':
            raise ApiError('HTTP 500', name, 500)
        return client.cluster.name.upper()

    results = registry.map(func)
    assert list(results) == NAMES
    assert results['production'].ok and results['production'].value == 'PRODUCTION'
    assert not results['staging'].ok and results['staging'].error is down and results['staging'].value is None
    assert isinstance(results['disaster-recovery'].error, ApiError)


def test_map_keeps_a_factory_error_per_cluster():
    def make(cluster):
        if cluster.name == 'production':
            raise ClusterConnectionError('cannot build', cluster.name)
        return FakeClient(cluster)

    registry = ClusterRegistry(make_config(), client_factory=Factory(make), clock=Clock())
    results = registry.map(lambda name, client: name)
    assert str(results['production'].error) == 'cannot build'
    assert [n for n, r in results.items() if r.ok] == ['staging', 'disaster-recovery']


@pytest.mark.parametrize('names,expected', [
    (['staging'], ['staging']),
    (['disaster-recovery', 'production'], ['disaster-recovery', 'production']),
    ([], []),
])
def test_map_subset(names, expected):
    factory = Factory()
    registry = ClusterRegistry(make_config(), client_factory=factory, clock=Clock())
    results = registry.map(lambda name, client: client.cluster.name, names)
    assert list(results) == expected
    assert all(r.ok and r.value == n for n, r in results.items())
    assert sorted(n for n, _ in factory.built) == sorted(expected)


def test_map_reuses_cached_clients():
    factory = Factory()
    registry = ClusterRegistry(make_config(), client_factory=factory, clock=Clock())
    first = registry.map(lambda name, client: client)
    second = registry.map(lambda name, client: client)
    assert all(first[n].value is second[n].value for n in NAMES)
    assert len(factory.built) == 3


# ------------------------------------------------------------------------------------ map() with a deadline

class BlockingClient(FakeClient):
    """A client whose get() blocks for one cluster until the test sets ``release``; it counts the calls."""

    def __init__(self, cluster, release, slow, calls):
        super().__init__(cluster)
        self.release, self.slow, self.calls = release, slow, calls

    def get(self, path, **params):
        self.calls.append(self.cluster.name)
        if self.cluster.name in self.slow:
            self.release.wait(BARRIER_TIMEOUT)
        return '%s:%s' % (self.cluster.name, path)


@pytest.fixture
def blocking():
    """(registry whose 'staging' hangs until released, the calls made, its clock, the release event)."""
    release, calls, clock = threading.Event(), [], Clock()
    factory = Factory(lambda cluster: BlockingClient(cluster, release, {'staging'}, calls))
    registry = ClusterRegistry(make_config(), client_factory=factory, clock=clock,
                               failures=FailureMemory(hold=30, clock=clock))
    try:
        yield registry, calls, clock, release
    finally:
        release.set()


def test_map_deadline_answers_without_the_slow_cluster(blocking):
    registry, calls, clock, release = blocking
    results = registry.map(lambda name, client: client.get('version'), deadline=0.2)
    assert not release.is_set()  # map returned while staging's call still hangs: the pool was not waited for
    assert list(results) == NAMES
    assert results['production'].value == 'production:version'
    assert results['disaster-recovery'].value == 'disaster-recovery:version'
    error = results['staging'].error
    assert isinstance(error, ClusterConnectionError) and error.cluster == 'staging'
    assert str(error) == "cluster 'staging' did not answer within 0.2s; it is left out of this answer"

    # Remembered: the next call does not ask it (no second hanging call) and says why.
    clock.now += 5
    again = registry.map(lambda name, client: client.get('nodes'), deadline=0.2)
    assert str(again['staging'].error) == ("cluster 'staging' did not answer 5s ago (no answer within the 0.2s "
                                           "deadline); not retried for another 25s")
    assert again['production'].ok and calls.count('staging') == 1
    # Also without a deadline (a module, the inventory).
    assert 'did not answer 5s ago' in str(registry.map(lambda name, client: client.get('nodes'))['staging'].error)
    assert calls.count('staging') == 1
    # Once the memory expires it is asked again.
    release.set()
    clock.now += 25
    assert registry.map(lambda name, client: client.get('version'), deadline=5)['staging'].value == 'staging:version'
    assert calls.count('staging') == 2


def test_map_deadline_with_one_cluster(blocking):
    registry, calls, clock, release = blocking
    results = registry.map(lambda name, client: client.get('version'), ['staging'], deadline=0.1)
    assert not release.is_set()
    assert 'did not answer within 0.1s' in str(results['staging'].error)
    assert registry.guests(['production'], deadline=0.1)['production'].ok


def test_map_deadline_a_cluster_never_asked_is_not_remembered(blocking):
    """More clusters than workers: one still queued at the deadline was never asked, so it is not 'failed'."""
    registry, calls, clock, release = blocking
    results = registry.map(lambda name, client: client.get('version'), ['staging', 'production'], max_workers=1,
                            deadline=0.1)
    assert 'did not answer within 0.1s' in str(results['staging'].error)
    assert str(results['production'].error) == "cluster 'production' was not asked within 0.1s (too many clusters " \
        "at once)"
    assert calls == ['staging']
    release.set()
    assert registry.map(lambda name, client: client.get('version'), ['production'])['production'].ok


def test_map_without_deadline_waits_for_every_cluster(blocking):
    registry, calls, clock, release = blocking
    threading.Timer(0.2, release.set).start()
    results = registry.map(lambda name, client: client.get('version'))
    assert all(r.ok for r in results.values()) and results['staging'].value == 'staging:version'


def test_the_default_clients_share_the_registry_memory():
    registry = ClusterRegistry(make_config())
    assert registry.client('staging').failures is registry.failures
    assert registry.client('production').failures is registry.failures



def test_a_many_guest_run_checks_every_route_it_takes():
    """fleet.RunRegistry(check_route=...): each route is checked as it is chosen; a refusal is a ClusterError
    before anything of that guest is read from or written to its cluster."""
    from ansible_collections.pmx.multicluster.plugins.module_utils.errors import ClusterError
    from ansible_collections.pmx.multicluster.plugins.module_utils.fleet import RunRegistry

    def only_staging(route):
        if route.cluster != 'staging':
            raise ClusterError("writes to cluster '%s' are not allowed" % route.cluster, route.cluster)

    factory = Factory()
    run = RunRegistry(ClusterRegistry(make_config(), client_factory=factory, clock=Clock()), only_staging)
    assert run.select(cluster='staging').cluster == 'staging'
    with pytest.raises(ClusterError, match="cluster 'production' are not allowed"):
        run.select(cluster='production')
    assert RunRegistry(ClusterRegistry(make_config(), client_factory=factory)).select(
        cluster='production').cluster == 'production'  # no check: every route
