"""Bad input: a clear message, no traceback, no secret in any output, even at -vvv.

Each case runs pmx_cluster_info through the real ansible-playbook with -vvv and a
configuration that is wrong in one way.
"""

import pytest
from fakepve.certs import make_cert

from conftest import edited_env_text, lab_secrets, run_play, write_env_file

INFO = 'pmx.multicluster.pmx_cluster_info'
WRONG_SECRET = 'definitely-not-the-right-secret'


def run_info(tmp_path, env_file, options=None):
    return run_play(tmp_path, [{INFO: dict(options or {}), 'register': 'info', 'ignore_errors': True}],
                    env_file=env_file, args=['-vvv'])


def failed_msg(result):
    assert result.rc == 0, result.output  # ignore_errors: the play itself completes
    info = result['info']
    assert info['failed'] is True, info
    assert 'Traceback' not in result.output
    # ansible-core 2.19 gives every failed result an 'exception' summary; it must hold no traceback.
    assert 'Traceback' not in str(info.get('exception', ''))
    return info['msg']


def test_unknown_cluster_name_suggests_close_match(lab, tmp_path):
    result = run_info(tmp_path, lab.env_file, {'name': ['prodution']})
    msg = failed_msg(result)
    assert msg == ("unknown cluster 'prodution'; configured clusters: production, staging, disaster-recovery. "
                   "Did you mean 'production'?")
    result.assert_no_secret(lab_secrets(lab))


def test_name_matching_two_clusters_patterns(lab, tmp_path):
    overlap = [{'name': 'staging', 'patterns': ['stg-*', '*-web*']}]
    result = run_info(tmp_path, lab.env_file, {'clusters': overlap, 'route': ['prod-web01', 'stg-db01']})
    assert result.rc == 0, result.output
    routes = dict((r['name'], r) for r in result['info']['routes'])
    error = routes['prod-web01']['error']
    assert routes['prod-web01']['cluster'] is None
    assert "the name 'prod-web01' matches the routing rules of several clusters" in error
    assert "production (pattern 'prod-*')" in error and "staging (pattern '*-web*')" in error
    assert 'Give cluster: explicitly' in error
    assert routes['stg-db01']['cluster'] == 'staging'
    result.assert_no_secret(lab_secrets(lab))


@pytest.mark.parametrize('case, make_env, expected', [
    ('cluster without API_URL',
     lambda lab: edited_env_text(lab, drop=['PROXMOX_CLUSTER_staging_API_URL']),
     "cluster 'staging' has no API URL: set PROXMOX_CLUSTER_staging_API_URL=https://host:8006"),
    ('token id without a token name',
     lambda lab: edited_env_text(lab, replace={'PROXMOX_CLUSTER_staging_TOKEN_ID': 'root@pam'}),
     "PROXMOX_CLUSTER_staging_TOKEN_ID must have the form user@realm!tokenname (for example root@pam!ansible), "
     "got 'root@pam'"),
    ('missing token secret',
     lambda lab: edited_env_text(lab, drop=['PROXMOX_CLUSTER_production_TOKEN_SECRET']),
     "cluster 'production' has no API token secret: set PROXMOX_CLUSTER_production_TOKEN_SECRET"),
    ('both spellings, different values',
     lambda lab: edited_env_text(lab, extra=['PROXMOX_CLUSTER_DISASTER_RECOVERY_TOKEN_SECRET=' + WRONG_SECRET]),
     'PROXMOX_CLUSTER_disaster-recovery_TOKEN_SECRET and PROXMOX_CLUSTER_DISASTER_RECOVERY_TOKEN_SECRET are '
     'both set, with different values; keep one of them'),
    ('malformed .env line',
     lambda lab: edited_env_text(lab, extra=['this line has no equals sign ' + WRONG_SECRET]),
     'has line(s) that are not KEY=VALUE: line 25; fix or comment them out with #'),
])
def test_configuration_errors(lab, tmp_path, case, make_env, expected):
    env_file = write_env_file(tmp_path, make_env(lab))
    result = run_info(tmp_path, env_file)
    assert expected in failed_msg(result), case
    result.assert_no_secret(lab_secrets(lab) + [WRONG_SECRET])


def test_wrong_token_secret_is_401_with_token_id(lab, tmp_path):
    env_file = write_env_file(tmp_path, edited_env_text(
        lab, replace={'PROXMOX_CLUSTER_staging_TOKEN_SECRET': WRONG_SECRET}))
    result = run_info(tmp_path, env_file, {'fail_on_unreachable': True})
    msg = failed_msg(result)
    assert ("cluster 'staging': the API at %s rejected the token root@pam!pmx (401 authentication failure). "
            "Check the token secret (PROXMOX_CLUSTER_staging_TOKEN_SECRET)" % lab.clusters['staging'].url) in msg
    assert result['info']['unreachable_clusters'] == ['staging']
    result.assert_no_secret(lab_secrets(lab) + [WRONG_SECRET])


def test_connection_refused(lab, tmp_path):
    env_file = write_env_file(tmp_path, edited_env_text(
        lab, replace={'PROXMOX_CLUSTER_production_API_URL': 'https://127.0.9.9:8006'}))
    result = run_info(tmp_path, env_file, {'name': ['production'], 'fail_on_unreachable': True})
    msg = failed_msg(result)
    assert ("cluster 'production' is unreachable: https://127.0.9.9:8006: connection refused. Check that the API "
            "URL is right and the cluster is up (PROXMOX_CLUSTER_production_API_URL).") in msg
    result.assert_no_secret(lab_secrets(lab))


def test_bad_certificate(lab, tmp_path):
    # A CA bundle that did not sign the lab's certificate: verification must fail, clearly.
    other_ca = make_cert(str(tmp_path), name='other', hosts=(lab.clusters['production'].host,))[0]
    env_file = write_env_file(tmp_path, edited_env_text(
        lab, replace={'PROXMOX_CLUSTER_production_CA_BUNDLE': other_ca}))
    result = run_info(tmp_path, env_file, {'name': ['production'], 'fail_on_unreachable': True})
    msg = failed_msg(result)
    assert "cluster 'production': TLS certificate verification failed for %s" % lab.clusters['production'].url in msg
    assert 'Set PROXMOX_CLUSTER_production_CA_BUNDLE to the CA certificate' in msg
    assert 'PROXMOX_CLUSTER_production_VERIFY_SSL=false' in msg
    result.assert_no_secret(lab_secrets(lab))


def test_env_file_readable_by_others_warns(lab, tmp_path):
    env_file = write_env_file(tmp_path, lab.env_text())
    env_file.chmod(0o644)
    result = run_play(tmp_path, [{INFO: {'name': ['staging']}, 'register': 'info'}], env_file=env_file)
    assert result.rc == 0, result.output
    assert 'holds secrets but other users can read it; run: chmod 600' in result.output
