"""Router.select: explicit > pattern (globs, prefix map, naming convention) > located > default."""

import pytest

from ansible_collections.pmx.multicluster.plugins.module_utils.config import load_config
from ansible_collections.pmx.multicluster.plugins.module_utils.errors import (
    AmbiguousClusterSelectionError,
    ClusterError,
    ClusterNotFoundError,
    UnreadableClustersError,
)
from ansible_collections.pmx.multicluster.plugins.module_utils.router import Located, Route, Router


def make_config(clusters, prefix_map=None, default=None):
    """A RegistryConfig of clusters {name: [glob patterns]} (no network: the router never connects)."""
    explicit = dict((name, {'api_url': 'https://%s.example.com' % name.lower(), 'token_id': 'root@pam!t',
                            'token_secret': 'secret-%s' % name, 'patterns': patterns})
                    for name, patterns in clusters.items())
    environ = {}
    if prefix_map:
        environ['PROXMOX_CLUSTER_PATTERNS'] = prefix_map
    if default:
        environ['PROXMOX_DEFAULT_CLUSTER'] = default
    return load_config(environ=environ, clusters=explicit)


CONFIGS = {
    # The seed's three clusters with their glob patterns; default: the first.
    'seed': make_config({'production': ['prod-*', '*-prod'], 'staging': ['stg-*'], 'disaster-recovery': ['dr-*']}),
    # The seed's global prefix map instead of globs; default staging.
    'prefix': make_config({'production': [], 'staging': [], 'disaster-recovery': []},
                          prefix_map='prod-:production,stg-:staging,dr-:disaster-recovery', default='staging'),
    # Only the naming convention: cluster names that are prefixes of each other.
    'convention': make_config({'prod': [], 'disaster': [], 'disaster-recovery': []}, default='disaster'),
    # Overlapping globs.
    'overlap': make_config({'production': ['web-*'], 'staging': ['*-test'], 'lab': ['lab-*']}),
    # A glob of one cluster and the prefix map of another overlap.
    'glob-vs-prefix': make_config({'production': ['app-*'], 'staging': []}, prefix_map='app-:staging'),
    # Glob and prefix map pointing at the same cluster: not ambiguous.
    'glob-and-prefix-agree': make_config({'production': ['app-*'], 'staging': []}, prefix_map='app-:production'),
}

NO_LOCATE = object()  # the row passes no locate callable at all

# (id, config, select() arguments, what locate() answers or NO_LOCATE, (cluster, reason))
ROUTES = [
    # 1. explicit
    ('explicit', 'seed', dict(cluster='staging'), NO_LOCATE, ('staging', 'explicit')),
    ('explicit-beats-pattern', 'seed', dict(cluster='staging', name='prod-web01'), NO_LOCATE, ('staging', 'explicit')),
    ('explicit-beats-located', 'seed', dict(cluster='disaster-recovery', name='web01'), ['production'],
     ('disaster-recovery', 'explicit')),
    ('explicit-beats-prefix', 'prefix', dict(cluster='production', name='stg-x'), NO_LOCATE,
     ('production', 'explicit')),
    ('explicit-upper-case-spelling', 'seed', dict(cluster='DISASTER_RECOVERY'), NO_LOCATE,
     ('disaster-recovery', 'explicit')),
    ('explicit-lower-underscore-spelling', 'seed', dict(cluster='disaster_recovery'), NO_LOCATE,
     ('disaster-recovery', 'explicit')),
    ('explicit-upper-plain-name', 'seed', dict(cluster='STAGING', name='prod-x'), NO_LOCATE, ('staging', 'explicit')),
    # 2. name patterns: per-cluster globs
    ('glob', 'seed', dict(name='prod-web01'), NO_LOCATE, ('production', "pattern 'prod-*'")),
    ('second-glob', 'seed', dict(name='api-prod'), NO_LOCATE, ('production', "pattern '*-prod'")),
    ('glob-hyphenated-cluster', 'seed', dict(name='dr-db01'), NO_LOCATE, ('disaster-recovery', "pattern 'dr-*'")),
    ('glob-beats-located', 'seed', dict(name='stg-web01'), ['production'], ('staging', "pattern 'stg-*'")),
    ('glob-with-vmid', 'seed', dict(name='stg-web01', vmid=100), ['production', 'staging'],
     ('staging', "pattern 'stg-*'")),
    ('glob-ignores-case', 'seed', dict(name='PROD-web01'), NO_LOCATE, ('production', "pattern 'prod-*'")),
    ('glob-and-prefix-same-cluster', 'glob-and-prefix-agree', dict(name='app-1'), NO_LOCATE,
     ('production', "pattern 'app-*'")),
    # 2. name patterns: the global prefix map
    ('prefix-map', 'prefix', dict(name='prod-web01'), NO_LOCATE, ('production', "prefix 'prod-'")),
    ('prefix-map-hyphenated-cluster', 'prefix', dict(name='dr-web01'), NO_LOCATE,
     ('disaster-recovery', "prefix 'dr-'")),
    ('prefix-map-no-match', 'prefix', dict(name='web01'), NO_LOCATE, ('staging', 'default')),
    ('prefix-map-is-a-prefix-not-a-substring', 'prefix', dict(name='web-prod-01'), NO_LOCATE, ('staging', 'default')),
    ('prefix-map-beats-located', 'prefix', dict(name='prod-x'), ['staging'], ('production', "prefix 'prod-'")),
    # 2. name patterns: the naming convention (only when no rule matched)
    ('convention', 'convention', dict(name='prod-web01'), NO_LOCATE, ('prod', "naming convention 'prod-'")),
    ('convention-hyphenated-longest-wins', 'convention', dict(name='disaster-recovery-x'), NO_LOCATE,
     ('disaster-recovery', "naming convention 'disaster-recovery-'")),
    ('convention-shorter-name', 'convention', dict(name='disaster-x'), NO_LOCATE,
     ('disaster', "naming convention 'disaster-'")),
    ('convention-needs-the-dash', 'convention', dict(name='production-x'), NO_LOCATE, ('disaster', 'default')),
    ('convention-needs-more-than-the-name', 'convention', dict(name='prod'), NO_LOCATE, ('disaster', 'default')),
    ('convention-ignores-case', 'convention', dict(name='DISASTER-RECOVERY-x'), NO_LOCATE,
     ('disaster-recovery', "naming convention 'disaster-recovery-'")),
    ('convention-in-seed', 'seed', dict(name='disaster-recovery-web01'), NO_LOCATE,
     ('disaster-recovery', "naming convention 'disaster-recovery-'")),
    ('glob-beats-convention', 'seed', dict(name='staging-api-prod'), NO_LOCATE, ('production', "pattern '*-prod'")),
    ('convention-beats-located', 'seed', dict(name='staging-web'), ['production'],
     ('staging', "naming convention 'staging-'")),
    # 3. an existing guest, located
    ('located-by-name', 'seed', dict(name='web01'), ['staging'], ('staging', 'located')),
    ('located-by-vmid', 'seed', dict(vmid=100), ['disaster-recovery'], ('disaster-recovery', 'located')),
    ('located-vmid-zero-is-a-vmid', 'seed', dict(vmid=0), ['staging'], ('staging', 'located')),
    ('located-duplicates-collapse', 'seed', dict(name='web01'), ['staging', 'staging'], ('staging', 'located')),
    ('located-nowhere', 'seed', dict(name='web01'), [], ('production', 'default')),
    # 4. the default
    ('default-without-locator', 'seed', dict(name='web01'), NO_LOCATE, ('production', 'default')),
    ('default-nothing-given', 'seed', dict(), NO_LOCATE, ('production', 'default')),
    ('default-nothing-given-locator-unused', 'seed', dict(), ['staging'], ('production', 'default')),
    ('default-configured', 'prefix', dict(name='web01'), [], ('staging', 'default')),
]


class RecordingLocate:
    """A locate() callable that answers fixed clusters (and unreadable ones) and records its calls."""

    def __init__(self, answer, unreadable=None):
        self.answer = list(answer)
        self.unreadable = dict(unreadable or {})
        self.calls = []

    def __call__(self, name, vmid):
        self.calls.append((name, vmid))
        return Located(list(self.answer), dict(self.unreadable))


@pytest.mark.parametrize('config,kwargs,located,expected', [r[1:] for r in ROUTES], ids=[r[0] for r in ROUTES])
def test_select(config, kwargs, located, expected):
    router = Router(CONFIGS[config])
    locate = None if located is NO_LOCATE else RecordingLocate(located)
    route = router.select(locate=locate, **kwargs)
    assert isinstance(route, Route)
    assert (route.cluster, route.reason) == expected
    assert route.as_dict() == {'cluster': expected[0], 'reason': expected[1]}
    if route.reason == 'located':
        assert route.located == [expected[0]]
        assert locate.calls == [(kwargs.get('name'), kwargs.get('vmid'))]


@pytest.mark.parametrize('kwargs', [
    dict(name='prod-web01'),
    dict(name='stg-web01', vmid=101),
    dict(name='staging-web'),  # the naming convention is a rule as well
    dict(cluster='staging', name='web01'),
    dict(cluster='staging', vmid=100),
    dict(),
], ids=['glob', 'glob-with-vmid', 'convention', 'explicit-name', 'explicit-vmid', 'nothing'])
def test_locate_is_not_called_when_not_needed(kwargs):
    locate = RecordingLocate(['disaster-recovery'])
    route = Router(CONFIGS['seed']).select(locate=locate, **kwargs)
    assert route.cluster != 'disaster-recovery'
    assert locate.calls == []


def test_locate_is_called_once_with_name_and_vmid():
    locate = RecordingLocate(['disaster-recovery'])
    route = Router(CONFIGS['seed']).select(name='web01', vmid=100, locate=locate)
    assert route.cluster == 'disaster-recovery'
    assert locate.calls == [('web01', 100)]


# (id, config, select() arguments, what locate() answers or NO_LOCATE, the clusters the error must name)
AMBIGUOUS = [
    ('two-globs', 'overlap', dict(name='web-test'), NO_LOCATE, ['production', 'staging']),
    ('glob-and-prefix-map', 'glob-vs-prefix', dict(name='app-1'), NO_LOCATE, ['production', 'staging']),
    ('two-globs-locator-not-asked', 'overlap', dict(name='web-test'), ['lab'], ['production', 'staging']),
    ('located-in-two-by-name', 'seed', dict(name='web01'), ['production', 'disaster-recovery'],
     ['production', 'disaster-recovery']),
    ('located-in-three-by-vmid', 'seed', dict(vmid=100), ['production', 'staging', 'disaster-recovery'],
     ['production', 'staging', 'disaster-recovery']),
]


@pytest.mark.parametrize('config,kwargs,located,clusters', [r[1:] for r in AMBIGUOUS], ids=[r[0] for r in AMBIGUOUS])
def test_ambiguous(config, kwargs, located, clusters):
    locate = None if located is NO_LOCATE else RecordingLocate(located)
    with pytest.raises(AmbiguousClusterSelectionError) as caught:
        Router(CONFIGS[config]).select(locate=locate, **kwargs)
    error = caught.value
    assert isinstance(error, ClusterError)
    assert sorted(error.candidates) == sorted(clusters)
    for cluster in clusters:
        assert cluster in str(error)
    assert 'cluster' in str(error)  # tells the user to give cluster: explicitly
    if locate is not None and config in ('overlap', 'glob-vs-prefix'):
        assert locate.calls == []  # a pattern conflict is reported before any lookup


def test_ambiguous_patterns_name_the_rules():
    with pytest.raises(AmbiguousClusterSelectionError) as caught:
        Router(CONFIGS['glob-vs-prefix']).select(name='app-1')
    assert "pattern 'app-*'" in str(caught.value)
    assert "prefix 'app-'" in str(caught.value)
    assert "'app-1'" in str(caught.value)


# (id, cluster asked for, suggestion or None)
UNKNOWN = [
    ('typo', 'prodution', 'production'),
    ('typo-upper', 'PRODUTION', 'production'),
    ('typo-hyphenated', 'disaster-recovry', 'disaster-recovery'),
    ('close-to-staging', 'stagin', 'staging'),
    ('nothing-close', 'zzz', None),
]


@pytest.mark.parametrize('name,suggestion', [u[1:] for u in UNKNOWN], ids=[u[0] for u in UNKNOWN])
def test_unknown_cluster(name, suggestion):
    router = Router(CONFIGS['seed'])
    with pytest.raises(ClusterNotFoundError) as caught:
        router.select(cluster=name, name='prod-web01')
    error = caught.value
    message = str(error)
    assert error.name == name
    assert error.known == ['production', 'staging', 'disaster-recovery']
    assert "'%s'" % name in message
    assert 'production, staging, disaster-recovery' in message
    assert error.suggestion == suggestion
    if suggestion:
        assert "Did you mean '%s'?" % suggestion in message
    else:
        assert 'Did you mean' not in message


@pytest.mark.parametrize('name,expected', [
    ('production', 'production'), ('PRODUCTION', 'production'), ('disaster-recovery', 'disaster-recovery'),
    ('DISASTER_RECOVERY', 'disaster-recovery'), ('Disaster-Recovery', 'disaster-recovery'),
])
def test_resolve_cluster(name, expected):
    assert Router(CONFIGS['seed']).resolve_cluster(name) == expected


@pytest.mark.parametrize('config,name,expected', [
    ('seed', 'prod-x', {'production': ["pattern 'prod-*'"]}),
    ('seed', 'prod-x-prod', {'production': ["pattern 'prod-*'", "pattern '*-prod'"]}),
    ('seed', 'web01', {}),
    ('overlap', 'web-test', {'production': ["pattern 'web-*'"], 'staging': ["pattern '*-test'"]}),
    ('glob-and-prefix-agree', 'app-1', {'production': ["pattern 'app-*'", "prefix 'app-'"]}),
    ('convention', 'disaster-recovery-1', {'disaster-recovery': ["naming convention 'disaster-recovery-'"]}),
])
def test_pattern_matches(config, name, expected):
    assert Router(CONFIGS[config]).pattern_matches(name) == expected


# Routing is case-insensitive everywhere, the same way (PVE guest names are DNS names).
@pytest.mark.parametrize('config,name,expected', [
    ('seed', 'STG-WEB42', ('staging', "pattern 'stg-*'")),
    ('seed', 'Stg-Web42', ('staging', "pattern 'stg-*'")),
    ('seed', 'WEB-PROD', ('production', "pattern '*-prod'")),
    ('prefix', 'PROD-X', ('production', "prefix 'prod-'")),
    ('convention', 'DISASTER-RECOVERY-1', ('disaster-recovery', "naming convention 'disaster-recovery-'")),
    ('convention', 'Prod-1', ('prod', "naming convention 'prod-'")),
], ids=['glob-upper', 'glob-mixed', 'suffix-glob-upper', 'prefix-map-upper', 'convention-upper', 'convention-mixed'])
def test_routing_ignores_case(config, name, expected):
    route = Router(CONFIGS[config]).select(name=name, locate=RecordingLocate(['disaster-recovery']))
    assert (route.cluster, route.reason) == expected


DOWN = {'staging': "cluster 'staging' is unreachable: connection refused"}

# (id, select() arguments, found in, strict, expected: (cluster, reason) or the error's type)
UNREADABLE = [
    ('write-found-nowhere', dict(name='web05'), [], True, UnreadableClustersError),
    ('write-found-in-one', dict(name='web05'), ['production'], True, UnreadableClustersError),
    ('write-by-vmid', dict(vmid=100), ['production'], True, UnreadableClustersError),
    ('write-found-in-two', dict(name='web05'), ['production', 'disaster-recovery'], True,
     AmbiguousClusterSelectionError),
    ('read-found-in-one', dict(name='web05'), ['production'], False, ('production', 'located')),
    ('read-found-nowhere', dict(name='web05'), [], False, ('production', 'default')),
    ('pattern-needs-no-lookup', dict(name='dr-web05'), [], True, ('disaster-recovery', "pattern 'dr-*'")),
    ('explicit-needs-no-lookup', dict(cluster='production', vmid=100), [], True, ('production', 'explicit')),
]


@pytest.mark.parametrize('kwargs,found,strict,expected', [r[1:] for r in UNREADABLE], ids=[r[0] for r in UNREADABLE])
def test_a_lookup_that_could_not_read_a_cluster(kwargs, found, strict, expected):
    """A write never falls back when a cluster could not be read; a read answers and names what it could not read."""
    locate = RecordingLocate(found, DOWN)
    router = Router(CONFIGS['seed'])
    if isinstance(expected, type):
        with pytest.raises(expected) as caught:
            router.select(locate=locate, strict=strict, **kwargs)
        message = str(caught.value)
        if expected is UnreadableClustersError:
            assert caught.value.clusters == DOWN
            assert "'staging' could not be read (cluster 'staging' is unreachable: connection refused)" in message
            assert 'Nothing was changed' in message and 'Give cluster:' in message
            if found:
                assert "found in cluster 'production'" in message and 'cluster: production' in message
        return
    route = router.select(locate=locate, strict=strict, **kwargs)
    assert (route.cluster, route.reason) == expected
    assert route.unreadable == (DOWN if locate.calls else {})
