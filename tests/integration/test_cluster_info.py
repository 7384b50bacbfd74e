"""pmx_cluster_info through the real ansible-playbook, against the fakepve lab."""

import json

from conftest import REPO, lab_secrets, run_play, run_playbook

INFO = 'pmx.multicluster.pmx_cluster_info'


def test_demo_playbook_shows_health_and_routing(lab):
    result = run_playbook(REPO / 'playbooks' / 'demo.yml', env_file=lab.env_file)
    assert result.rc == 0, result.output
    for name in ('production', 'staging', 'disaster-recovery'):
        assert '%s reachable PVE 9.0.10, quorate, nodes 3/3 online' % name.ljust(18) in result.stdout
    assert "prod-web01                   -> production (pattern 'prod-*')" in result.stdout
    assert "disaster-recovery-replica01  -> disaster-recovery (naming convention 'disaster-recovery-')" \
        in result.stdout
    assert 'build-runner01               -> production (default)' in result.stdout
    result.assert_no_secret(lab_secrets(lab))


def test_facts_for_every_cluster(lab, tmp_path):
    result = run_play(tmp_path, [{INFO: {'storages': True}, 'register': 'info'}], env_file=lab.env_file)
    assert result.rc == 0, result.output
    info = result['info']
    assert info['changed'] is False
    assert info['default_cluster'] == 'production'
    assert info['unreachable_clusters'] == []
    assert [c['name'] for c in info['clusters']] == ['production', 'staging', 'disaster-recovery']
    by_name = dict((c['name'], c) for c in info['clusters'])
    prod = by_name['production']
    assert prod['reachable'] is True and prod['error'] is None
    assert prod['version'] == '9.0.10'
    assert prod['quorate'] is True
    assert prod['region'] == 'eu-west' and prod['tier'] == 'production'
    assert prod['api_url'] == lab.clusters['production'].url
    assert prod['patterns'] == ['prod-*']
    assert [n['name'] for n in prod['nodes']] == ['prod-pve1', 'prod-pve2', 'prod-pve3']
    assert all(n['status'] == 'online' and n['memory_total'] > 0 for n in prod['nodes'])
    assert prod['guests'] == {'qemu': {'running': 3, 'stopped': 1, 'total': 4, 'templates': 1},
                              'lxc': {'running': 1, 'stopped': 1, 'total': 2, 'templates': 0}}
    assert {s['storage'] for s in prod['storages']} >= {'local', 'local-lvm'}
    assert by_name['disaster-recovery']['tier'] == 'dr'
    assert 'token_secret' not in json.dumps(info)
    result.assert_no_secret(lab_secrets(lab))


def test_select_clusters_by_name_and_glob(lab, tmp_path):
    result = run_play(tmp_path, [
        {INFO: {'name': ['stag*', 'DISASTER_RECOVERY']}, 'register': 'some'},
        {INFO: {'name': ['production']}, 'register': 'one'},
    ], env_file=lab.env_file, args=['--check'])
    assert result.rc == 0, result.output
    assert [c['name'] for c in result['some']['clusters']] == ['staging', 'disaster-recovery']
    assert [c['name'] for c in result['one']['clusters']] == ['production']
    assert 'storages' not in result['one']['clusters'][0]


def test_route_answers_with_reasons(fresh_lab, tmp_path):
    # A guest that matches no pattern but exists in staging only: routed by lookup.
    fresh_lab.clusters['staging'].pve.add_vm(300, 'legacy-app01', node='stg-pve1')
    result = run_play(tmp_path, [
        {INFO: {'route': ['prod-web09', 'stg-db01', 'dr-x', 'legacy-app01', 'newbox'],
                'name': ['production']},
         'register': 'routes'},
        {INFO: {'route': ['legacy-app01'], 'route_lookup': False}, 'register': 'nolookup'},
    ], env_file=fresh_lab.env_file)
    assert result.rc == 0, result.output
    table = dict((r['name'], (r['cluster'], r['reason'])) for r in result['routes']['routes'])
    assert table == {
        'prod-web09': ('production', "pattern 'prod-*'"),
        'stg-db01': ('staging', "pattern 'stg-*'"),
        'dr-x': ('disaster-recovery', "pattern 'dr-*'"),
        'legacy-app01': ('staging', 'located'),
        'newbox': ('production', 'default'),
    }
    assert result['nolookup']['routes'][0]['cluster'] == 'production'
    assert result['nolookup']['routes'][0]['reason'] == 'default'


def test_unreachable_cluster_is_reported_not_fatal(fresh_lab, tmp_path):
    """One cluster down: the others answer; fail_on_unreachable turns it into a failure."""
    down = [{'name': 'offline', 'api_url': 'https://127.0.9.9:8006', 'token_id': 'root@pam!pmx',
             'token_secret': 'offline-secret-value', 'ca_bundle': fresh_lab.ca_bundle}]
    result = run_play(tmp_path, [
        {INFO: {'clusters': down}, 'register': 'soft'},
        {INFO: {'clusters': down, 'fail_on_unreachable': True}, 'register': 'strict', 'ignore_errors': True},
    ], env_file=fresh_lab.env_file, args=['-vvv'])
    assert result.rc == 0, result.output
    soft = result['soft']
    assert soft['unreachable_clusters'] == ['offline']
    offline = [c for c in soft['clusters'] if c['name'] == 'offline'][0]
    assert offline['reachable'] is False
    assert "cluster 'offline' is unreachable" in offline['error'] and 'connection refused' in offline['error']
    assert sum(1 for c in soft['clusters'] if c['reachable']) == 3
    strict = result['strict']
    assert strict['failed'] is True
    assert strict['msg'].startswith('1 of 4 clusters could not be queried')
    assert len(strict['clusters']) == 4
    result.assert_no_secret(lab_secrets(fresh_lab) + ['offline-secret-value'])
