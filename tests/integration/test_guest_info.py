"""pmx_guest_info through real plays: guests selected by glob, tags, type, status and vmid across the clusters,
each with its cluster and why; details on request (config with disks and nets, pending, snapshots, addresses);
one request per cluster without them; an unreadable cluster listed, or the task failed when asked to; write-only
values masked."""

import pytest

from conftest import _NET, DEAD, MAY_FAIL, env_file, failed_message, play, pmxlab, recorded, register_secret

INFO = 'pmx.multicluster.pmx_guest_info'
CIPASSWORD = 'Ci-Pass-7f3e91'


@pytest.fixture(scope='module')
def infolab(tmp_path_factory):
    with pmxlab.Lab(str(tmp_path_factory.mktemp('infolab')), clusters=3, first_host='127.%d.9.2' % _NET) as running:
        yield running


def test_guest_facts_across_clusters(infolab, tmp_path):
    prod = infolab.clusters['production'].pve
    register_secret(CIPASSWORD)
    infolab.call(lambda: prod.vm(102).config.update(cipassword=CIPASSWORD))
    broken = env_file(infolab, tmp_path, replace={'PROXMOX_CLUSTER_disaster-recovery_API_URL': DEAD})
    before = dict((name, len(c.pve.requests)) for name, c in infolab.clusters.items())
    result = play(infolab, tmp_path, INFO, [
        ('web', {'name': '*-WEB0*'}),
        ('db', {'cluster': ['production'], 'type': 'qemu', 'status': 'running', 'tags': ['db'],
                'details': ['config', 'pending', 'snapshots', 'addresses']}),
        ('by_vmid', {'vmid': 104, 'details': ['addresses']}),
        ('bad_detail', {'details': ['secrets']}, MAY_FAIL),
    ])
    assert result.rc == 0, result.output
    web = result['web']
    assert web['changed'] is False and web['count'] == 6 and web['unreadable'] == []
    assert [(g['cluster'], g['name']) for g in web['guests']][:2] == [('production', 'prod-web01'),
                                                                     ('production', 'prod-web02')]
    assert web['guests'][0]['why'] == "pattern 'prod-*'" and web['guests'][0]['tags'] == ['web', 'production']
    db = result['db']['guests']
    assert [g['name'] for g in db] == ['prod-db01']
    assert db[0]['config']['cipassword'] == '********' and CIPASSWORD not in result.output
    scsi0 = next(d for d in db[0]['disks'] if d['key'] == 'scsi0')
    assert scsi0['storage'] == 'local-lvm' and scsi0['size'] == '32G' and scsi0['size_bytes'] == 32 * 1024 ** 3
    assert db[0]['nets'][0]['bridge'] == 'vmbr0' and db[0]['nets'][0]['mac'].startswith('BC:24:11')
    assert db[0]['addresses'] == ['10.1.1.12'] and db[0]['snapshots'] == [] and db[0]['pending'] == {}
    assert sorted(g['cluster'] for g in result['by_vmid']['guests']) == ['disaster-recovery', 'production',
                                                                        'staging']
    assert all(g['type'] == 'lxc' and g['why'].startswith('pattern') for g in result['by_vmid']['guests'])
    assert 'value of details must be one or more of' in failed_message(result, 'bad_detail')
    # Staging was asked for its guests once per task that covers it (web, by_vmid), and of its guests only for
    # the addresses of the one by_vmid selected: without details nothing else is read.
    staging = infolab.clusters['staging'].pve.requests[before['staging']:]
    assert len([r for r in staging if r[1].endswith('/cluster/resources')]) == 2
    assert [r[1].rsplit('/', 3)[2:] for r in staging if '/qemu/' in r[1] or '/lxc/' in r[1]] == [
        ['104', 'interfaces']]
    assert len(recorded(prod, 'GET', '/qemu/101/pending')) == 0
    partial = play(infolab, tmp_path, INFO, [
        ('partial', {'name': 'dr-web01'}),
        ('strict', {'name': 'dr-web01', 'fail_on_unreachable': True}, MAY_FAIL),
    ], env=broken)
    assert partial.rc == 0, partial.output
    assert partial['partial']['count'] == 0 and partial['partial']['unreadable'][0]['cluster'] == 'disaster-recovery'
    assert "guests of cluster(s) 'disaster-recovery' are not in this answer" in partial.output
    msg = failed_message(partial, 'strict')
    assert 'disaster-recovery' in msg and partial['strict']['error']['type'] == 'UnreadableClustersError', msg
