"""PveClient against fakepve: TLS, failover, typed errors, safe retries, the failure memory and task waiting."""

import dataclasses
import re
import time

import pytest
from fakepve.certs import make_cert

from ansible_collections.pmx.multicluster.plugins.module_utils.client import FailureMemory, PveClient, RetryPolicy
from ansible_collections.pmx.multicluster.plugins.module_utils.config import load_config
from ansible_collections.pmx.multicluster.plugins.module_utils.errors import (
    ApiError,
    AuthenticationError,
    ClusterConnectionError,
    ClusterError,
    ConfigError,
    PermissionDeniedError,
    ResourceNotFoundError,
    TaskError,
    TaskTimeoutError,
)

# Loopback addresses where nothing listens (the labs use 127.0.1.x and 127.0.2.x).
DEAD = 'https://127.0.9.9:8006'
DEAD2 = 'https://127.0.9.10:8006'


@pytest.fixture
def prod(fresh_lab, fresh_config):
    """The production cluster of a fresh lab: (its ClusterConfig, its LabCluster)."""
    return fresh_config.clusters['production'], fresh_lab.clusters['production']


@pytest.fixture
def other_pem(tmp_path, fresh_lab):
    """A CA bundle that does not hold the lab's certificate (another self-signed one for the same hosts)."""
    return make_cert(str(tmp_path), name='other', hosts=tuple(c.host for c in fresh_lab.clusters.values()))[0]


def attempts(client):
    """Record every URL the client tries (one entry per HTTP attempt, dropped connections included)."""
    urls = []
    original = client._api

    def spy(url):
        urls.append(url)
        return original(url)
    client._api = spy
    return urls


def recorded(pve, method, suffix):
    """Requests the fake received and recorded for this method and path suffix."""
    return [r for r in pve.requests if r[0] == method and r[1].endswith(suffix)]


# ------------------------------------------------------------------------------------------------- TLS

def test_get_with_the_ca_bundle(prod):
    config, lab_cluster = prod
    assert config.verify == config.ca_bundle  # the lab's .env gives the CA bundle
    version = PveClient(config).get('version')
    assert version['version'] == lab_cluster.pve.version
    assert version['release'] == lab_cluster.pve.release_version


def test_ca_bundle_wins_over_requests_ca_bundle(prod, other_pem, monkeypatch):
    monkeypatch.setenv('REQUESTS_CA_BUNDLE', other_pem)
    config, lab_cluster = prod
    assert PveClient(config).get('version')['version'] == lab_cluster.pve.version


@pytest.mark.parametrize('env', ['system', 'other-pem', 'unset'])
def test_tls_failure_without_ca_bundle(prod, other_pem, monkeypatch, env):
    if env == 'other-pem':
        monkeypatch.setenv('REQUESTS_CA_BUNDLE', other_pem)
    elif env == 'unset':
        monkeypatch.delenv('REQUESTS_CA_BUNDLE', raising=False)
        monkeypatch.delenv('CURL_CA_BUNDLE', raising=False)
    config = dataclasses.replace(prod[0], ca_bundle=None)
    assert config.verify is True
    client = PveClient(config)
    tried = attempts(client)
    with pytest.raises(ClusterConnectionError) as caught:
        client.get('version')
    message = str(caught.value)
    assert "cluster 'production'" in message
    assert 'PROXMOX_CLUSTER_production_CA_BUNDLE' in message
    assert 'VERIFY_SSL' in message
    assert re.search(r'certificate|TLS', message)
    assert caught.value.cluster == 'production'
    assert config.token_secret not in message
    assert len(tried) == 1  # a TLS failure is not a flaky network: no retry


INSECURE = pytest.mark.filterwarnings('ignore::urllib3.exceptions.InsecureRequestWarning')


@INSECURE
def test_verify_ssl_false(prod, fresh_lab):
    config = load_config(environ={}, env_file=fresh_lab.env_file,
                         clusters={'production': {'verify_ssl': 'false'}}).clusters['production']
    assert config.verify is False
    assert PveClient(config).get('version')['version'] == prod[1].pve.version


@INSECURE
def test_verify_ssl_false_wins_over_requests_ca_bundle(prod, other_pem, monkeypatch):
    monkeypatch.setenv('REQUESTS_CA_BUNDLE', other_pem)
    config = dataclasses.replace(prod[0], verify_ssl=False, ca_bundle=None)
    assert config.verify is False
    assert PveClient(config).get('version')['version'] == prod[1].pve.version
    # The control: with verification on, that REQUESTS_CA_BUNDLE cannot verify the lab.
    with pytest.raises(ClusterConnectionError):
        PveClient(dataclasses.replace(config, verify_ssl=True)).get('version')


# -------------------------------------------------------------------------------------------- failover

def test_failover_to_the_next_url_and_remember_it(prod):
    config, lab_cluster = prod
    client = PveClient(dataclasses.replace(config, api_urls=[DEAD, lab_cluster.url]))
    tried = attempts(client)
    assert client._active == 0
    assert client.get('version')['version'] == lab_cluster.pve.version
    assert tried == [DEAD, lab_cluster.url]
    assert client._active == 1
    # The next request goes straight to the URL that answered.
    del tried[:]
    assert client.get('nodes')
    assert tried == [lab_cluster.url]


def test_failover_is_safe_for_a_write(prod):
    """A refused connection never sent the request, so a POST may go to the next URL."""
    config, lab_cluster = prod
    client = PveClient(dataclasses.replace(config, api_urls=[DEAD, lab_cluster.url]))
    node = lab_cluster.nodes[0]
    status = client.run_task('POST', 'nodes/%s/qemu/103/status/start' % node, timeout=10)
    assert status['exitstatus'] == 'OK'
    assert lab_cluster.pve.vm(103).status == 'running'
    assert len(recorded(lab_cluster.pve, 'POST', '/qemu/103/status/start')) == 1


@pytest.mark.parametrize('method,path', [('GET', 'version'), ('POST', 'nodes/prod-pve1/qemu/103/status/start')])
def test_every_url_down(prod, method, path):
    config = dataclasses.replace(prod[0], api_urls=[DEAD, DEAD2])
    client = PveClient(config, backoff=0)
    tried = attempts(client)
    with pytest.raises(ClusterConnectionError) as caught:
        client.request(method, path)
    message = str(caught.value)
    assert "cluster 'production'" in message
    assert 'unreachable' in message
    assert message.count('connection refused') == 2
    assert DEAD in message and DEAD2 in message
    assert 'PROXMOX_CLUSTER_production_API_URL' in message
    assert caught.value.cluster == 'production'
    assert tried == [DEAD, DEAD2]


# ---------------------------------------------------------------------------------------- typed errors

def test_wrong_secret(prod):
    config, lab_cluster = prod
    wrong = '0badc0de-dead-4bee-8f00-000000000000'
    client = PveClient(dataclasses.replace(config, token_secret=wrong))
    before = len(recorded(lab_cluster.pve, 'GET', '/version'))
    with pytest.raises(AuthenticationError) as caught:
        client.get('version')
    message = str(caught.value)
    assert 'root@pam!pmx' in message
    assert '401' in message
    assert 'TOKEN_SECRET' in message
    assert wrong not in message
    assert lab_cluster.token_secret not in message
    assert caught.value.cluster == 'production'
    assert len(recorded(lab_cluster.pve, 'GET', '/version')) - before == 1  # a 401 is not retried


def test_permission_denied(prod, fresh_lab):
    """fakepve lets any root@pam token do anything, so the check needs a token of another user."""
    config, lab_cluster = prod
    pve = lab_cluster.pve
    token_id, secret = 'auditor@pve!pmx', '5ec2e7a1-1111-4222-8333-auditorauditor'

    def setup():
        pve.apitokens[token_id] = secret
        pve.acl = {}  # an ACL with no grant: the token holds no privilege
    fresh_lab.call(setup)
    client = PveClient(dataclasses.replace(config, token_id=token_id, token_secret=secret))
    path = 'nodes/%s/qemu/100/status/current' % lab_cluster.nodes[0]
    with pytest.raises(PermissionDeniedError) as caught:
        client.get(path)
    message = str(caught.value)
    assert token_id in message
    assert 'VM.Audit' in message
    assert '/vms/100' in message
    assert secret not in message
    assert caught.value.cluster == 'production'
    # The control: with the privilege granted, the same call works.
    fresh_lab.call(pve.grant, token_id, '/vms/100', 'VM.Audit')
    assert client.get(path)['vmid'] == 100


def test_bad_parameter_is_an_api_error_naming_the_field(prod):
    config, lab_cluster = prod
    node = lab_cluster.nodes[0]
    with pytest.raises(ApiError) as caught:
        PveClient(config).post('nodes/%s/qemu' % node, vmid=200, memory='lots')
    error = caught.value
    assert not isinstance(error, ResourceNotFoundError)
    assert error.status == 400
    assert 'memory' in error.errors
    assert 'memory' in str(error)
    assert "cluster 'production'" in str(error)
    assert 'POST /nodes/%s/qemu' % node in str(error)
    assert lab_cluster.pve.vm(200) is None
    assert len(recorded(lab_cluster.pve, 'POST', '/nodes/%s/qemu' % node)) == 1


def test_missing_guest_is_resource_not_found(prod):
    config, lab_cluster = prod
    with pytest.raises(ResourceNotFoundError) as caught:
        PveClient(config).get('nodes/%s/qemu/999/status/current' % lab_cluster.nodes[0])
    assert '999' in str(caught.value)
    assert isinstance(caught.value, ApiError)


def test_html_error_page_is_reduced_to_text(prod, fresh_lab):
    config, lab_cluster = prod
    page = ('<!DOCTYPE html><html><head><title>500 Internal</title><style>body { color: red }</style>'
            '<script>var x = 1;</script></head><body><h1>Proxy Error</h1><p>upstream &amp; down</p></body></html>')
    fresh_lab.call(lab_cluster.pve.fail, 'GET', '/version', 500, page, True)
    with pytest.raises(ApiError) as caught:
        PveClient(config).get('version')
    message = str(caught.value)
    assert caught.value.status == 500
    assert '<' not in message and '>' not in message
    assert 'Proxy Error' in message
    assert 'upstream & down' in message
    assert 'color' not in message and 'var x' not in message
    assert "cluster 'production'" in message


def test_errors_are_cluster_errors():
    for cls in (ApiError, AuthenticationError, ClusterConnectionError, PermissionDeniedError,
                ResourceNotFoundError, TaskError, TaskTimeoutError):
        assert issubclass(cls, ClusterError)
    assert issubclass(TaskTimeoutError, TaskError)


# --------------------------------------------------------------------------------------------- retries

def test_get_is_retried_on_a_busy_answer(prod, fresh_lab):
    config, lab_cluster = prod
    pve = lab_cluster.pve
    fresh_lab.call(lambda: pve.fail('GET', '/version', 503, 'proxy busy', times=2))
    before = len(recorded(pve, 'GET', '/version'))  # the lab's own readiness check
    assert PveClient(config, retries=2, backoff=0).get('version')['version'] == pve.version
    assert len(recorded(pve, 'GET', '/version')) - before == 3


def test_get_gives_up_after_the_retries(prod, fresh_lab):
    config, lab_cluster = prod
    pve = lab_cluster.pve
    fresh_lab.call(lambda: pve.fail('GET', '/version', 503, 'proxy busy'))
    before = len(recorded(pve, 'GET', '/version'))
    with pytest.raises(ApiError) as caught:
        PveClient(config, retries=3, backoff=0).get('version')
    assert caught.value.status == 503
    assert 'proxy busy' in str(caught.value)
    assert len(recorded(pve, 'GET', '/version')) - before == 4


def test_post_is_never_repeated_on_a_busy_answer(prod, fresh_lab):
    config, lab_cluster = prod
    pve = lab_cluster.pve
    path = 'nodes/%s/qemu/103/status/start' % lab_cluster.nodes[0]
    fresh_lab.call(lambda: pve.fail('POST', '/qemu/103/status/start', 503, 'proxy busy'))
    with pytest.raises(ApiError) as caught:
        PveClient(config, retries=5, backoff=0).post(path)
    assert caught.value.status == 503
    assert len(recorded(pve, 'POST', '/qemu/103/status/start')) == 1
    assert pve.vm(103).status == 'stopped'


def test_get_is_retried_on_a_flaky_network(prod, fresh_lab):
    config, lab_cluster = prod
    pve = lab_cluster.pve
    # flaky_network(seed=) seeds only when a fake starts; the lab is running, so seed its generator here.
    fresh_lab.call(pve._random.seed, 20240601)
    fresh_lab.call(lambda: pve.flaky_network(drop_rate=0.3, seed=20240601))
    client = PveClient(config, retries=8, backoff=0)
    tried = attempts(client)
    before = len(recorded(pve, 'GET', '/version'))
    for _ in range(10):
        assert client.get('version')['version'] == pve.version
    # A dropped request never reaches the fake's log: it records only the 10 answered ones.
    assert len(recorded(pve, 'GET', '/version')) - before == 10
    assert len(tried) > 10


def test_get_on_a_dead_network_reports_the_reset(prod, fresh_lab):
    config, lab_cluster = prod
    fresh_lab.call(lambda: lab_cluster.pve.flaky_network(drop_rate=1.0))
    client = PveClient(config, retries=2, backoff=0)
    tried = attempts(client)
    with pytest.raises(ClusterConnectionError) as caught:
        client.get('version')
    assert 'connection reset' in str(caught.value)
    assert "cluster 'production'" in str(caught.value)
    assert len(tried) == 3


def test_post_is_never_repeated_on_a_flaky_network(prod, fresh_lab):
    config, lab_cluster = prod
    pve = lab_cluster.pve
    path = 'nodes/%s/qemu/103/status/start' % lab_cluster.nodes[0]
    fresh_lab.call(lambda: pve.flaky_network(drop_rate=1.0))
    client = PveClient(config, retries=5, backoff=0)
    tried = attempts(client)
    with pytest.raises(ClusterConnectionError) as caught:
        client.post(path)
    message = str(caught.value)
    assert 'may or may not have been applied' in message
    assert 'Nothing was retried' in message
    assert 'POST /%s' % path in message
    assert tried == [lab_cluster.url]
    assert pve.vm(103).status == 'stopped'


# ----------------------------------------------------------------------------------------------- tasks

def test_wait_task_ok(prod):
    config, lab_cluster = prod
    client = PveClient(config)
    upid = client.post('nodes/%s/qemu/103/status/start' % lab_cluster.nodes[0])
    assert upid.startswith('UPID:%s:' % lab_cluster.nodes[0])
    assert client.task_node(upid) == lab_cluster.nodes[0]
    status = client.wait_task(upid, timeout=10)
    assert status['status'] == 'stopped'
    assert status['exitstatus'] == 'OK'
    assert lab_cluster.pve.vm(103).status == 'running'


def test_run_task_returns_the_status_with_its_upid(prod):
    config, lab_cluster = prod
    status = PveClient(config).run_task('POST', 'nodes/%s/qemu/100/status/stop' % lab_cluster.nodes[0], timeout=10)
    assert status['exitstatus'] == 'OK'
    assert status['upid'].startswith('UPID:')
    assert status['type'] == 'qmstop'
    assert lab_cluster.pve.vm(100).status == 'stopped'


def check_task_error(error, upid, exitstatus):
    assert type(error) is TaskError
    assert error.upid == upid
    assert error.exitstatus == exitstatus
    assert error.cluster == 'production'
    assert error.log and error.log[-1] == 'TASK ERROR: ' + exitstatus
    message = str(error)
    assert "cluster 'production'" in message
    assert 'failed: ' + exitstatus in message
    assert 'Last log lines' in message and 'TASK ERROR: ' + exitstatus in message


def test_wait_task_that_fails(prod):
    """Starting a running VM: PVE answers with a task that ends in an error."""
    config, lab_cluster = prod
    client = PveClient(config)
    upid = client.post('nodes/%s/qemu/100/status/start' % lab_cluster.nodes[0])
    with pytest.raises(TaskError) as caught:
        client.wait_task(upid, timeout=10)
    check_task_error(caught.value, upid, 'VM 100 already running')
    assert 'qmstart' in str(caught.value)


def test_wait_task_injected_failure(prod, fresh_lab):
    config, lab_cluster = prod
    pve = lab_cluster.pve
    path = 'nodes/%s/qemu/103/status/start' % lab_cluster.nodes[0]
    fresh_lab.call(lambda: pve.fail('POST', '/' + path, error='qemu_exited_code'))
    client = PveClient(config)
    with pytest.raises(TaskError) as caught:
        client.run_task('POST', path, timeout=10)
    check_task_error(caught.value, caught.value.upid, 'QEMU exited with code 1')
    assert pve.vm(103).status == 'stopped'


def test_wait_task_timeout(prod, fresh_lab):
    config, lab_cluster = prod
    pve = lab_cluster.pve
    node = lab_cluster.nodes[0]

    def slow():
        pve.time_scale = 0.05
        pve.vm(100).shutdown_secs = 100  # 5 s of real time
    fresh_lab.call(slow)
    client = PveClient(config)
    upid = client.post('nodes/%s/qemu/100/status/shutdown' % node)
    started = time.monotonic()
    with pytest.raises(TaskTimeoutError) as caught:
        client.wait_task(upid, timeout=0.4, poll=0.05)
    assert time.monotonic() - started < 4  # it gave up before the task could end
    error = caught.value
    assert error.upid == upid
    assert error.cluster == 'production'
    assert 'still running after 0.4s' in str(error)
    assert 'qmshutdown' in str(error)
    # It goes on in the background: not stopped by the timeout.
    assert client.get('nodes/%s/tasks/%s/status' % (node, upid))['status'] == 'running'
    assert pve.vm(100).status == 'running'


@pytest.mark.parametrize('upid', ['', 'not-a-upid', 'UPID'])
def test_task_node_rejects_what_is_not_a_upid(upid):
    with pytest.raises(ApiError) as caught:
        PveClient.task_node(upid)
    assert 'not a Proxmox task id' in str(caught.value)


# ------------------------------------------------------------------------------------------ retry policy

class Clock:
    """A clock that only moves when the policy sleeps (or the test moves it)."""

    def __init__(self, now=100.0):
        self.now = now
        self.slept = []

    def __call__(self):
        return self.now

    def sleep(self, secs):
        self.slept.append(secs)
        self.now += secs


def policy(clock, rand=1.0, **kwargs):
    """A RetryPolicy on ``clock`` that never really sleeps; ``rand`` is what its jitter draws."""
    return RetryPolicy(sleep=clock.sleep, clock=clock, rand=lambda: rand, **kwargs)


# (id, policy arguments, the jitter's draw, pauses taken before it gives up)
POLICIES = [
    ('defaults-full-pauses', {}, 1.0, [0.2, 0.4, 0.8, 1.6, 2.0]),
    ('full-jitter-halves', {}, 0.5, [0.1, 0.2, 0.4, 0.8, 1.0]),
    ('jitter-zero', {}, 0.0, [0.0] * 5),
    ('cap', {'base': 1.0, 'cap': 1.5, 'budget': 100}, 1.0, [1.0, 1.5, 1.5, 1.5, 1.5]),
    ('max-attempts', {'max_attempts': 3}, 1.0, [0.2, 0.4]),
    ('one-attempt', {'max_attempts': 1}, 1.0, []),
    ('budget-cuts-short', {'budget': 1.0}, 1.0, [0.2, 0.4]),
    ('budget-exact', {'base': 0.25, 'budget': 0.75}, 1.0, [0.25, 0.5]),
]


@pytest.mark.parametrize('kwargs,rand,pauses', [p[1:] for p in POLICIES], ids=[p[0] for p in POLICIES])
def test_retry_policy(kwargs, rand, pauses):
    clock = Clock()
    retry = policy(clock, rand, **kwargs)
    started, attempt = clock(), 1
    while retry.again(attempt, started):
        attempt += 1
    assert clock.slept == pytest.approx(pauses)
    assert attempt == len(pauses) + 1


def test_retry_policy_defaults_are_documented():
    retry = RetryPolicy()
    assert (retry.base, retry.cap, retry.budget, retry.max_attempts) == (0.2, 2.0, 10.0, 6)


def test_retry_policy_counts_slow_attempts_in_the_budget():
    """The budget is wall time since the first attempt: attempts that took long leave less for pauses."""
    clock = Clock()
    retry = policy(clock, budget=5.0)
    started = clock()
    clock.now += 4.5  # the first attempt took 4.5 s: a pause of 0.2 s still fits
    assert retry.again(1, started) is True
    clock.now += 0.2  # after the pause a second attempt of 0.2 s: 4.9 s; a pause of 0.4 s would end past 5 s
    assert retry.again(2, started) is False
    assert clock.slept == pytest.approx([0.2])


def test_get_retried_by_the_policy_until_it_gives_up(prod, fresh_lab):
    """Every request dropped: a GET is tried max_attempts times, with the policy's pauses, no real sleep."""
    config, lab_cluster = prod
    fresh_lab.call(lambda: lab_cluster.pve.flaky_network(drop_rate=1.0))
    clock = Clock()
    client = PveClient(config, policy=policy(clock, max_attempts=4))
    tried = attempts(client)
    with pytest.raises(ClusterConnectionError) as caught:
        client.get('version')
    assert len(tried) == 4
    assert clock.slept == pytest.approx([0.2, 0.4, 0.8])
    assert 'connection reset' in str(caught.value)
    # A cluster that answers, if only sometimes, is not remembered as failed: the next GET is tried again.
    with pytest.raises(ClusterConnectionError):
        client.get('version')
    assert len(tried) == 8


def test_get_retried_within_the_budget(prod, fresh_lab):
    config, lab_cluster = prod
    fresh_lab.call(lambda: lab_cluster.pve.flaky_network(drop_rate=1.0))
    clock = Clock()
    client = PveClient(config, policy=policy(clock, max_attempts=50, budget=3.0))
    tried = attempts(client)
    with pytest.raises(ClusterConnectionError):
        client.get('version')
    assert clock.slept == pytest.approx([0.2, 0.4, 0.8, 1.6])  # 3.0 s; a fifth pause (2 s) would pass it
    assert len(tried) == 5


@pytest.mark.parametrize('method', ['POST', 'PUT', 'DELETE'])
def test_a_write_is_never_repeated_whatever_the_policy(prod, fresh_lab, method):
    config, lab_cluster = prod
    fresh_lab.call(lambda: lab_cluster.pve.flaky_network(drop_rate=1.0))
    clock = Clock()
    client = PveClient(config, policy=policy(clock, max_attempts=50, budget=1000))
    tried = attempts(client)
    with pytest.raises(ClusterConnectionError) as caught:
        client.request(method, 'nodes/%s/qemu/103/config' % lab_cluster.nodes[0])
    assert 'may or may not have been applied' in str(caught.value)
    assert tried == [lab_cluster.url] and clock.slept == []
    # Its unknown outcome is not a failure to answer: the cluster is not remembered.
    fresh_lab.call(lambda: lab_cluster.pve.flaky_network())
    assert client.get('version')['version'] == lab_cluster.pve.version


def test_busy_answers_are_retried_with_the_policy(prod, fresh_lab):
    config, lab_cluster = prod
    pve = lab_cluster.pve
    fresh_lab.call(lambda: pve.fail('GET', '/version', 503, 'proxy busy', times=2))
    clock = Clock()
    before = len(recorded(pve, 'GET', '/version'))
    assert PveClient(config, policy=policy(clock, rand=0.5)).get('version')['version'] == pve.version
    assert len(recorded(pve, 'GET', '/version')) - before == 3
    assert clock.slept == pytest.approx([0.1, 0.2])


# ---------------------------------------------------------------------------------------- failure memory

def test_a_refused_cluster_is_remembered(prod):
    config = dataclasses.replace(prod[0], api_urls=[DEAD, DEAD2])
    clock = Clock()
    client = PveClient(config, policy=policy(clock), failures=FailureMemory(hold=30, clock=clock))
    tried = attempts(client)
    with pytest.raises(ClusterConnectionError) as first:
        client.get('version')
    assert tried == [DEAD, DEAD2] and clock.slept == []  # refused: not worth repeating
    assert "cluster 'production' is unreachable" in str(first.value)
    clock.now += 12
    with pytest.raises(ClusterConnectionError) as second:
        client.post('nodes/prod-pve1/qemu/103/status/start')  # a write too: it would not have been sent
    assert str(second.value) == (
        "cluster 'production' did not answer 12s ago (%s: connection refused; %s: connection refused); not retried "
        "for another 18s. Check that the API URL is right and the cluster is up (PROXMOX_CLUSTER_production_API_URL)."
        % (DEAD, DEAD2))
    assert second.value.cluster == 'production'
    assert len(tried) == 2  # nothing was sent
    clock.now += 18
    with pytest.raises(ClusterConnectionError) as third:
        client.get('version')
    assert len(tried) == 4 and 'is unreachable' in str(third.value)


def test_a_hanging_get_costs_one_timeout_and_is_remembered(prod, fresh_lab):
    """A GET that gets no answer within the timeout is not repeated (it was 3 x timeout) and the cluster
    is remembered, so the next requests fail at once; after the memory expires it is asked again."""
    config, lab_cluster = prod
    config = dataclasses.replace(config, timeout=0.3)
    fresh_lab.call(lambda: lab_cluster.pve.flaky_network(hang_rate=1.0, hang_secs=2))
    clock = Clock()
    client = PveClient(config, policy=policy(clock, max_attempts=10), failures=FailureMemory(hold=30, clock=clock))
    tried = attempts(client)
    started = time.monotonic()
    with pytest.raises(ClusterConnectionError) as caught:
        client.get('cluster/resources')
    assert time.monotonic() - started < 2
    assert len(tried) == 1 and clock.slept == []
    assert 'no answer within 0.3s, PROXMOX_CLUSTER_production_TIMEOUT' in str(caught.value)
    for path in ('version', 'nodes', 'cluster/status'):
        with pytest.raises(ClusterConnectionError) as again:
            client.get(path)
        assert again.value.message.startswith("cluster 'production' did not answer 0s ago (%s: no answer within "
                                              "0.3s, PROXMOX_CLUSTER_production_TIMEOUT); not retried for another "
                                              "30s" % lab_cluster.url)
    assert len(tried) == 1
    fresh_lab.call(lambda: lab_cluster.pve.flaky_network())
    clock.now += 30
    assert client.get('version')['version'] == lab_cluster.pve.version
    assert len(tried) == 2


def test_an_answer_forgets_the_failure(prod):
    config, lab_cluster = prod
    clock = Clock()
    memory = FailureMemory(hold=30, clock=clock)
    client = PveClient(config, failures=memory)
    memory.remember('production', 'injected')
    with pytest.raises(ClusterConnectionError):
        client.get('version')
    clock.now += 31
    assert client.get('version')['version'] == lab_cluster.pve.version
    memory.remember('production', 'injected')
    clock.now += 1
    with pytest.raises(ClusterConnectionError):
        client.get('version')
    memory.forget('production')
    assert client.get('version')


def test_failure_memory_is_per_cluster_and_hold_zero_turns_it_off():
    clock = Clock()
    memory = FailureMemory(hold=5, clock=clock)
    memory.remember('production', 'refused', 'Check it.')
    memory.check('staging')
    with pytest.raises(ClusterConnectionError) as caught:
        memory.check('production')
    assert str(caught.value) == "cluster 'production' did not answer 0s ago (refused); not retried for another 5s. " \
        "Check it."
    clock.now += 4.96
    with pytest.raises(ClusterConnectionError) as caught:
        memory.check('production')
    assert 'did not answer 5s ago (refused); not retried for another 0s' in str(caught.value)
    clock.now += 0.04
    memory.check('production')
    off = FailureMemory(hold=0, clock=clock)
    off.remember('production', 'refused')
    off.check('production')


# ------------------------------------------------------------------------------ secrets and non-TLS ports

@pytest.mark.parametrize('secret', ['%s\njunk-after-the-line', '%s\tjunk', '\x00%s', '%s\r', '%s\u00e9', '%s\x7f'],
                         ids=['newline', 'tab', 'nul', 'carriage-return', 'non-ascii', 'delete'])
def test_a_secret_that_cannot_be_a_header_is_refused_before_any_request(prod, secret):
    config, lab_cluster = prod
    bad = secret % lab_cluster.token_secret
    client = PveClient(dataclasses.replace(config, token_secret=bad))
    tried = attempts(client)
    for method in ('GET', 'POST'):
        with pytest.raises(ConfigError) as caught:
            client.request(method, 'version')
        message = str(caught.value)
        assert message == ("the token secret of cluster 'production' contains characters that cannot be sent in an "
                           "HTTP header (a line break, a tab or another control character, or a non-ASCII character); "
                           "check PROXMOX_CLUSTER_production_TOKEN_SECRET")
        assert caught.value.cluster == 'production'
    assert tried == []


def test_a_port_that_does_not_speak_tls(prod, plain_http):
    config = dataclasses.replace(prod[0], api_urls=[plain_http])
    clock = Clock()
    client = PveClient(config, policy=policy(clock), failures=FailureMemory(clock=clock))
    tried = attempts(client)
    with pytest.raises(ClusterConnectionError) as caught:
        client.get('version')
    message = str(caught.value)
    assert message == ("cluster 'production': %s answered, but not with TLS (wrong version number). Check that "
                       "PROXMOX_CLUSTER_production_API_URL is the Proxmox VE API: https:// and its port, 8006 "
                       "(another service, or a plain HTTP server, answers on this one)." % plain_http)
    assert 'VERIFY' not in message and 'CA_BUNDLE' not in message
    assert len(tried) == 1 and clock.slept == []
    with pytest.raises(ClusterConnectionError) as again:
        client.get('version')
    assert 'did not answer 0s ago (%s answered, but not with TLS' % plain_http in str(again.value)
    assert len(tried) == 1


def test_a_tls_failure_is_remembered(prod):
    config = dataclasses.replace(prod[0], ca_bundle=None, verify_ssl=True)
    client = PveClient(config, failures=FailureMemory())
    tried = attempts(client)
    with pytest.raises(ClusterConnectionError):
        client.get('version')
    with pytest.raises(ClusterConnectionError) as again:
        client.get('nodes')
    message = str(again.value)
    assert 'TLS certificate verification failed for %s' % config.api_url in message
    assert 'PROXMOX_CLUSTER_production_CA_BUNDLE' in message and 'did not answer 0s ago' in message
    assert len(tried) == 1
