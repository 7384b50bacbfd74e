"""Configuration sources and load-time checks (issue 12), end to end through the three front ends.

Every case runs a module in a real play (ansible-playbook -vvv), ``ansible-inventory --list`` and the
installed MCP server through the official client, against the shared lab, with a .env edited from the
lab's and, where the case is about precedence, variables in the front end's environment. What each run
printed or returned is captured for tests/integration/test_zz_secret_scan.py, which looks for every form
of every lab secret and of the secrets registered here. docs/fault-matrix.md lists the cases (C1...).
"""

import ssl
import subprocess

from conftest import (
    BIN,
    CHECK,
    INFO,
    MAY_FAIL,
    VM,
    ansible_env,
    capture,
    env_file,
    failed_message,
    inventory,
    mcp,
    play,
    register_secret,
    url_of,
    writes,
)

WRONG_SECRET = '5ec2e700-c0f1-4bad-9a11-000000000012'
URL_PASSWORD = 'Url-Pa55w0rd-12'
URL_USER = 'pmxurluser'
register_secret(WRONG_SECRET, URL_PASSWORD)

STG = 'PROXMOX_CLUSTER_staging_'
DR = 'PROXMOX_CLUSTER_disaster-recovery_'
DR_UPPER = 'PROXMOX_CLUSTER_DISASTER_RECOVERY_'


def flat(text):
    """``text`` on one line (ansible wraps long warnings)."""
    return ' '.join(text.split())


def lab_env(lab, cluster, suffix):
    return lab.env()['PROXMOX_CLUSTER_%s_%s' % (cluster, suffix)]


def every_front_end_fails(lab, tmp_path, env, expected, extra_env=None, forbidden=()):
    """The module (pmx_vm in check mode), the inventory and an MCP tool each fail with ``expected``; nothing
    is written; no text in ``forbidden`` appears in any output."""
    before = writes(lab)
    result = play(lab, tmp_path, VM, [('task', {'name': 'stg-web01', 'memory': 512}, dict(CHECK, **MAY_FAIL))],
                  env=env, extra_env=extra_env)
    message = failed_message(result, 'task')
    assert expected in message, message
    inv = inventory(lab, tmp_path, env=env, fail_unparsed=True, extra_env=extra_env)
    assert inv.rc != 0 and expected in inv.text and 'Traceback' not in inv.stderr, inv.stderr
    stderr = []
    (clusters,) = mcp(lab, [('list_clusters', {})], env=env, extra_env=extra_env, stderr_out=stderr)
    assert clusters[0] is True and expected in clusters[1], clusters
    for text in forbidden:
        for output in (result.output, inv.stdout + inv.stderr, clusters[1] + stderr[0]):
            assert text not in output
    assert writes(lab) == before
    return message


# ================================================================== precedence: the environment wins over the .env

def test_environment_wins_over_the_env_file_with_a_warning(lab, tmp_path):
    """C1-C3: the .env holds a wrong secret and a region for staging, and a wrong secret for disaster-recovery
    under its name as written; the environment holds the right ones (disaster-recovery's in the upper-case
    spelling a shell can export) and another region. Every front end uses the environment's values (the
    wrong secrets would be refused with 401) and warns naming the variables, never a value."""
    env = env_file(lab, tmp_path, replace={STG + 'TOKEN_SECRET': WRONG_SECRET, STG + 'REGION': 'file-region',
                                           DR + 'TOKEN_SECRET': WRONG_SECRET})
    extra = {STG + 'TOKEN_SECRET': lab.clusters['staging'].token_secret, STG + 'REGION': 'env-region',
             DR_UPPER + 'TOKEN_SECRET': lab.clusters['disaster-recovery'].token_secret}
    warnings = [
        STG + 'TOKEN_SECRET is set in the environment and in the env file %s, with different values; the '
              "environment's value is used" % env,
        STG + 'REGION is set in the environment and in the env file %s' % env,
        DR_UPPER + 'TOKEN_SECRET (in the environment) and ' + DR + 'TOKEN_SECRET (in the env file %s) set the '
                   "same setting with different values; the environment's value is used" % env,
    ]
    result = play(lab, tmp_path, INFO, [('info', {'name': ['staging', 'disaster-recovery'],
                                                  'fail_on_unreachable': True})], env=env, extra_env=extra)
    assert result.rc == 0, result.output
    clusters = dict((c['name'], c) for c in result['info']['clusters'])
    assert clusters['staging']['reachable'] and clusters['disaster-recovery']['reachable']
    assert clusters['staging']['region'] == 'env-region'
    for warning in warnings:
        assert warning in flat(result.output)
    assert 'file-region' not in result.output

    inv = inventory(lab, tmp_path, {'include_clusters': ['staging', 'disaster-recovery']}, env=env, extra_env=extra)
    assert inv.rc == 0, inv.stderr
    assert 'stg-web01' in inv.hosts and 'dr-web01' in inv.hosts
    region = inv.data['_meta']['hostvars']['stg-web01']['pmx_region']
    assert region in ('env-region', {'__ansible_unsafe': 'env-region'})
    for warning in warnings:
        assert warning in inv.text
    assert 'rejected the token' not in inv.text and 'file-region' not in inv.stderr

    stderr = []
    (answer,) = mcp(lab, [('list_clusters', {})], env=env, extra_env=extra, stderr_out=stderr)
    assert answer[0] is False
    clusters = dict((c['name'], c) for c in answer[1]['clusters'])
    assert clusters['staging']['reachable'] and clusters['disaster-recovery']['reachable']
    assert clusters['staging']['region'] == 'env-region'
    for warning in warnings:
        assert warning in flat(stderr[0])


def test_same_value_in_the_environment_gives_no_warning(lab, tmp_path):
    """C4: the environment repeats the .env's value: no warning (the module's output holds none)."""
    extra = {STG + 'REGION': lab_env(lab, 'staging', 'REGION')}
    result = play(lab, tmp_path, INFO, [('info', {'name': ['staging']})], extra_env=extra)
    assert result.rc == 0, result.output
    assert 'is set in the environment' not in result.output and '[WARNING]' not in result.output


# ================================================================== the .env file itself

def test_key_set_twice_with_different_values(lab, tmp_path):
    """C5: a secret set twice in the .env with different values: every front end refuses, naming the key and
    both lines, showing neither value."""
    env = env_file(lab, tmp_path, extra=[STG + 'TOKEN_SECRET=' + WRONG_SECRET])
    lines = [n for n, line in enumerate(env.read_text().splitlines(), 1) if line.startswith(STG + 'TOKEN_SECRET=')]
    assert len(lines) == 2
    expected = ('the env file %s sets %sTOKEN_SECRET (lines %d, %d) more than once, with different values; keep one '
                'line of each' % (env, STG, lines[0], lines[1]))
    every_front_end_fails(lab, tmp_path, env, expected, forbidden=[WRONG_SECRET])


def test_key_set_twice_with_the_same_value_is_fine(lab, tmp_path):
    """C6: the same line twice: nothing to complain about."""
    env = env_file(lab, tmp_path, extra=[STG + 'REGION=' + lab_env(lab, 'staging', 'REGION')])
    result = play(lab, tmp_path, INFO, [('info', {'name': ['staging']})], env=env)
    assert result.rc == 0 and result['info']['clusters'][0]['reachable'], result.output


def test_verify_and_verify_ssl_differ(lab, tmp_path):
    """C7: VERIFY_SSL=true and the seed's VERIFY=0 for one cluster: an error naming both, in every front end;
    1 and true agree (compared as booleans)."""
    env = env_file(lab, tmp_path, extra=[STG + 'VERIFY_SSL=true', STG + 'VERIFY=0'])
    every_front_end_fails(lab, tmp_path, env, STG + 'VERIFY_SSL and ' + STG + 'VERIFY are both set, with different '
                          'values; keep one of them (in the env file %s)' % env)
    agree = env_file(lab, tmp_path, extra=[STG + 'VERIFY_SSL=true', STG + 'VERIFY=1'], name='agree.env')
    result = play(lab, tmp_path, INFO, [('info', {'name': ['staging']})], env=agree)
    assert result.rc == 0 and result['info']['clusters'][0]['verify_ssl'] is True, result.output


def test_hyphenated_cluster_without_its_variables(lab, tmp_path):
    """C8: disaster-recovery listed but without an API URL: the message names the upper-case spelling too,
    since shells such as dash drop variables whose names contain '-'."""
    env = env_file(lab, tmp_path, drop=[DR + 'API_URL'])
    every_front_end_fails(lab, tmp_path, env, "cluster 'disaster-recovery' has no API URL: set %sAPI_URL="
                          "https://host:8006 (or %sAPI_URL: shells such as dash drop variables whose names contain "
                          "'-')" % (DR, DR_UPPER))


# ================================================================== secrets and URLs

def test_secret_with_a_trailing_newline_in_the_env_file(lab, tmp_path):
    """C9: a quoted secret with \\n in the .env: stripped, the cluster works, a warning names the variable;
    the secret never appears (the scan looks for it with and without the newline, in every escaping)."""
    secret = lab.clusters['staging'].token_secret
    register_secret(secret + '\n')
    env = env_file(lab, tmp_path, replace={STG + 'TOKEN_SECRET': '"%s\\n"' % secret})
    warning = STG + 'TOKEN_SECRET starts or ends with whitespace, such as a newline'
    result = play(lab, tmp_path, VM, [('task', {'name': 'stg-web01', 'memory': 512}, CHECK)], env=env)
    assert result.rc == 0 and result['task']['changed'] is True, result.output
    assert warning in flat(result.output)
    inv = inventory(lab, tmp_path, {'include_clusters': ['staging']}, env=env)
    assert inv.rc == 0 and 'stg-web01' in inv.hosts and warning in inv.text, inv.stderr
    stderr = []
    (details,) = mcp(lab, [('guest_details', {'name': 'stg-web01'})], env=env, stderr_out=stderr)
    assert details[0] is False and warning in flat(stderr[0]), details


def vaulted(tmp_path, name, piped):
    """``piped`` encrypted the way ``echo ... | ansible-vault encrypt_string --stdin-name NAME`` does (the
    newline echo adds is part of the secret); returns (a vars file holding it, the password file)."""
    password = tmp_path / 'vault-pass'
    password.write_text('pmx-test-vault\n')
    encrypted = subprocess.run([str(BIN / 'ansible-vault'), 'encrypt_string', '--vault-password-file',
                                str(password), '--stdin-name', name], input=piped, env=ansible_env(),
                               capture_output=True, text=True, check=True, timeout=120).stdout
    variables = tmp_path / 'vaulted.yml'
    variables.write_text(encrypted)
    return variables, password


def test_vaulted_secret_from_piped_input_in_the_clusters_option(lab, tmp_path):
    """C10: the clusters option with a secret from `echo SECRET | ansible-vault encrypt_string`: stripped with
    a warning naming clusters.staging.token_secret; the module and the inventory work with it."""
    staging = lab.clusters['staging']
    register_secret(staging.token_secret + '\n')
    variables, password = vaulted(tmp_path, 'vaulted_secret', staging.token_secret + '\n')
    assert staging.token_secret not in variables.read_text()
    warning = 'clusters.staging.token_secret starts or ends with whitespace, such as a newline'
    override = [{'name': 'staging', 'token_secret': '{{ vaulted_secret }}'}]
    result = play(lab, tmp_path, INFO, [('info', {'name': ['staging'], 'clusters': override,
                                                  'fail_on_unreachable': True})],
                  args=('-vvv', '--vault-password-file', str(password), '-e', '@%s' % variables))
    assert result.rc == 0 and result['info']['clusters'][0]['reachable'], result.output
    assert warning in flat(result.output)

    # The inventory file holds the vaulted value itself, as a user writes it.
    source = tmp_path / 'vaulted.pmx.yml'
    source.write_text('plugin: pmx.multicluster.pmx\ninclude_clusters: [staging]\nclusters:\n  - name: staging\n'
                      + ''.join('  ' + line + '\n' for line in variables.read_text().replace(
                          'vaulted_secret:', '  token_secret:').splitlines()))
    proc = subprocess.run([str(BIN / 'ansible-inventory'), '-i', str(source), '--list', '--vault-password-file',
                           str(password)], env=ansible_env(lab.env_file), capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL, check=False, cwd=str(tmp_path))
    capture(lab, 'inventory', proc.stdout, proc.stderr)
    assert proc.returncode == 0 and '"stg-web01"' in proc.stdout, proc.stderr
    assert warning in flat(proc.stderr)


def test_api_url_with_credentials_is_refused(lab, tmp_path):
    """C11: user:password@ in an API URL: refused before any request, naming the variable and showing only
    scheme://host:port, in every front end; neither the user nor the password appears anywhere."""
    host = lab.clusters['staging'].host
    env = env_file(lab, tmp_path, replace={STG + 'API_URL': 'https://%s:%s@%s:8006' % (URL_USER, URL_PASSWORD, host)})
    every_front_end_fails(lab, tmp_path, env, STG + 'API_URL: the API URL https://%s:8006 has a user name or password'
                          ' in it' % host, forbidden=[URL_USER, URL_PASSWORD])
    assert url_of(lab, 'staging') == 'https://%s:8006' % host


# ================================================================== CA bundles

def test_empty_and_non_pem_ca_bundles(lab, tmp_path):
    """C12-C13: an empty CA bundle and a DER (non-PEM) one: each its own message naming the variable and the
    file and the CA to give instead; none advises turning verification off."""
    empty = tmp_path / 'empty-ca.pem'
    empty.write_bytes(b'')
    der = tmp_path / 'ca.der'
    der.write_bytes(ssl.PEM_cert_to_DER_cert(open(lab.ca_bundle).read()))  # the lab's own CA, in DER form
    for path, problem in ((empty, 'is empty'), (der, 'is not a PEM certificate file (it has no -----BEGIN '
                                                       'CERTIFICATE----- block)')):
        env = env_file(lab, tmp_path, replace={STG + 'CA_BUNDLE': str(path)}, name=path.name + '.env')
        message = every_front_end_fails(lab, tmp_path, env, '%sCA_BUNDLE: the CA bundle %s %s' % (STG, path, problem))
        assert "point %sCA_BUNDLE at the PEM file of the CA that signed the cluster's certificate" % STG in message
        assert 'VERIFY' not in message and 'false' not in message and ' off' not in message


# ================================================================== legacy single-cluster mode

def legacy_env(lab, tmp_path, lines, name='legacy.env'):
    """A .env in legacy single-cluster mode for the lab's staging cluster (no PROXMOX_CLUSTERS)."""
    staging = lab.clusters['staging']
    text = '\n'.join(['PROXMOX_API_URL=' + staging.url, 'PROXMOX_TOKEN_ID=' + staging.token_id,
                      'PROXMOX_TOKEN_SECRET=' + staging.token_secret] + list(lines)) + '\n'
    path = tmp_path / name
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_legacy_mode_reads_proxmox_verify(lab, tmp_path):
    """C14: legacy mode with PROXMOX_VERIFY=false and no CA bundle: the lab's self-signed certificate is
    accepted (verification is off, as asked), pmx_cluster_info shows verify_ssl false, and the warning
    names the legacy variable to set; the inventory and the MCP server read it too."""
    env = legacy_env(lab, tmp_path, ['PROXMOX_VERIFY=false'])
    warning = "TLS certificate verification is off for cluster 'default'"
    result = play(lab, tmp_path, INFO, [('info', {'fail_on_unreachable': True})], env=env)
    assert result.rc == 0, result.output
    (cluster,) = result['info']['clusters']
    assert cluster['name'] == 'default' and cluster['reachable'] and cluster['verify_ssl'] is False
    assert warning in flat(result.output) and 'Prefer PROXMOX_CA_BUNDLE' in flat(result.output)
    inv = inventory(lab, tmp_path, env=env)
    assert inv.rc == 0 and 'stg-web01' in inv.hosts and warning in inv.text, inv.stderr
    (answer,) = mcp(lab, [('list_clusters', {})], env=env)
    assert answer[0] is False and [c['name'] for c in answer[1]['clusters']] == ['default']
    assert answer[1]['clusters'][0]['reachable'] and answer[1]['clusters'][0]['verify_ssl'] is False


def test_legacy_mode_default_node(lab, tmp_path):
    """C15: legacy mode with PROXMOX_DEFAULT_NODE (the .env says stg-pve1, the environment stg-pve3, and the
    environment wins): a pmx_vm check-mode create picks stg-pve3 with node_reason 'cluster default node'."""
    env = legacy_env(lab, tmp_path, ['PROXMOX_VERIFY=1', 'PROXMOX_CA_BUNDLE=' + lab.ca_bundle,
                                     'PROXMOX_DEFAULT_NODE=stg-pve1'])
    before = writes(lab)
    result = play(lab, tmp_path, VM, [('create', {'name': 'legacy-web01', 'memory': 512}, CHECK)], env=env,
                  extra_env={'PROXMOX_DEFAULT_NODE': 'stg-pve3'})
    assert result.rc == 0, result.output
    create = result['create']
    assert create['changed'] is True and create['cluster'] == 'default'
    assert create['node'] == 'stg-pve3' and create['node_reason'] == 'cluster default node'
    assert 'PROXMOX_DEFAULT_NODE is set in the environment and in the env file' in flat(result.output)
    assert writes(lab) == before
