"""The backup core's decisions as tables: archive names, keep policies, the prune selection, guest selection."""

import re

import pytest

from ansible_collections.pmx.multicluster.plugins.module_utils import backups
from ansible_collections.pmx.multicluster.plugins.module_utils.errors import GuestNotFoundError

DAY = 86400
NOW = 1_800_000_000  # Friday 2027-01-15 08:00 UTC


@pytest.mark.parametrize('volid,fmt,expected', [
    ('nfs:backup/vzdump-qemu-100-2026_12_02-03_00_00.vma.zst', None, 'qemu'),
    ('local:backup/vzdump-lxc-104-2026_12_02-03_00_00.tar.gz', None, 'lxc'),
    ('local:backup/vzdump-openvz-104-2012_01_02-03_00_00.tar', None, 'lxc'),
    ('pbs:backup/vm/100/2026-12-02T03:00:00Z', None, 'qemu'),
    ('pbs:backup/ct/101/2026-12-02T03:00:00Z', None, 'lxc'),
    ('nfs:backup/renamed.vma.zst', 'vma.zst', 'qemu'),
    ('nfs:backup/renamed', None, None),
])
def test_archive_type(volid, fmt, expected):
    assert backups.archive_type(volid, fmt) == expected


@pytest.mark.parametrize('keep,expected', [
    ({'last': 3}, 'keep-last=3'),
    ({'daily': 7, 'last': 2, 'weekly': None}, 'keep-daily=7,keep-last=2'),
    ({'monthly': '12'}, 'keep-monthly=12'),
])
def test_keep_policy(keep, expected):
    assert backups.keep_policy(keep) == expected


@pytest.mark.parametrize('keep,message', [
    ({}, 'give at least one of'),
    (None, 'give at least one of'),
    ({'latest': 1}, "unknown key 'latest'"),
    ({'last': 0}, 'keep.last must be at least 1'),
    ({'last': 'many'}, "keep.last must be a number of backups, not 'many'"),
])
def test_keep_policy_refuses(keep, message):
    with pytest.raises(backups.BackupError, match=message):
        backups.keep_counts(keep)


def rows(n, step=DAY // 2, protected=()):
    return [{'volid': 'v%d' % i, 'ctime': NOW - i * step, 'protected': i in protected} for i in range(n)]


@pytest.mark.parametrize('backups_,keep,kept', [
    # the newest N
    (rows(5), {'keep-last': 2}, ['v0', 'v1']),
    # a protected one is kept and does not count
    (rows(5, protected=(1,)), {'keep-last': 2}, ['v0', 'v1', 'v2']),
    # two a day: keep-daily keeps the newest of each day (v0 08:00 on the 15th, v1 20:00 and v2 08:00 on the 14th...)
    (rows(6), {'keep-daily': 2}, ['v0', 'v1']),
    # keep-last covers its day; keep-daily then takes the next two days with a backup
    (rows(8), {'keep-last': 1, 'keep-daily': 2}, ['v0', 'v1', 'v3']),
    # weekly over a month of daily backups: the newest of each of 3 ISO weeks (Friday, then the Sundays before)
    (rows(30, step=DAY), {'keep-weekly': 3}, ['v0', 'v5', 'v12']),
    (rows(3), {'keep-yearly': 5}, ['v0']),
])
def test_prune_marks(backups_, keep, kept):
    marks = backups.prune_marks(backups_, keep)
    assert sorted((v for v, m in marks.items() if m != 'remove'), key=lambda v: int(v[1:])) == kept
    assert set(marks) == set(r['volid'] for r in backups_)
    assert all(marks[r['volid']] == 'protected' for r in backups_ if r['protected'])


RESOURCES = [
    {'type': 'qemu', 'vmid': 101, 'name': 'stg-web02', 'tags': 'web;staging'},
    {'type': 'qemu', 'vmid': 100, 'name': 'stg-web01', 'tags': 'web;staging'},
    {'type': 'lxc', 'vmid': 104, 'name': 'stg-cache01', 'tags': 'cache;staging'},
    {'type': 'qemu', 'vmid': 9000, 'name': 'stg-web-tpl', 'tags': 'web', 'template': 1},
    {'type': 'node', 'node': 'stg-pve1'},
]


@pytest.mark.parametrize('pattern,tags,vmids', [
    ('stg-web*', None, [100, 101]),
    ('STG-*', ['staging'], [100, 101, 104]),
    (None, ['web', 'staging'], [100, 101]),
    (None, ['CACHE'], [104]),
])
def test_select_guests(pattern, tags, vmids):
    assert [g['vmid'] for g in backups.select_guests(RESOURCES, 'staging', pattern, tags)] == vmids


def test_select_guests_none():
    with pytest.raises(GuestNotFoundError, match=re.escape("cluster 'staging': no guest matches name pattern 'db*' "
                                                           "and tags prod")):
        backups.select_guests(RESOURCES, 'staging', 'db*', ['prod'])


@pytest.mark.parametrize('value,expected', [
    ('virtio=BC:24:11:00:00:01,bridge=vmbr0,tag=20', 'virtio=BC:24:11:00:00:01,tag=20,bridge=vmbr9'),
    ('name=eth0,hwaddr=BC:24:11:00:00:02,ip=dhcp', 'name=eth0,hwaddr=BC:24:11:00:00:02,ip=dhcp,bridge=vmbr9'),
])
def test_bridge_override(value, expected):
    assert backups.bridge_override(value, 'vmbr9') == expected
