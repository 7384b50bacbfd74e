"""The snapshot decisions as tables: retention, the protection of the current state's parent, the plan."""

import pytest

from ansible_collections.pmx.multicluster.plugins.module_utils.errors import SnapshotError, SnapshotNotFoundError
from ansible_collections.pmx.multicluster.plugins.module_utils.snapshots import (
    SnapshotRequest,
    check_request,
    plan_snapshots,
    retention,
    snapshot_tree,
)


def snaps(*names, current=None):
    """Snapshots taken in this order (one second apart), each the parent of the next."""
    out, parent = [], None
    for n, name in enumerate(names):
        out.append({'name': name, 'snaptime': 1000 + n, 'parent': parent, 'current': name == (current or names[-1]),
                    'description': '', 'vmstate': False, 'state': None})
        parent = name
    return out


@pytest.mark.parametrize('existing, keep, prefix, pattern, kept, deleted', [
    (('a-1', 'a-2', 'a-3'), 2, 'a-', None, ['a-3', 'a-2'], ['a-1']),
    (('a-1', 'b-1', 'a-2'), 1, 'a-', None, ['a-2'], ['a-1']),
    (('a-1', 'b-1', 'a-2'), 1, None, '*-1', ['b-1'], ['a-1']),
    (('a-1', 'a-2'), 5, 'a-', None, ['a-2', 'a-1'], []),
    (('a-1', 'a-2'), 0, 'a-', None, [], ['a-2', 'a-1']),
    ((), 3, 'a-', None, [], []),
])
def test_retention(existing, keep, prefix, pattern, kept, deleted):
    assert retention(snaps(*existing) if existing else [], keep, prefix, pattern) == (kept, deleted)


@pytest.mark.parametrize('request_, existing, current, steps, after', [
    (dict(snapname='s-3', keep=2, prefix='s-'), ('s-1', 's-2'), None,
     [('create', 's-3'), ('delete', 's-1')], ['s-2', 's-3']),
    (dict(snapname='s-2', keep=2, prefix='s-'), ('s-1', 's-2'), None, [], ['s-1', 's-2']),
    (dict(state='absent', snapname='s-2'), ('s-1', 's-2'), None, [('delete', 's-2')], ['s-1']),
    (dict(state='absent', snapname='gone'), ('s-1',), None, [], ['s-1']),
    (dict(state='absent', keep=1, prefix='s-'), ('s-1', 's-2', 'other'), 'other', [('delete', 's-1')],
     ['s-2', 'other']),
    (dict(state='rollback', snapname='s-1'), ('s-1', 's-2'), None, [('rollback', 's-1')], ['s-1', 's-2']),
    (dict(state='absent', keep=0, prefix='s-', force=True), ('s-1', 's-2'), None,
     [('delete', 's-2'), ('delete', 's-1')], []),
])
def test_plan(request_, existing, current, steps, after):
    plan = plan_snapshots(SnapshotRequest(**request_), snaps(*existing, current=current), 'VM x')
    assert [(s['action'], s['snapname']) for s in plan['steps']] == steps
    assert plan['after']['snapshots'] == after


def test_retention_refuses_the_current_parent_unless_forced():
    existing = snaps('s-1', 's-2', 's-3', current='s-1')  # rolled back to s-1
    with pytest.raises(SnapshotError, match="VM x: snapshot 's-1' is the parent of the current state"):
        plan_snapshots(SnapshotRequest(state='absent', keep=1, prefix='s-'), existing, 'VM x')
    plan = plan_snapshots(SnapshotRequest(state='absent', keep=1, prefix='s-', force=True), existing, 'VM x')
    assert [s['snapname'] for s in plan['steps']] == ['s-2', 's-1']


@pytest.mark.parametrize('request_, error', [
    (dict(), SnapshotError),                                   # present without snapname
    (dict(state='rollback'), SnapshotError),
    (dict(state='absent'), SnapshotError),                     # neither a name nor retention
    (dict(snapname='ok-1', keep=2), SnapshotError),            # retention without prefix or pattern
    (dict(snapname='ok-1', prefix='x'), SnapshotError),        # a prefix without keep
    (dict(state='rollback', snapname='ok-1', keep=1, prefix='o'), SnapshotError),
    (dict(snapname='1bad'), SnapshotError),
    (dict(snapname='current'), SnapshotError),
])
def test_bad_requests(request_, error):
    with pytest.raises(error):
        check_request(SnapshotRequest(**request_))


def test_rollback_to_a_missing_snapshot():
    with pytest.raises(SnapshotNotFoundError, match="has no snapshot 'nope'; its snapshots: s-1"):
        plan_snapshots(SnapshotRequest(state='rollback', snapname='nope'), snaps('s-1'), 'VM x')


def test_tree():
    existing = snaps('a', 'b')
    existing.append({'name': 'c', 'snaptime': 2000, 'parent': 'a', 'current': False})
    tree = snapshot_tree(existing)
    assert [n['name'] for n in tree] == ['a']
    assert [n['name'] for n in tree[0]['children']] == ['b', 'c']
