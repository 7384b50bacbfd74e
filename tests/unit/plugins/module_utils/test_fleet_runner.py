"""The fleet runner and bounds (fleet.py) and the selection's filter (selection.py), as tables on plain objects."""

import threading
import time

import pytest

from ansible_collections.pmx.multicluster.plugins.module_utils.errors import ClusterError
from ansible_collections.pmx.multicluster.plugins.module_utils.fleet import (
    Bounds,
    Entry,
    Runner,
    listed_twice,
    summarize,
)
from ansible_collections.pmx.multicluster.plugins.module_utils.guests.spec import GuestSpec
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.kinds import QEMU
from ansible_collections.pmx.multicluster.plugins.module_utils.selection import Options, Selector, check_options


def job_failing(failing, log):
    def job(item):
        log.append(item)
        return {'name': item, 'failed': item in failing}
    return job


def skipped(item):
    return {'name': item, 'skipped': True}


@pytest.mark.parametrize('serial, max_failures, failing, begun, skipped_items', [
    (1, 0, {'a'}, ['a'], ['b', 'c', 'd']),            # rolling, stop after the first failed batch
    (1, 1, {'a', 'b'}, ['a', 'b'], ['c', 'd']),       # one failure tolerated, the second stops it
    (2, 0, {'b'}, ['a', 'b'], ['c', 'd']),            # the batch in flight finishes, the next is not begun
    (1, None, {'a', 'b'}, ['a', 'b', 'c', 'd'], []),  # no limit: every guest is tried
    (None, 5, {'a'}, ['a', 'b', 'c', 'd'], []),       # under the limit
])
def test_runner_stops_at_the_failure_limit(serial, max_failures, failing, begun, skipped_items):
    log = []
    results = Runner(4, max_failures=max_failures).run('abcd', job_failing(failing, log), skipped, serial=serial)
    assert sorted(log) == begun
    assert [r['name'] for r in results] == list('abcd')  # in order, whatever finished first
    assert [r['name'] for r in results if r.get('skipped')] == skipped_items


def test_bounds_hold_per_cluster_and_per_node():
    """20 jobs over 2 clusters x 3 nodes: never more than per_cluster / per_node inside at once."""
    bounds = Bounds(per_cluster=3, per_node=2)
    inside, most, lock = {}, {}, threading.Lock()

    def job(item):
        cluster, node = item
        with bounds.slot(cluster, [node]):
            with lock:
                for key in (cluster, (cluster, node)):
                    inside[key] = inside.get(key, 0) + 1
                    most[key] = max(most.get(key, 0), inside[key])
            time.sleep(0.05)
            with lock:
                for key in (cluster, (cluster, node)):
                    inside[key] -= 1
        return {'failed': False}

    items = [('c%d' % (n % 2), 'n%d' % (n % 3)) for n in range(20)]
    Runner(16).run(items, job, skipped)
    assert 2 <= most['c0'] <= 3 and 2 <= most['c1'] <= 3  # concurrent, never past the bound
    assert max(v for k, v in most.items() if isinstance(k, tuple)) == 2


def test_bounds_refuse_zero():
    with pytest.raises(ClusterError, match='per_node must be at least 1'):
        Bounds(per_cluster=2, per_node=0)


def test_summary_counts_per_cluster():
    results = [{'cluster': 'a', 'changed': True}, {'cluster': 'a', 'failed': True},
               {'cluster': 'b', 'skipped': True}, {'cluster': None, 'failed': True}]
    summary = summarize(results, Bounds(2, 1))
    counts = tuple(summary[k] for k in ('total', 'changed', 'ok', 'failed', 'skipped'))
    assert counts == (4, 1, 1, 2, 1)
    assert summary['clusters']['a'] == {'total': 2, 'changed': 1, 'failed': 1, 'skipped': 0}
    assert summary['clusters']['(not routed)']['failed'] == 1 and summary['per_node'] == 1


@pytest.mark.parametrize('selector, guest, picked', [
    (Selector(names=['STG-web*']), {'name': 'stg-web01', 'type': 'qemu'}, True),
    (Selector(names=['stg-web*']), {'name': 'stg-db01', 'type': 'qemu'}, False),
    (Selector(tags=['Web', 'prod']), {'name': 'x', 'type': 'qemu', 'tags': 'prod;web'}, True),
    (Selector(tags=['web', 'db']), {'name': 'x', 'type': 'qemu', 'tags': 'web'}, False),
    (Selector(status='running'), {'name': 'x', 'type': 'lxc', 'status': 'stopped'}, False),
    (Selector(types=['lxc']), {'name': 'x', 'type': 'qemu'}, False),
    (Selector(types=['vm']), {'name': 'x', 'type': 'qemu'}, True),
    (Selector(names=['*']), {'name': 'tpl', 'type': 'qemu', 'template': 1}, False),  # never a template
    (Selector(names=['*']), {'name': 'pve1', 'type': 'node'}, False),
])
def test_selector(selector, guest, picked):
    assert selector.matches(guest) is picked


@pytest.mark.parametrize('action, options, message', [
    ('migrate-all', Options(), "unknown action 'migrate-all'"),
    ('migrate', Options(), "action 'migrate' needs target_node or target_cluster"),
    ('backup', Options(), "action 'backup' needs storage"),
    ('snapshot', Options(), "action 'snapshot' needs snapname"),
    ('snapshot', Options(snapname='1bad'), 'snapshot name'),
])
def test_action_options_checked_before_any_request(action, options, message):
    with pytest.raises(ClusterError, match=message):
        check_options(action, options)


@pytest.mark.parametrize('listed, twice', [
    ([('web', None), ('db', None)], []),
    ([('web', None), ('WEB', None)], [1]),                         # names compare without case
    ([('web', 'production'), ('web', 'staging')], []),             # the same name on two explicit clusters
    ([('web', 'production'), ('web', None)], [1]),                 # one of them routed: it may be the other's
    ([('web', 'production'), ('web', 'production')], [1]),
    ([('web', 'production'), ('web', 'staging'), ('web', 'staging')], [2]),
])
def test_a_name_listed_twice_needs_a_different_explicit_cluster_in_each(listed, twice):
    entries = [Entry(i, QEMU, 'present', GuestSpec(name=name, cluster=cluster)) for i, (name, cluster) in
               enumerate(listed)]
    problems = listed_twice(entries)
    assert [int(p.split('[')[1].split(']')[0]) for p in problems] == twice
    assert all('explicit cluster in each entry' in p for p in problems)
