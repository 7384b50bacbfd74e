"""The MCP server's one paging function (extensions/mcp/pmx_mcp_answers.paged) as a table of cases."""

import sys

import pytest
import yaml

from conftest import REPO

sys.path.insert(0, str(REPO / 'extensions' / 'mcp'))

import pmx_mcp_answers as answers  # noqa: E402  (beside the server, not a package)

from ansible_collections.pmx.multicluster.plugins.module_utils.errors import ClusterError  # noqa: E402

ORDER = ['production', 'staging']


def guests(*keys):
    return [{'cluster': c, 'vmid': v, 'status': 'running' if v % 2 else 'stopped', 'tags': ['web'] if v < 103 else [],
             'template': v == 9000} for c, v in keys]


def key(row):
    return ORDER.index(row['cluster']), row['vmid']


def page(rows, limit=2, cursor=None, fields=None, summary=False, filters=None, tool='list_guests'):
    return answers.paged(tool, rows, key, ('cluster', 'status', 'tag', 'template'), filters or {}, limit, cursor,
                         fields, summary)


ROWS = guests(('staging', 100), ('production', 101), ('production', 100), ('staging', 9000), ('production', 104))


def walk(rows_at, limit):
    """Every page; ``rows_at(n)`` gives the list as it is when page n is asked for."""
    seen, cursor, n = [], None, 0
    while True:
        rows, meta = page(rows_at(n), limit=limit, cursor=cursor)
        seen.extend((r['cluster'], r['vmid']) for r in rows)
        cursor, n = meta['next_cursor'], n + 1
        assert meta['truncated'] is (cursor is not None) and meta['count'] == len(rows)
        if cursor is None:
            return seen


def test_pages_in_key_order_with_total():
    rows, meta = page(ROWS)
    assert [(r['cluster'], r['vmid']) for r in rows] == [('production', 100), ('production', 101)]
    assert meta['total'] == 5 and meta['count'] == 2 and meta['truncated'] is True and meta['summary'] is None
    assert walk(lambda n: ROWS, 2) == [('production', 100), ('production', 101), ('production', 104),
                                      ('staging', 100), ('staging', 9000)]


@pytest.mark.parametrize('change', ['insert before', 'insert after', 'delete answered', 'delete ahead'])
def test_cursor_holds_a_place_not_an_offset(change):
    """Between pages the list changes: nothing is answered twice, nothing that stayed is lost."""
    before = list(ROWS)
    after = {'insert before': before + guests(('production', 99)),
             'insert after': before + guests(('staging', 101)),
             'delete answered': [r for r in before if (r['cluster'], r['vmid']) != ('production', 100)],
             'delete ahead': [r for r in before if (r['cluster'], r['vmid']) != ('staging', 100)]}[change]
    seen = walk(lambda n: before if n == 0 else after, 2)
    assert len(seen) == len(set(seen))
    stayed = set((r['cluster'], r['vmid']) for r in before) & set((r['cluster'], r['vmid']) for r in after)
    assert stayed <= set(seen)
    assert ('production', 99) not in seen and (change != 'insert after' or ('staging', 101) in seen)


def test_fields_and_summary():
    rows, meta = page(ROWS, limit=10, fields=['vmid', 'cluster'])
    assert rows[0] == {'vmid': 100, 'cluster': 'production'} and list(rows[0]) == ['vmid', 'cluster']
    rows, meta = page(ROWS, summary=True)
    assert rows == [] and meta['total'] == 5 and meta['next_cursor'] is None and meta['truncated'] is False
    assert meta['summary'] == {'cluster': {'production': 3, 'staging': 2}, 'status': {'stopped': 4, 'running': 1},
                               'tag': {'web': 3}, 'template': {'false': 4, 'true': 1}}


@pytest.mark.parametrize('cursor, other, message', [
    ('garbage!', {}, 'is not a next_cursor of this server'),
    (None, {'filters': {'status': 'running'}}, 'belongs to another call'),
    (None, {'tool': 'list_nodes'}, 'belongs to another call'),
])
def test_foreign_cursors_are_refused(cursor, other, message):
    if cursor is None:
        cursor = page(ROWS)[1]['next_cursor']
    with pytest.raises(ClusterError, match=message):
        page(ROWS, cursor=cursor, **other)


def test_collection_version_from_a_source_tree():
    """In a source tree (no MANIFEST.json) the version is galaxy.yml's."""
    version = yaml.safe_load((REPO / 'galaxy.yml').read_text())['version']
    assert answers.collection_version(str(REPO / 'extensions' / 'mcp' / 'pmx_mcp_answers.py')) == version
