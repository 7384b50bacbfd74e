"""The inventory plugin's pure helpers (host naming, tags) and the guest facts it reads (addresses, agent)."""

import re

import pytest
import yaml

from ansible_collections.pmx.multicluster.plugins.inventory import pmx
from ansible_collections.pmx.multicluster.plugins.module_utils.guests import addresses as facts


def rec(name, cluster, vmid, **extra):
    return dict({'name': name, 'cluster': cluster, 'vmid': vmid, 'node': 'n1', 'type': 'qemu'}, **extra)


@pytest.mark.parametrize('records, template, names', [
    # Unique names stay as they are.
    ([rec('web01', 'a', 100), rec('web02', 'b', 100)], '{name}', ['web01', 'web02']),
    # The same name in two clusters: both get their cluster.
    ([rec('web01', 'a', 100), rec('web01', 'b', 100)], '{name}', ['web01.a', 'web01.b']),
    # ... and only those: another guest keeps its plain name.
    ([rec('web01', 'a', 100), rec('db01', 'a', 101), rec('web01', 'b', 7)], '{name}', ['web01.a', 'db01', 'web01.b']),
    # Twice in one cluster (PVE allows it): the vmid as well, for those two only.
    ([rec('x', 'a', 1), rec('x', 'b', 2), rec('x', 'b', 3)], '{name}', ['x.a', 'x.b.2', 'x.b.3']),
    # A template that is unique by itself.
    ([rec('web01', 'a', 100), rec('web01', 'b', 100)], '{cluster}-{vmid}', ['a-100', 'b-100']),
    ([rec('web01', 'a', 100)], '{name}.{cluster}.example', ['web01.a.example']),
    # A guest without a name.
    ([rec('', 'a', 100, type='lxc')], '{name}', ['lxc-100']),
    # A guest whose real name is another's generated <name>.<cluster>: it keeps it, the other goes on.
    ([rec('web01', 'a', 100), rec('web01', 'b', 100), rec('web01.a', 'c', 5)], '{name}',
     ['web01.a.100', 'web01.b', 'web01.a']),
    # ... and one whose real name is the generated <name>.<cluster>.<vmid> as well: -2 is appended.
    ([rec('web01', 'a', 100), rec('web01', 'b', 100), rec('web01.a', 'c', 5), rec('web01.a.100', 'c', 6)], '{name}',
     ['web01.a.100-2', 'web01.b', 'web01.a', 'web01.a.100']),
    # Real names shared by two guests are not given to a third one either.
    ([rec('x', 'a', 1), rec('x', 'b', 2), rec('x.a', 'c', 3), rec('x.a', 'd', 4)], '{name}',
     ['x.a.1', 'x.b', 'x.a.c', 'x.a.d']),
], ids=['unique', 'two-clusters', 'only-the-clashing', 'same-cluster', 'unique-template', 'suffix', 'no-name',
        'real-name-equals-generated', 'real-name-equals-generated-with-vmid', 'shared-real-name'])
def test_hostnames(records, template, names):
    got, duplicates = pmx.hostnames(records, template)
    assert got == names
    assert len(set(got)) == len(got)
    renamed = [n for n, r in zip(got, records) if n != pmx.render_hostname(template, r)]
    assert sum(len(v) for v in duplicates.values()) == len(renamed)


def test_hostnames_do_not_depend_on_which_cluster_answered_first():
    a, b = rec('web01', 'a', 1), rec('web01', 'b', 1)
    assert sorted(pmx.hostnames([a, b], '{name}')[0]) == sorted(pmx.hostnames([b, a], '{name}')[0])


@pytest.mark.parametrize('value, tags', [
    (None, []), ('', []), ('web', ['web']), ('web;prod', ['web', 'prod']), ('web,prod', ['web', 'prod']),
    ('web prod', ['web', 'prod']), (';web;;prod;', ['web', 'prod']),
])
def test_split_tags(value, tags):
    assert pmx.split_tags(value) == tags


def test_addresses_ipv4_first_without_loopback_or_link_local():
    interfaces = [
        {'name': 'lo', 'ip-addresses': [{'ip-address': '127.0.0.1'}, {'ip-address': '::1'}]},
        {'name': 'eth0', 'ip-addresses': [{'ip-address': 'fe80::1%eth0'}, {'ip-address': '2001:db8::5'},
                                          {'ip-address': '10.0.0.5'}, {'ip-address': 'not-an-ip'}]},
        {'name': 'eth1', 'ip-addresses': [{'ip-address': '10.0.0.5'}, {'ip-address': '192.0.2.7'}]},
        {'name': 'eth2'},
    ]
    assert facts.addresses(interfaces) == ['10.0.0.5', '192.0.2.7', '2001:db8::5']
    assert facts.addresses(None) == []


@pytest.mark.parametrize('config, enabled', [
    ({}, False), ({'agent': '1'}, True), ({'agent': 1}, True), ({'agent': '0'}, False),
    ({'agent': 'enabled=1,fstrim_cloned_disks=1'}, True), ({'agent': '1,type=virtio'}, True),
    ({'agent': 'enabled=0'}, False),
])
def test_agent_enabled(config, enabled):
    assert facts.agent_enabled(config) is enabled


def test_normalise_keeps_only_json_safe_fields():
    class Cluster:
        name, region, tier = 'prod', 'eu', None
    item = {'id': 'qemu/100', 'vmid': '100', 'type': 'qemu', 'node': 'n1', 'name': 'web', 'status': 'running',
            'template': 0, 'tags': 'a;b', 'maxmem': 1024, 'cpu': 0.5, 'netin': 5, 'diskread': 1}
    record = pmx.normalise(Cluster, item)
    assert record['vmid'] == 100 and record['tags'] == ['a', 'b'] and record['template'] is False
    assert record['region'] == 'eu' and record['tier'] is None and record['pool'] is None
    assert 'netin' not in record and record['disk'] is None
    assert yaml.safe_load(yaml.safe_dump(record)) == record


def test_documentation_is_valid_yaml_with_every_option_described():
    doc = yaml.safe_load(pmx.DOCUMENTATION)
    assert doc['name'] == 'pmx'
    assert re.match(r'^[^()]+ \(@[\w-]+\)$', doc['author'])
    for name, option in doc['options'].items():
        assert option.get('description'), name
        assert option.get('type'), name
    # Examples: several documents, each a valid source for this plugin (the vault tag aside).
    loader = type('Loader', (yaml.SafeLoader,), {})
    loader.add_constructor('!vault', lambda load, node: load.construct_scalar(node))
    examples = list(yaml.load_all(pmx.EXAMPLES, Loader=loader))
    assert len(examples) >= 3 and all(e['plugin'] == 'pmx.multicluster.pmx' for e in examples)
