"""The pmx.multicluster.pmx inventory through the real ansible-inventory and ansible-playbook, against the lab.

Every case writes a ``*.pmx.yml`` file, runs the installed collection in a subprocess and counts what each
fake cluster received (``pve.requests``).
"""

import json
import re
import subprocess

import pytest
import yaml

from conftest import BIN, ansible_env, lab_secrets

PLUGIN = 'pmx.multicluster.pmx'
CLUSTERS = ('production', 'staging', 'disaster-recovery')
# The sample guests every cluster has, by suffix; the template (tpl-debian12) is left out by default.
SAMPLES = ('web01', 'web02', 'db01', 'batch01', 'cache01', 'proxy01')
PREFIX = {'production': 'prod', 'staging': 'stg', 'disaster-recovery': 'dr'}


def all_samples(clusters=CLUSTERS, suffixes=SAMPLES):
    return set('%s-%s' % (PREFIX[c], s) for c in clusters for s in suffixes)


def unwrap_unsafe(value):
    return value['__ansible_unsafe'] if set(value) == {'__ansible_unsafe'} else value


class Inventory:
    """What ansible-inventory printed, and the HTTP requests each cluster received meanwhile."""

    def __init__(self, proc, requests):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.requests = requests
        self.data = None
        # With -vvv, ansible-inventory prints its version and settings before the JSON.
        start = 0 if proc.stdout.startswith('{') else proc.stdout.find('\n{') + 1
        if proc.returncode == 0 and proc.stdout[start:start + 1] == '{':
            # ansible-core 2.19 prints untrusted strings (all API data) as {"__ansible_unsafe": "..."}.
            self.data = json.loads(proc.stdout[start:], object_hook=unwrap_unsafe)

    @property
    def output(self):
        return self.stdout + self.stderr

    @property
    def hostvars(self):
        return self.data['_meta']['hostvars']

    @property
    def hosts(self):
        return set(self.hostvars)

    def group(self, name):
        """Every host of a group, with those of its child groups."""
        entry = self.data.get(name, {})
        hosts = set(entry.get('hosts', []))
        for child in entry.get('children', []):
            hosts |= self.group(child)
        return hosts

    def children(self, name):
        return set(self.data.get(name, {}).get('children', []))


def write_source(tmp_path, options, name='lab.pmx.yml'):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(dict({'plugin': PLUGIN}, **options), sort_keys=False))
    return path


def run_inventory(lab, tmp_path, options=None, args=('--list',), env_file=True, env=None, name='lab.pmx.yml',
                  source=None):
    """ansible-inventory on a new source file; env_file=True reads the lab's .env through PROXMOX_ENV_FILE."""
    source = source or write_source(tmp_path, options or {}, name)
    before = dict((n, len(c.pve.requests)) for n, c in lab.clusters.items())
    proc = subprocess.run([str(BIN / 'ansible-inventory'), '-i', str(source)] + list(args),
                          env=ansible_env(lab.env_file if env_file else None, env), capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL, check=False, cwd=str(tmp_path))
    requests = dict((n, c.pve.requests[before[n]:]) for n, c in lab.clusters.items())
    return Inventory(proc, requests)


def assert_ok(inv):
    assert inv.rc == 0, inv.output
    assert 'Traceback' not in inv.output
    assert '[WARNING]' not in inv.stderr, inv.stderr


def paths(requests):
    return [tuple(request[:2]) for request in requests]


# -------------------------------------------------------------- groups, host variables, requests

def test_groups_and_host_variables_across_three_clusters(lab, tmp_path):
    inv = run_inventory(lab, tmp_path)
    assert_ok(inv)
    assert inv.hosts == all_samples()
    # One request per cluster, the same for all, and nothing else.
    for name in CLUSTERS:
        assert paths(inv.requests[name]) == [('GET', '/api2/json/cluster/resources')], name
    # pmx_all > pmx_cluster_<c> > pmx_node_<c>_<node> > hosts; '-' sanitised to '_'.
    assert inv.children('pmx_all') == {'pmx_cluster_production', 'pmx_cluster_staging',
                                       'pmx_cluster_disaster_recovery'}
    assert inv.children('pmx_cluster_staging') == {'pmx_node_staging_stg_pve1', 'pmx_node_staging_stg_pve2',
                                                   'pmx_node_staging_stg_pve3'}
    assert inv.group('pmx_all') == inv.hosts
    assert inv.group('pmx_cluster_disaster_recovery') == all_samples(['disaster-recovery'])
    assert inv.group('pmx_node_staging_stg_pve1') == {'stg-web01', 'stg-batch01', 'stg-proxy01'}
    assert inv.group('pmx_type_lxc') == all_samples(suffixes=['cache01', 'proxy01'])
    assert inv.group('pmx_type_qemu') == all_samples(suffixes=['web01', 'web02', 'db01', 'batch01'])
    assert inv.group('pmx_status_stopped') == all_samples(suffixes=['batch01', 'proxy01'])
    assert inv.group('pmx_status_running') == all_samples(suffixes=['web01', 'web02', 'db01', 'cache01'])
    assert inv.group('pmx_tag_web') == all_samples(suffixes=['web01', 'web02'])
    assert inv.group('pmx_tag_dr') == all_samples(['disaster-recovery'])
    assert inv.group('pmx_region_eu_central') == all_samples(['staging'])
    assert inv.group('pmx_tier_production') == all_samples(['production'])
    assert not [g for g in inv.data if g.startswith('pmx_pool_')]

    web = inv.hostvars['stg-web01']
    assert web['pmx_uptime'] >= 0
    web.pop('pmx_uptime')
    assert web == {
        'pmx_cluster': 'staging', 'pmx_region': 'eu-central', 'pmx_tier': 'staging', 'pmx_vmid': 100,
        'pmx_node': 'stg-pve1', 'pmx_type': 'qemu', 'pmx_status': 'running', 'pmx_name': 'stg-web01',
        'pmx_tags': ['web', 'staging'], 'pmx_pool': None, 'pmx_template': False, 'pmx_lock': None,
        'pmx_cpu': 0.02, 'pmx_maxcpu': 2, 'pmx_mem': 67108864, 'pmx_maxmem': 4294967296,
        'pmx_disk': 0, 'pmx_maxdisk': 32 * 1024 ** 3,
    }
    assert inv.hostvars['dr-proxy01']['pmx_type'] == 'lxc'
    assert inv.hostvars['dr-proxy01']['pmx_status'] == 'stopped'


def test_pool_groups(fresh_lab, tmp_path):
    fresh_lab.clusters['staging'].pve.add_vm(310, 'stg-app01', node='stg-pve2', status='running', pool='apps',
                                             config={'tags': 'app'})
    inv = run_inventory(fresh_lab, tmp_path, {'include_clusters': ['staging']})
    assert_ok(inv)
    assert inv.group('pmx_pool_apps') == {'stg-app01'}
    assert inv.hostvars['stg-app01']['pmx_pool'] == 'apps'
    assert inv.hostvars['stg-app01']['pmx_tags'] == ['app']


def test_graph_and_a_play_that_targets_a_group(lab, tmp_path):
    graph = run_inventory(lab, tmp_path, args=('--graph',))
    assert_ok(graph)
    for line in ('@pmx_all:', '|--@pmx_cluster_staging:', '|--@pmx_node_staging_stg_pve3:', '|--stg-db01',
                 '@pmx_status_running:', '@pmx_tag_cache:'):
        assert line in graph.stdout

    source = write_source(tmp_path, {}, 'play.pmx.yml')
    playbook = tmp_path / 'play.yml'
    playbook.write_text(yaml.safe_dump([{
        'hosts': 'pmx_cluster_staging:&pmx_status_running',
        'gather_facts': False,
        'tasks': [{'ansible.builtin.debug': {'msg': 'TARGET {{ inventory_hostname }} {{ pmx_cluster }}/{{ pmx_node }}/'
                                                    '{{ pmx_vmid }}'}}],
    }]))
    proc = subprocess.run([str(BIN / 'ansible-playbook'), '-i', str(source), str(playbook)],
                          env=ansible_env(lab.env_file), capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    targeted = set(line.split('TARGET ', 1)[1].split()[0] for line in proc.stdout.splitlines() if 'TARGET ' in line)
    assert targeted == {'stg-web01', 'stg-web02', 'stg-db01', 'stg-cache01'}
    assert 'TARGET stg-db01 staging/stg-pve3/102' in proc.stdout
    assert 'ok=1' in proc.stdout and 'failed=0' in proc.stdout


# -------------------------------------------------------------- same name in several clusters

def test_same_name_in_two_clusters_keeps_both(fresh_lab, tmp_path):
    fresh_lab.clusters['production'].pve.add_vm(300, 'shared01', node='prod-pve1', status='running')
    fresh_lab.clusters['staging'].pve.add_vm(300, 'shared01', node='stg-pve2', status='stopped')
    fresh_lab.clusters['staging'].pve.add_vm(301, 'shared01', node='stg-pve3', status='running')
    inv = run_inventory(fresh_lab, tmp_path)
    assert inv.rc == 0, inv.output
    assert 'shared01' not in inv.hosts
    assert {'shared01.production', 'shared01.staging.300', 'shared01.staging.301'} <= inv.hosts
    assert inv.hosts - {'shared01.production', 'shared01.staging.300', 'shared01.staging.301'} == all_samples()
    assert inv.hostvars['shared01.production']['pmx_cluster'] == 'production'
    assert inv.hostvars['shared01.staging.301']['pmx_node'] == 'stg-pve3'
    assert inv.hostvars['shared01.staging.300']['pmx_name'] == 'shared01'
    warning = ' '.join(inv.stderr.split())
    assert ('guest names used more than once, each named with its cluster: shared01 -> shared01.production '
            '(production vmid 300), shared01.staging.300 (staging vmid 300), shared01.staging.301 (staging vmid 301)'
            in warning), inv.stderr

    # A template that is unique by itself needs no disambiguation, and gives no warning.
    inv = run_inventory(fresh_lab, tmp_path, {'hostname_template': '{cluster}-{vmid}'})
    assert_ok(inv)
    assert {'production-300', 'staging-300', 'staging-301', 'disaster-recovery-104'} <= inv.hosts


def test_clusters_sharing_a_group_name_keep_their_own_regions(lab, tmp_path):
    """Two clusters whose names sanitise to one group (stg-a, stg_a): each guest is in its own region's group."""
    staging = lab.clusters['staging']
    clusters = [{'name': name, 'api_url': staging.url, 'token_id': staging.token_id,
                 'token_secret': staging.token_secret, 'ca_bundle': lab.ca_bundle, 'region': region, 'tier': 'same'}
                for name, region in (('stg-a', 'r1'), ('stg_a', 'r2'))]
    inv = run_inventory(lab, tmp_path, {'clusters': clusters}, env_file=False)
    assert inv.rc == 0, inv.output
    first = set('%s.stg-a' % h for h in all_samples(['staging']))
    second = set('%s.stg_a' % h for h in all_samples(['staging']))
    assert inv.hosts == first | second
    assert inv.group('pmx_cluster_stg_a') == first | second
    assert inv.group('pmx_region_r1') == first
    assert inv.group('pmx_region_r2') == second
    assert inv.group('pmx_tier_same') == first | second
    assert all(inv.hostvars[h]['pmx_region'] == 'r1' for h in first)


# -------------------------------------------------------------- filters

@pytest.mark.parametrize('options, expected', [
    ({'include_clusters': ['stag*', 'disaster-recovery']}, all_samples(['staging', 'disaster-recovery'])),
    ({'include_clusters': ['DISASTER_RECOVERY']}, all_samples(['disaster-recovery'])),
    ({'status': ['stopped']}, all_samples(suffixes=['batch01', 'proxy01'])),
    ({'types': ['lxc']}, all_samples(suffixes=['cache01', 'proxy01'])),
    ({'tags': ['db', 'cache']}, all_samples(suffixes=['db01', 'cache01'])),
    ({'filters': ['pmx_maxmem >= 4294967296', "pmx_type == 'qemu'"]}, all_samples(suffixes=['web01', 'web02', 'db01'])),
    ({'filters': ["'staging' in pmx_tags and pmx_status == 'running'"]},
     all_samples(['staging'], SAMPLES[:3] + ('cache01',))),
    ({'include_templates': True, 'types': ['qemu'], 'status': ['stopped']},
     all_samples(suffixes=['batch01', 'tpl-debian12'])),
    ({'include_clusters': ['production'], 'status': ['running'], 'types': ['qemu'], 'tags': ['web'],
      'filters': ['pmx_vmid > 100']}, {'prod-web02'}),
], ids=['clusters-glob', 'cluster-shell-spelling', 'status', 'types', 'tags', 'jinja-filters', 'jinja-tags',
        'templates', 'all-combined'])
def test_filters(lab, tmp_path, options, expected):
    inv = run_inventory(lab, tmp_path, options)
    assert_ok(inv)
    assert inv.hosts == expected
    # Clusters left out by include_clusters are not asked at all.
    if 'include_clusters' in options:
        asked = set(n for n, reqs in inv.requests.items() if reqs)
        assert asked == set(inv.hostvars[h]['pmx_cluster'] for h in expected)


def test_template_variable(lab, tmp_path):
    inv = run_inventory(lab, tmp_path, {'include_templates': True, 'include_clusters': ['production']})
    assert_ok(inv)
    assert inv.hostvars['prod-tpl-debian12']['pmx_template'] is True
    assert inv.hostvars['prod-web01']['pmx_template'] is False


def test_failing_filter_is_false_or_an_error_with_strict(lab, tmp_path):
    options = {'include_clusters': ['production'], 'filters': ['pmx_no_such_variable > 1']}
    inv = run_inventory(lab, tmp_path, options)
    assert_ok(inv)
    assert inv.hosts == set()
    inv = run_inventory(lab, tmp_path, dict(options, strict=True),
                        env={'ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED': '1'})
    assert inv.rc != 0
    assert "filter 'pmx_no_such_variable > 1' failed" in inv.output


# -------------------------------------------------------------- constructed

def test_compose_groups_and_keyed_groups(lab, tmp_path):
    inv = run_inventory(lab, tmp_path, {
        'compose': {'mem_gib': 'pmx_maxmem // 1073741824',
                    'ansible_user': "'debian' if pmx_type == 'qemu' else 'root'"},
        'groups': {'big': 'pmx_maxmem >= 8589934592', 'prod_web': "pmx_cluster == 'production' and 'web' in pmx_tags"},
        'keyed_groups': [
            {'key': 'pmx_tags', 'prefix': 'tag'},
            {'key': 'pmx_region', 'prefix': 'region', 'parent_group': 'regions'},
            {'key': 'pmx_status', 'separator': '', 'prefix': ''},
        ],
    })
    assert_ok(inv)
    assert inv.hostvars['prod-db01']['mem_gib'] == 8
    assert inv.hostvars['prod-db01']['ansible_user'] == 'debian'
    assert inv.hostvars['stg-cache01']['ansible_user'] == 'root'
    assert inv.group('big') == all_samples(suffixes=['db01'])
    assert inv.group('prod_web') == {'prod-web01', 'prod-web02'}
    assert inv.group('tag_batch') == all_samples(suffixes=['batch01'])
    assert inv.children('regions') == {'region_eu_west', 'region_eu_central', 'region_us_east'}
    assert inv.group('region_us_east') == all_samples(['disaster-recovery'])
    assert inv.group('running') == inv.group('pmx_status_running')


def test_group_prefix(lab, tmp_path):
    inv = run_inventory(lab, tmp_path, {'group_prefix': 'pve_', 'include_clusters': ['staging']})
    assert_ok(inv)
    assert inv.group('pve_cluster_staging') == all_samples(['staging'])
    assert not [g for g in inv.data if g.startswith('pmx_')]
    assert 'pmx_cluster' in inv.hostvars['stg-web01']


# -------------------------------------------------------------- cache

def test_cache_hit_makes_no_http_request(lab, tmp_path):
    options = {'cache': True, 'cache_plugin': 'ansible.builtin.jsonfile', 'cache_connection': str(tmp_path / 'cache'),
               'cache_timeout': 600, 'want_config': True, 'include_clusters': ['staging', 'production']}
    source = write_source(tmp_path, options)
    first = run_inventory(lab, tmp_path, source=source)
    assert_ok(first)
    assert sum(len(r) for r in first.requests.values()) == 2 * (1 + len(SAMPLES))
    second = run_inventory(lab, tmp_path, source=source)
    assert_ok(second)
    assert second.requests == {'production': [], 'staging': [], 'disaster-recovery': []}
    assert second.data == first.data
    assert second.hostvars['stg-web01']['pmx_config']['cores'] == 2
    # The cache holds records, never a secret.
    cached = ''.join(p.read_text() for p in (tmp_path / 'cache').iterdir())
    assert 'stg-web01' in cached
    for secret in lab_secrets(lab):
        assert secret not in cached
    # --flush-cache asks the clusters again.
    third = run_inventory(lab, tmp_path, source=source, args=('--list', '--flush-cache'))
    assert_ok(third)
    assert len(third.requests['staging']) == 1 + len(SAMPLES)


def test_result_with_a_cluster_down_is_not_cached(lab, tmp_path):
    options = {'cache': True, 'cache_plugin': 'ansible.builtin.jsonfile', 'cache_connection': str(tmp_path / 'cache'),
               'clusters': [offline_cluster(lab)]}
    source = write_source(tmp_path, options)
    first = run_inventory(lab, tmp_path, source=source)
    assert first.rc == 0 and "cluster 'offline'" in first.stderr
    second = run_inventory(lab, tmp_path, source=source)
    assert second.rc == 0
    assert [len(r) for r in second.requests.values()] == [1, 1, 1]


# -------------------------------------------------------------- a cluster down

def offline_cluster(lab):
    """A cluster whose API URL nobody listens on (a closed port of the lab's first address)."""
    return {'name': 'offline', 'api_url': 'https://%s:9' % lab.clusters['production'].host,
            'token_id': 'root@pam!pmx', 'token_secret': 'offline-secret-0000', 'ca_bundle': lab.ca_bundle}


def test_cluster_down_warns_and_lists_the_others(lab, tmp_path):
    inv = run_inventory(lab, tmp_path, {'clusters': [offline_cluster(lab)]})
    assert inv.rc == 0, inv.output
    assert inv.hosts == all_samples()
    warning = ' '.join(inv.stderr.split())
    assert "pmx inventory: cluster 'offline' cannot be read, its guests are not listed: cluster 'offline' is " \
           "unreachable" in warning
    assert 'connection refused' in warning
    assert 'pmx_cluster_offline' not in inv.data
    assert 'offline-secret-0000' not in inv.output


@pytest.mark.parametrize('options', [{'strict': True}, {'fail_on_unreachable': True}],
                         ids=['strict', 'fail_on_unreachable'])
def test_cluster_down_is_an_error_when_asked(lab, tmp_path, options):
    inv = run_inventory(lab, tmp_path, dict(options, clusters=[offline_cluster(lab)]),
                        env={'ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED': '1'})
    assert inv.rc != 0
    message = ' '.join(inv.output.split())
    assert "cluster 'offline' cannot be read, its guests are not listed: cluster 'offline' is unreachable" in message
    assert 'Traceback' not in inv.output
    assert 'offline-secret-0000' not in inv.output


def test_strict_templates_but_tolerant_of_a_cluster_down(lab, tmp_path):
    inv = run_inventory(lab, tmp_path, {'strict': True, 'fail_on_unreachable': False,
                                        'clusters': [offline_cluster(lab)]})
    assert inv.rc == 0, inv.output
    assert inv.hosts == all_samples()
    assert "cluster 'offline' cannot be read" in inv.stderr


def test_guest_details_that_fail_are_reported(fresh_lab, tmp_path):
    pve = fresh_lab.clusters['staging'].pve
    fresh_lab.call(pve.fail, 'GET', '/nodes/stg-pve3/qemu/102/config', 500, 'disk on fire')
    inv = run_inventory(fresh_lab, tmp_path, {'want_config': True, 'include_clusters': ['staging']})
    assert inv.rc == 0, inv.output
    assert inv.hosts == all_samples(['staging'])
    assert 'pmx_config' not in inv.hostvars['stg-db01']
    assert inv.hostvars['stg-web01']['pmx_config']['cores'] == 2
    warning = ' '.join(inv.stderr.split())
    assert "cluster 'staging' details of some guests cannot be read, they are listed without them: 1 guest(s): " \
           "stg-db01 (vmid 102):" in warning
    assert 'disk on fire' in warning


# -------------------------------------------------------------- per-guest requests

def test_want_config_makes_one_request_per_guest(lab, tmp_path):
    inv = run_inventory(lab, tmp_path, {'want_config': True})
    assert_ok(inv)
    for name in CLUSTERS:
        requests = paths(inv.requests[name])
        assert requests[0] == ('GET', '/api2/json/cluster/resources')
        configs = sorted(request[1] for request in requests[1:])
        # The template is not listed, so not asked for.
        expected = ['/api2/json/nodes/%s/%s/%s/config' % (inv.hostvars[h]['pmx_node'], inv.hostvars[h]['pmx_type'],
                                                          inv.hostvars[h]['pmx_vmid'])
                    for h in all_samples([name])]
        assert configs == sorted(expected), name
        assert len(requests) == 1 + len(SAMPLES)
    config = inv.hostvars['prod-db01']['pmx_config']
    assert config['cores'] == 4 and str(config['memory']) == '8192' and config['name'] == 'prod-db01'
    assert inv.hostvars['dr-cache01']['pmx_config']['hostname'] == 'dr-cache01'

    # Filtered-out guests are not asked for.
    inv = run_inventory(lab, tmp_path, {'want_config': True, 'status': ['running'], 'include_clusters': ['staging']})
    assert_ok(inv)
    assert len(inv.requests['staging']) == 1 + 4


def test_api_data_is_never_templated(fresh_lab, tmp_path):
    vm = next(v for v in fresh_lab.clusters['staging'].pve.vms if v.vmid == 100)
    vm.config['description'] = "{{ lookup('ansible.builtin.env', 'HOME') }}"
    inv = run_inventory(fresh_lab, tmp_path, {'want_config': True, 'include_clusters': ['staging'],
                                              'compose': {'desc': 'pmx_config.description'}})
    assert_ok(inv)
    assert inv.hostvars['stg-web01']['pmx_config']['description'] == "{{ lookup('ansible.builtin.env', 'HOME') }}"
    assert inv.hostvars['stg-web01']['desc'] == "{{ lookup('ansible.builtin.env', 'HOME') }}"
    # Marked unsafe in the output, as Ansible does for data it must not template.
    assert '"__ansible_unsafe": "stg-web01"' in inv.stdout


def test_want_ips_sets_pmx_ips_and_ansible_host(lab, tmp_path):
    inv = run_inventory(lab, tmp_path, {'want_ips': True})
    assert_ok(inv)
    index = dict((name, n) for n, name in enumerate(CLUSTERS, 1))
    for name in CLUSTERS:
        p = PREFIX[name]
        hostvars = inv.hostvars
        assert hostvars['%s-web01' % p]['pmx_ips'] == ['10.%d.1.10' % index[name]]
        assert hostvars['%s-web01' % p]['ansible_host'] == '10.%d.1.10' % index[name]
        assert hostvars['%s-db01' % p]['ansible_host'] == '10.%d.1.12' % index[name]
        # Stopped guests have no address and are not asked; the container uses DHCP, so it reports none.
        assert hostvars['%s-batch01' % p]['pmx_ips'] == []
        assert 'ansible_host' not in hostvars['%s-batch01' % p]
        assert hostvars['%s-cache01' % p]['pmx_ips'] == []
        asked = sorted('/'.join(re.search(r'/(\d+)/(?:agent/)?([\w-]+)$', path).groups())
                       for method, path in paths(inv.requests[name])[1:])
        assert asked == ['100/network-get-interfaces', '101/network-get-interfaces', '102/network-get-interfaces',
                         '104/interfaces'], inv.requests[name]

    # With want_config, a VM whose agent is off is not asked; without ansible_host_from_ip no ansible_host.
    inv = run_inventory(lab, tmp_path, {'want_ips': True, 'want_config': True, 'ansible_host_from_ip': False,
                                        'include_clusters': ['production']})
    assert_ok(inv)
    assert inv.hostvars['prod-web01']['pmx_ips'] == ['10.1.1.10']
    assert 'ansible_host' not in inv.hostvars['prod-web01']


def test_want_ips_agent_off_and_static_container_address(fresh_lab, tmp_path):
    pve = fresh_lab.clusters['production'].pve
    vm = next(v for v in pve.vms if v.vmid == 101)
    vm.config['agent'] = '0'
    ct = next(c for c in pve.cts if c.vmid == 104)
    ct.config['net0'] = 'name=eth0,bridge=vmbr0,ip=192.0.2.44/24,ip6=2001:db8::44/64,type=veth'
    inv = run_inventory(fresh_lab, tmp_path,
                        {'want_ips': True, 'want_config': True, 'include_clusters': ['production']})
    assert_ok(inv)
    assert inv.hostvars['prod-web02']['pmx_ips'] == []
    assert inv.hostvars['prod-cache01']['pmx_ips'] == ['192.0.2.44', '2001:db8::44']
    assert inv.hostvars['prod-cache01']['ansible_host'] == '192.0.2.44'
    asked = [path for method, path in paths(inv.requests['production'])]
    assert not [p for p in asked if '/101/agent' in p]


# -------------------------------------------------------------- secrets and configuration in the file

def test_no_secret_in_verbose_output(lab, tmp_path):
    inv = run_inventory(lab, tmp_path, {'want_config': True, 'want_ips': True}, args=('--list', '-vvv'))
    assert inv.rc == 0, inv.output
    for secret in lab_secrets(lab):
        assert secret not in inv.output
    assert 'token' not in json.dumps(inv.hostvars).lower()

    # Secrets given in the inventory file itself do not show either.
    clusters = [{'name': n, 'api_url': c.url, 'token_id': c.token_id, 'token_secret': c.token_secret,
                 'ca_bundle': lab.ca_bundle, 'region': c.region} for n, c in lab.clusters.items()]
    inv = run_inventory(lab, tmp_path, {'clusters': clusters}, args=('--list', '-vvv'), env_file=False)
    assert inv.rc == 0, inv.output
    assert inv.hosts == all_samples()
    for secret in lab_secrets(lab):
        assert secret not in inv.output


def test_clusters_in_the_file_with_a_vaulted_secret(lab, tmp_path):
    staging = lab.clusters['staging']
    password = tmp_path / 'vault-pass'
    password.write_text('pmx-test-vault\n')
    encrypted = subprocess.run([str(BIN / 'ansible-vault'), 'encrypt_string', '--vault-password-file', str(password),
                                '--name', 'token_secret', staging.token_secret],
                               env=ansible_env(), capture_output=True, text=True, check=True).stdout
    source = tmp_path / 'vault.pmx.yml'
    source.write_text('plugin: %s\nclusters:\n  - name: staging\n    api_url: %s\n    token_id: "%s"\n'
                      '    ca_bundle: %s\n    tier: stage\n%s\n'
                      % (PLUGIN, staging.url, staging.token_id, lab.ca_bundle,
                         '\n'.join('    ' + line for line in encrypted.strip().splitlines())))
    assert staging.token_secret not in source.read_text()
    inv = run_inventory(lab, tmp_path, source=source, env_file=False,
                        args=('--list', '-vvv', '--vault-password-file', str(password)))
    assert inv.rc == 0, inv.output
    assert inv.hosts == all_samples(['staging'])
    assert inv.group('pmx_tier_stage') == all_samples(['staging'])
    assert staging.token_secret not in inv.output


def test_env_file_option_relative_to_the_source(lab, tmp_path):
    (tmp_path / 'conf').mkdir()
    env = tmp_path / 'conf' / 'clusters.env'
    env.write_text(open(lab.env_file).read())
    env.chmod(0o600)
    source = tmp_path / 'conf' / 'rel.pmx.yml'
    source.write_text('plugin: %s\nenv_file: clusters.env\ninclude_clusters: [production]\n' % PLUGIN)
    inv = run_inventory(lab, tmp_path, source=source, env_file=False)
    assert_ok(inv)
    assert inv.hosts == all_samples(['production'])


@pytest.mark.parametrize('options, message', [
    ({'include_clusters': ['nope']}, "unknown cluster 'nope'; configured clusters: production, staging, "
                                     "disaster-recovery"),
    ({'include_clusters': ['x*']}, "unknown cluster 'x*'"),
    ({'hostname_template': '{nmae}'}, "hostname_template '{nmae}' is not valid"),
    ({'default_cluster': 'elsewhere'}, "the default cluster 'elsewhere'"),
    ({'clusters': [{'name': 'broken', 'api_url': 'ftp://x', 'token_id': 'a@pam!b', 'token_secret': 'shh-123'}]},
     'must be an https URL'),
], ids=['unknown-cluster', 'glob-matches-none', 'hostname-template', 'default-cluster', 'bad-url'])
def test_bad_configuration_is_a_clear_error(lab, tmp_path, options, message):
    inv = run_inventory(lab, tmp_path, options, env={'ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED': '1'})
    assert inv.rc != 0
    assert message in ' '.join(inv.output.split())
    assert 'Traceback' not in inv.output
    assert 'shh-123' not in inv.output


def test_other_file_names_are_not_claimed(lab, tmp_path):
    inv = run_inventory(lab, tmp_path, {}, name='lab.yml', env={'ANSIBLE_INVENTORY_ENABLED': PLUGIN})
    assert inv.rc == 0
    assert inv.data is not None and not inv.data['_meta']['hostvars']
    assert sum(len(r) for r in inv.requests.values()) == 0


def test_ansible_doc(lab):
    proc = subprocess.run([str(BIN / 'ansible-doc'), '-t', 'inventory', '--json', PLUGIN], env=ansible_env(),
                          capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)[PLUGIN]['doc']
    for option in ('env_file', 'clusters', 'default_cluster', 'include_clusters', 'status', 'types', 'tags', 'filters',
                   'include_templates', 'want_config', 'want_ips', 'ansible_host_from_ip', 'hostname_template',
                   'max_workers', 'fail_on_unreachable', 'strict', 'compose', 'groups', 'keyed_groups',
                   'leading_separator', 'cache', 'cache_plugin'):
        assert doc['options'][option]['description'], option
    assert doc['author'] in ('pmx.multicluster contributors (@pmx-multicluster)',
                             ['pmx.multicluster contributors (@pmx-multicluster)'])
    text = subprocess.run([str(BIN / 'ansible-doc'), '-t', 'inventory', PLUGIN], env=ansible_env(),
                          capture_output=True, text=True, check=False, timeout=120)
    assert text.returncode == 0 and 'EXAMPLES' in text.stdout
