"""load_config: the seed's variables, both spellings of a name, sources and their precedence, and the errors."""

import os
import re

import pytest

from ansible_collections.pmx.multicluster.plugins.module_utils.config import (
    DEFAULT_CACHE_TTL, DEFAULT_TIMEOUT, ClusterConfig, RegistryConfig, load_config)
from ansible_collections.pmx.multicluster.plugins.module_utils.errors import ConfigError

SECRET_PROD = 'a1b2c3d4-0000-4000-8000-prodprodprod'
SECRET_STG = 'a1b2c3d4-0000-4000-8000-stgstgstgstg'
SECRET_DR = 'a1b2c3d4-0000-4000-8000-drdrdrdrdrdr'
OTHER_SECRET = 'ffffffff-1111-4111-8111-otherotherot'

# The seed's example, as a user exports it (the hyphenated name in its shell-safe spelling).
SEED = {
    'PROXMOX_CLUSTERS': 'production,staging,disaster-recovery',
    'PROXMOX_CLUSTER_production_API_URL': 'https://pve-prod.example.com:8006',
    'PROXMOX_CLUSTER_production_TOKEN_ID': 'root@pam!ansible',
    'PROXMOX_CLUSTER_production_TOKEN_SECRET': SECRET_PROD,
    'PROXMOX_CLUSTER_production_VERIFY_SSL': 'true',
    'PROXMOX_CLUSTER_production_REGION': 'eu-west',
    'PROXMOX_CLUSTER_production_TIER': 'production',
    'PROXMOX_CLUSTER_production_PATTERNS': 'prod-*,*-prod',
    'PROXMOX_CLUSTER_staging_API_URL': 'https://pve-stg.example.com:8006',
    'PROXMOX_CLUSTER_staging_TOKEN_ID': 'ansible@pve!automation',
    'PROXMOX_CLUSTER_staging_TOKEN_SECRET': SECRET_STG,
    'PROXMOX_CLUSTER_staging_REGION': 'eu-central',
    'PROXMOX_CLUSTER_staging_TIER': 'staging',
    'PROXMOX_CLUSTER_staging_PATTERNS': 'stg-*',
    'PROXMOX_CLUSTER_DISASTER_RECOVERY_API_URL': 'https://pve-dr.example.com:8006',
    'PROXMOX_CLUSTER_DISASTER_RECOVERY_TOKEN_ID': 'root@pam!dr',
    'PROXMOX_CLUSTER_DISASTER_RECOVERY_TOKEN_SECRET': SECRET_DR,
    'PROXMOX_CLUSTER_DISASTER_RECOVERY_REGION': 'us-east',
    'PROXMOX_CLUSTER_DISASTER_RECOVERY_PATTERNS': 'dr-*',
}


def one(name='production', clusters=None, **settings):
    """The variables of one complete cluster ``name`` (settings by suffix: API_URL=..., REGION=...)."""
    env = {
        'PROXMOX_CLUSTERS': clusters or name,
        'PROXMOX_CLUSTER_%s_API_URL' % name: 'https://pve.example.com:8006',
        'PROXMOX_CLUSTER_%s_TOKEN_ID' % name: 'root@pam!ansible',
        'PROXMOX_CLUSTER_%s_TOKEN_SECRET' % name: SECRET_PROD,
    }
    for suffix, value in settings.items():
        key = 'PROXMOX_CLUSTER_%s_%s' % (name, suffix)
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def with_(base, **extra):
    """A copy of base with extra variables; a value of None removes the variable."""
    env = dict(base)
    for key, value in extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def pick(config, path):
    """A value of the config by path: 'default_cluster', 'names', or '<cluster>.<attribute>'."""
    if '.' in path:
        cluster, attr = path.split('.', 1)
        return getattr(config.clusters[cluster], attr)
    return getattr(config, path)


LEGACY = {
    'PROXMOX_API_URL': 'pve.example.com',
    'PROXMOX_TOKEN_ID': 'root@pam!legacy',
    'PROXMOX_TOKEN_SECRET': SECRET_PROD,
}

HYPHENATED = {
    'PROXMOX_CLUSTERS': 'disaster-recovery',
    'PROXMOX_CLUSTER_disaster-recovery_API_URL': 'https://dr.example.com:8006',
    'PROXMOX_CLUSTER_disaster-recovery_TOKEN_ID': 'root@pam!dr',
    'PROXMOX_CLUSTER_disaster-recovery_TOKEN_SECRET': SECRET_DR,
}
HYPHENATED_UPPER = dict((k.replace('disaster-recovery_', 'DISASTER_RECOVERY_'), v) for k, v in HYPHENATED.items())

# (id, environment, {path: expected value})
VALID = [
    ('seed', SEED, {
        'names': ['production', 'staging', 'disaster-recovery'],
        'default_cluster': 'production',
        'cache_ttl': DEFAULT_CACHE_TTL,
        'prefix_patterns': [],
        'warnings': [],
        'production.api_urls': ['https://pve-prod.example.com:8006'],
        'production.api_url': 'https://pve-prod.example.com:8006',
        'production.token_id': 'root@pam!ansible',
        'production.token_user': 'root@pam',
        'production.token_name': 'ansible',
        'production.token_secret': SECRET_PROD,
        'production.verify_ssl': True,
        'production.verify': True,
        'production.ca_bundle': None,
        'production.timeout': DEFAULT_TIMEOUT,
        'production.region': 'eu-west',
        'production.tier': 'production',
        'production.patterns': ['prod-*', '*-prod'],
        'staging.token_id': 'ansible@pve!automation',
        'staging.token_secret': SECRET_STG,
        'staging.patterns': ['stg-*'],
        'staging.verify_ssl': True,
        'disaster-recovery.api_url': 'https://pve-dr.example.com:8006',
        'disaster-recovery.token_secret': SECRET_DR,
        'disaster-recovery.region': 'us-east',
        'disaster-recovery.tier': None,
        'disaster-recovery.patterns': ['dr-*'],
        'disaster-recovery.default_node': None,
    }),
    ('hyphen-as-written', HYPHENATED, {
        'names': ['disaster-recovery'], 'disaster-recovery.api_url': 'https://dr.example.com:8006',
        'disaster-recovery.token_secret': SECRET_DR}),
    ('hyphen-upper-case', HYPHENATED_UPPER, {
        'names': ['disaster-recovery'], 'disaster-recovery.api_url': 'https://dr.example.com:8006',
        'disaster-recovery.token_secret': SECRET_DR}),
    ('hyphen-both-spellings-same-value', dict(HYPHENATED, **HYPHENATED_UPPER), {
        'disaster-recovery.api_url': 'https://dr.example.com:8006', 'disaster-recovery.token_secret': SECRET_DR}),
    ('hyphen-spellings-mixed', with_(HYPHENATED, **{
        'PROXMOX_CLUSTER_disaster-recovery_TOKEN_SECRET': None,
        'PROXMOX_CLUSTER_DISASTER_RECOVERY_TOKEN_SECRET': SECRET_DR,
        'PROXMOX_CLUSTER_DISASTER_RECOVERY_REGION': 'us-east'}), {
        'disaster-recovery.token_secret': SECRET_DR, 'disaster-recovery.region': 'us-east'}),
    ('empty-value-in-one-spelling-is-unset', with_(HYPHENATED, **{
        'PROXMOX_CLUSTER_DISASTER_RECOVERY_API_URL': ''}), {
        'disaster-recovery.api_url': 'https://dr.example.com:8006'}),
    ('plain-name-upper-case-spelling', {
        'PROXMOX_CLUSTERS': 'production',
        'PROXMOX_CLUSTER_PRODUCTION_API_URL': 'https://pve.example.com',
        'PROXMOX_CLUSTER_PRODUCTION_TOKEN_ID': 'root@pam!x',
        'PROXMOX_CLUSTER_PRODUCTION_TOKEN_SECRET': SECRET_PROD}, {
        'names': ['production'], 'production.api_url': 'https://pve.example.com:8006'}),
    ('legacy-single-cluster', LEGACY, {
        'names': ['default'], 'default_cluster': 'default', 'default.api_url': 'https://pve.example.com:8006',
        'default.token_id': 'root@pam!legacy', 'default.token_secret': SECRET_PROD, 'default.verify_ssl': True}),
    ('legacy-verify-off', with_(LEGACY, PROXMOX_VERIFY_SSL='false', PROXMOX_TIMEOUT='5'), {
        'default.verify_ssl': False, 'default.verify': False, 'default.timeout': 5.0}),
    ('named-clusters-win-over-legacy', with_(one(), **LEGACY), {'names': ['production']}),
    # VERIFY_SSL and the seed's VERIFY
    ('verify-default-true', one(), {'production.verify_ssl': True, 'production.verify': True}),
    ('verify-ssl-false', one(VERIFY_SSL='false'), {'production.verify_ssl': False, 'production.verify': False}),
    ('verify-ssl-0', one(VERIFY_SSL='0'), {'production.verify_ssl': False}),
    ('verify-ssl-no', one(VERIFY_SSL='no'), {'production.verify_ssl': False}),
    ('verify-ssl-off', one(VERIFY_SSL='off'), {'production.verify_ssl': False}),
    ('verify-ssl-False-mixed-case', one(VERIFY_SSL=' False '), {'production.verify_ssl': False}),
    ('verify-ssl-yes', one(VERIFY_SSL='yes'), {'production.verify_ssl': True}),
    ('verify-ssl-1', one(VERIFY_SSL='1'), {'production.verify_ssl': True}),
    ('verify-ssl-TRUE', one(VERIFY_SSL='TRUE'), {'production.verify_ssl': True}),
    ('verify-ssl-empty-is-default', one(VERIFY_SSL=''), {'production.verify_ssl': True}),
    ('verify-seed-alias-false', one(VERIFY='false'), {'production.verify_ssl': False, 'production.verify': False}),
    ('verify-seed-alias-true', one(VERIFY='true'), {'production.verify_ssl': True}),
    ('verify-seed-alias-upper-spelling', with_(HYPHENATED, PROXMOX_CLUSTER_DISASTER_RECOVERY_VERIFY='0'), {
        'disaster-recovery.verify_ssl': False}),
    # metadata and guest defaults
    ('region-tier', one(REGION='eu-west', TIER='gold'), {'production.region': 'eu-west', 'production.tier': 'gold'}),
    ('patterns-trimmed', one(PATTERNS=' prod-*, *-prod ,,web-??'), {
        'production.patterns': ['prod-*', '*-prod', 'web-??']}),
    ('no-patterns', one(), {'production.patterns': []}),
    ('default-node-storage-bridge', one(DEFAULT_NODE='pve1', DEFAULT_STORAGE='local-lvm', DEFAULT_BRIDGE='vmbr1'), {
        'production.default_node': 'pve1', 'production.default_storage': 'local-lvm',
        'production.default_bridge': 'vmbr1'}),
    ('timeout', one(TIMEOUT='2.5'), {'production.timeout': 2.5}),
    # API URLs
    ('api-url-host-only', one(API_URL='pve1.example.com'), {'production.api_urls': ['https://pve1.example.com:8006']}),
    ('api-url-several', one(API_URL='pve1.example.com, https://pve2.example.com:8443/,https://10.0.0.3/api2/json'), {
        'production.api_urls': ['https://pve1.example.com:8006', 'https://pve2.example.com:8443',
                                'https://10.0.0.3:8006'],
        'production.api_url': 'https://pve1.example.com:8006'}),
    ('api-url-ipv6', one(API_URL='https://[fd00::1]'), {'production.api_urls': ['https://[fd00::1]:8006']}),
    ('api-url-upper-host', one(API_URL='HTTPS://PVE.Example.COM:8006'), {
        'production.api_urls': ['https://pve.example.com:8006']}),
    # global settings
    ('default-cluster', with_(SEED, PROXMOX_DEFAULT_CLUSTER='staging'), {'default_cluster': 'staging'}),
    ('default-cluster-hyphenated', with_(SEED, PROXMOX_DEFAULT_CLUSTER='disaster-recovery'), {
        'default_cluster': 'disaster-recovery'}),
    ('cache-ttl', with_(SEED, PROXMOX_CLIENT_CACHE_TTL='60'), {'cache_ttl': 60}),
    ('cache-ttl-seed-alias', with_(SEED, PROXMOX_CLUSTER_CACHE_TTL='120'), {'cache_ttl': 120}),
    ('cache-ttl-zero', with_(SEED, PROXMOX_CLIENT_CACHE_TTL='0'), {'cache_ttl': 0}),
    ('cache-ttl-both-names', with_(SEED, PROXMOX_CLIENT_CACHE_TTL='30', PROXMOX_CLUSTER_CACHE_TTL='120'), {
        'cache_ttl': 30}),
    ('prefix-map', with_(SEED, PROXMOX_CLUSTER_PATTERNS='prod-:production, stg-:staging,dr-:disaster-recovery'), {
        'prefix_patterns': [('prod-', 'production'), ('stg-', 'staging'), ('dr-', 'disaster-recovery')]}),
    ('prefix-map-spaces', with_(SEED, PROXMOX_CLUSTER_PATTERNS=' web- : staging '), {
        'prefix_patterns': [('web-', 'staging')]}),
    ('unrelated-variables-ignored', with_(one(), HOME='/root', OTHER_TOKEN_SECRET='x'), {'names': ['production']}),
]


@pytest.mark.parametrize('environ,expected', [(e, x) for _, e, x in VALID], ids=[i for i, _, _ in VALID])
def test_valid_configuration(environ, expected):
    config = load_config(environ=environ)
    for path, value in expected.items():
        assert pick(config, path) == value, path


def test_seed_clusters_are_in_the_given_order_and_typed():
    config = load_config(environ=SEED)
    assert isinstance(config, RegistryConfig)
    assert list(config.clusters) == ['production', 'staging', 'disaster-recovery']
    assert all(isinstance(c, ClusterConfig) and c.name == n for n, c in config.clusters.items())
    assert config.env_file is None


def test_ca_bundle(tmp_path):
    ca = tmp_path / 'ca.pem'
    ca.write_text('-----BEGIN CERTIFICATE-----\n')
    config = load_config(environ=one(CA_BUNDLE=str(ca)))
    cluster = config.clusters['production']
    assert cluster.ca_bundle == str(ca)
    assert cluster.verify == str(ca)
    assert cluster.verify_ssl is True


def test_ca_bundle_expands_home(tmp_path, monkeypatch):
    monkeypatch.setenv('HOME', str(tmp_path))
    (tmp_path / 'ca.pem').write_text('x')
    config = load_config(environ=one(CA_BUNDLE='~/ca.pem'))
    assert config.clusters['production'].ca_bundle == str(tmp_path / 'ca.pem')


def test_ca_bundle_is_ignored_when_verification_is_off(tmp_path):
    ca = tmp_path / 'ca.pem'
    ca.write_text('x')
    cluster = load_config(environ=one(CA_BUNDLE=str(ca), VERIFY_SSL='false')).clusters['production']
    assert cluster.verify is False
    assert cluster.ca_bundle is None


# ----------------------------------------------------------------------------------------------- errors

# (id, environment, substrings the message must contain, substrings it must not contain)
INVALID = [
    ('nothing-configured', {}, ['no Proxmox cluster is configured', 'PROXMOX_CLUSTERS'], []),
    ('only-unrelated-variables', {'HOME': '/root', 'PROXMOX_DEFAULT_CLUSTER': 'x'},
     ['no Proxmox cluster is configured'], []),
    ('listed-cluster-without-api-url', with_(SEED, PROXMOX_CLUSTERS='production,staging,backup'),
     ["cluster 'backup' has no API URL", 'PROXMOX_CLUSTER_backup_API_URL'], []),
    ('api-url-empty', one(API_URL=' , '), ["cluster 'production' has no API URL"], []),
    ('token-id-without-token-name', one(TOKEN_ID='root@pam'),
     ['PROXMOX_CLUSTER_production_TOKEN_ID', 'user@realm!tokenname', 'root@pam'], [SECRET_PROD]),
    ('token-id-without-realm', one(TOKEN_ID='root!x'),
     ['PROXMOX_CLUSTER_production_TOKEN_ID', 'user@realm!tokenname'], [SECRET_PROD]),
    ('token-name-not-starting-with-letter', one(TOKEN_ID='root@pam!1x'),
     ['PROXMOX_CLUSTER_production_TOKEN_ID'], []),
    ('token-id-missing', one(TOKEN_ID=None), ["cluster 'production' has no API token id", 'TOKEN_ID'], []),
    ('token-secret-missing', one(TOKEN_SECRET=None),
     ["cluster 'production' has no API token secret", 'PROXMOX_CLUSTER_production_TOKEN_SECRET'], []),
    ('token-secret-empty', one(TOKEN_SECRET=''), ['no API token secret'], []),
    # A user pasting PVE's whole "user@realm!name=secret" into TOKEN_ID: the error must not echo the secret.
    ('token-id-with-the-secret-pasted-in', one(TOKEN_ID='root@pam!ansible=' + SECRET_PROD),
     ['PROXMOX_CLUSTER_production_TOKEN_ID', 'user@realm!tokenname'], [SECRET_PROD]),
    ('duplicate-cluster-names', with_(one('prod', clusters='prod,PROD')), ["names the cluster 'PROD' twice"], []),
    ('duplicate-hyphen-spellings', with_(HYPHENATED, PROXMOX_CLUSTERS='disaster-recovery,DISASTER_RECOVERY'),
     ['twice'], []),
    ('invalid-cluster-name', {'PROXMOX_CLUSTERS': 'prod/eu'}, ["cluster name 'prod/eu' is not valid"], []),
    ('spellings-differ-api-url', with_(HYPHENATED, PROXMOX_CLUSTER_DISASTER_RECOVERY_API_URL='https://other:8006'),
     ['PROXMOX_CLUSTER_disaster-recovery_API_URL', 'PROXMOX_CLUSTER_DISASTER_RECOVERY_API_URL', 'different'], []),
    ('spellings-differ-secret',
     with_(HYPHENATED, PROXMOX_CLUSTER_DISASTER_RECOVERY_TOKEN_SECRET=OTHER_SECRET),
     ['PROXMOX_CLUSTER_disaster-recovery_TOKEN_SECRET', 'PROXMOX_CLUSTER_DISASTER_RECOVERY_TOKEN_SECRET'],
     [SECRET_DR, OTHER_SECRET]),
    ('spellings-differ-plain-name', with_(one(), PROXMOX_CLUSTER_PRODUCTION_REGION='a',
                                          PROXMOX_CLUSTER_production_REGION='b'),
     ['PROXMOX_CLUSTER_production_REGION', 'PROXMOX_CLUSTER_PRODUCTION_REGION'], []),
    ('verify-ssl-not-a-bool', one(VERIFY_SSL='maybe'),
     ['PROXMOX_CLUSTER_production_VERIFY_SSL', 'true or false', 'maybe'], []),
    ('verify-seed-alias-not-a-bool', one(VERIFY='sometimes'), ['PROXMOX_CLUSTER_production_VERIFY ', 'sometimes'], []),
    ('ca-bundle-missing-file', one(CA_BUNDLE='/nonexistent/pmx-ca.pem'),
     ['PROXMOX_CLUSTER_production_CA_BUNDLE', '/nonexistent/pmx-ca.pem', 'does not exist'], []),
    ('api-url-http', one(API_URL='http://pve.example.com:8006'),
     ['PROXMOX_CLUSTER_production_API_URL', 'https'], []),
    ('api-url-bad-port', one(API_URL='https://pve.example.com:80o6'), ['invalid port'], []),
    ('api-url-with-path', one(API_URL='https://pve.example.com:8006/ui'), ['has a path'], []),
    ('api-url-second-bad', one(API_URL='https://a.example.com,ftp://b.example.com'), ['https', 'ftp://b'], []),
    ('timeout-zero', one(TIMEOUT='0'), ['PROXMOX_CLUSTER_production_TIMEOUT', 'positive'], []),
    ('timeout-not-a-number', one(TIMEOUT='soon'), ['PROXMOX_CLUSTER_production_TIMEOUT'], []),
    ('pattern-star', one(PATTERNS='prod-*,*'), ['PROXMOX_CLUSTER_production_PATTERNS', "'*'", 'PROXMOX_DEFAULT_CLUSTER'],
     []),
    ('pattern-with-space', one(PATTERNS='prod *'), ['PROXMOX_CLUSTER_production_PATTERNS', 'spaces'], []),
    ('default-cluster-unknown', with_(SEED, PROXMOX_DEFAULT_CLUSTER='nowhere'),
     ["default cluster 'nowhere'", 'PROXMOX_DEFAULT_CLUSTER', 'production, staging, disaster-recovery'], []),
    ('cache-ttl-not-a-number', with_(SEED, PROXMOX_CLIENT_CACHE_TTL='an hour'), ['PROXMOX_CLIENT_CACHE_TTL'], []),
    ('cache-ttl-negative', with_(SEED, PROXMOX_CLIENT_CACHE_TTL='-1'), ['PROXMOX_CLIENT_CACHE_TTL', '>= 0'], []),
    ('cache-ttl-alias-not-a-number', with_(SEED, PROXMOX_CLUSTER_CACHE_TTL='1.5'), ['CACHE_TTL'], []),
    ('prefix-map-entry-without-colon', with_(SEED, PROXMOX_CLUSTER_PATTERNS='prod-:production,stg-'),
     ['PROXMOX_CLUSTER_PATTERNS', 'prefix:cluster', "'stg-'"], []),
    ('prefix-map-entry-without-prefix', with_(SEED, PROXMOX_CLUSTER_PATTERNS=':production'),
     ['prefix:cluster'], []),
    ('prefix-map-entry-without-cluster', with_(SEED, PROXMOX_CLUSTER_PATTERNS='prod-:'), ['prefix:cluster'], []),
    ('prefix-map-unknown-cluster', with_(SEED, PROXMOX_CLUSTER_PATTERNS='prod-:prodution'),
     ['PROXMOX_CLUSTER_PATTERNS', "unknown cluster 'prodution'", 'production, staging, disaster-recovery'], []),
    # Legacy mode reads only PROXMOX_API_URL / _TOKEN_ID / _TOKEN_SECRET: the message must name those.
    ('legacy-without-secret', with_(LEGACY, PROXMOX_TOKEN_SECRET=None), ['PROXMOX_TOKEN_SECRET'],
     ['PROXMOX_CLUSTER_default_TOKEN_SECRET']),
    ('legacy-without-token-id', with_(LEGACY, PROXMOX_TOKEN_ID=None), ['PROXMOX_TOKEN_ID'],
     ['PROXMOX_CLUSTER_default_TOKEN_ID']),
    ('legacy-bad-token-id', with_(LEGACY, PROXMOX_TOKEN_ID='root@pam'), ['PROXMOX_TOKEN_ID'], [SECRET_PROD]),
]


@pytest.mark.parametrize('environ,needles,forbidden', [(e, n, f) for _, e, n, f in INVALID],
                         ids=[i for i, _, _, _ in INVALID])
def test_invalid_configuration(environ, needles, forbidden):
    with pytest.raises(ConfigError) as caught:
        load_config(environ=environ)
    message = str(caught.value)
    for needle in needles:
        assert needle in message
    # No message ever holds a secret value, whatever the row is about.
    for text in list(forbidden) + [SECRET_PROD, SECRET_STG, SECRET_DR, OTHER_SECRET]:
        assert text not in message


# ---------------------------------------------------------------------------------- sources and precedence

def write_env(path, variables, mode=0o600):
    path.write_text(''.join('%s=%s\n' % item for item in variables.items()))
    os.chmod(str(path), mode)
    return str(path)


# (id, process environment, .env file or None, explicit clusters or None, {path: expected})
PRECEDENCE = [
    ('env-only', one(REGION='env'), None, None, {'production.region': 'env'}),
    ('env-file-only', {}, one(REGION='file'), None, {'production.region': 'file'}),
    ('env-file-over-env', one(REGION='env', TIER='env-tier'), {'PROXMOX_CLUSTER_production_REGION': 'file'}, None,
     {'production.region': 'file', 'production.tier': 'env-tier'}),
    ('env-file-over-env-secret', one(), {'PROXMOX_CLUSTER_production_TOKEN_SECRET': OTHER_SECRET}, None,
     {'production.token_secret': OTHER_SECRET}),
    ('env-file-replaces-cluster-list', one(), dict(one('staging'), PROXMOX_CLUSTERS='staging'), None,
     {'names': ['staging']}),
    ('env-file-global-settings', with_(SEED, PROXMOX_DEFAULT_CLUSTER='staging', PROXMOX_CLIENT_CACHE_TTL='10'),
     {'PROXMOX_DEFAULT_CLUSTER': 'disaster-recovery', 'PROXMOX_CLIENT_CACHE_TTL': '20'}, None,
     {'default_cluster': 'disaster-recovery', 'cache_ttl': 20}),
    ('explicit-over-env-file', one(REGION='env'), {'PROXMOX_CLUSTER_production_REGION': 'file'},
     {'production': {'region': 'explicit'}}, {'production.region': 'explicit'}),
    ('explicit-over-env', one(), None,
     {'production': {'token_secret': OTHER_SECRET, 'verify_ssl': False, 'patterns': ['web-*'], 'timeout': 3}},
     {'production.token_secret': OTHER_SECRET, 'production.verify_ssl': False, 'production.patterns': ['web-*'],
      'production.timeout': 3.0, 'production.token_id': 'root@pam!ansible'}),
    ('explicit-false-string', one(), None, {'production': {'verify_ssl': 'no'}}, {'production.verify_ssl': False}),
    ('explicit-none-keeps-env', one(REGION='env'), None, {'production': {'region': None}},
     {'production.region': 'env'}),
    ('explicit-adds-cluster', one(), None,
     {'lab': {'api_url': ['https://a:8006', 'b'], 'token_id': 'u@pve!t', 'token_secret': OTHER_SECRET}},
     {'names': ['production', 'lab'], 'lab.api_urls': ['https://a:8006', 'https://b:8006'],
      'default_cluster': 'production'}),
    ('explicit-list-form', {}, None,
     [{'name': 'lab', 'api_url': 'https://a:8006', 'token_id': 'u@pve!t', 'token_secret': OTHER_SECRET}],
     {'names': ['lab'], 'lab.token_id': 'u@pve!t'}),
    ('explicit-only-hyphenated', {}, None,
     {'disaster-recovery': {'api_url': 'dr', 'token_id': 'u@pve!t', 'token_secret': OTHER_SECRET}},
     {'names': ['disaster-recovery'], 'disaster-recovery.api_url': 'https://dr:8006'}),
    ('explicit-over-env-upper-spelling', HYPHENATED_UPPER, None, {'disaster-recovery': {'region': 'x'}},
     {'disaster-recovery.region': 'x', 'disaster-recovery.token_secret': SECRET_DR}),
    # The .env file is a later source than the environment, whatever spelling each uses.
    ('env-file-over-env-other-spelling',
     with_(HYPHENATED, PROXMOX_CLUSTER_DISASTER_RECOVERY_TOKEN_SECRET=OTHER_SECRET,
           **{'PROXMOX_CLUSTER_disaster-recovery_TOKEN_SECRET': None}),
     {'PROXMOX_CLUSTER_disaster-recovery_TOKEN_SECRET': SECRET_DR}, None,
     {'disaster-recovery.token_secret': SECRET_DR}),
]


@pytest.mark.parametrize('environ,file_vars,explicit,expected', [p[1:] for p in PRECEDENCE],
                         ids=[p[0] for p in PRECEDENCE])
def test_precedence(tmp_path, environ, file_vars, explicit, expected):
    env_file = write_env(tmp_path / '.env', file_vars) if file_vars is not None else None
    config = load_config(environ=environ, env_file=env_file, clusters=explicit)
    for path, value in expected.items():
        assert pick(config, path) == value, path
    assert config.env_file == env_file


def test_explicit_default_cluster_and_ttl_win_over_variables():
    config = load_config(environ=with_(SEED, PROXMOX_DEFAULT_CLUSTER='staging', PROXMOX_CLIENT_CACHE_TTL='5'),
                         default_cluster='disaster-recovery', cache_ttl=0)
    assert config.default_cluster == 'disaster-recovery'
    assert config.cache_ttl == 0


def test_env_file_from_proxmox_env_file(tmp_path):
    path = write_env(tmp_path / 'lab.env', one('staging', REGION='file'))
    config = load_config(environ={'PROXMOX_ENV_FILE': path})
    assert config.names == ['staging']
    assert config.clusters['staging'].region == 'file'
    assert config.env_file == path


def test_env_file_argument_wins_over_proxmox_env_file(tmp_path):
    chosen = write_env(tmp_path / 'chosen.env', one('staging'))
    other = write_env(tmp_path / 'other.env', one('production'))
    config = load_config(environ={'PROXMOX_ENV_FILE': other}, env_file=chosen)
    assert config.names == ['staging']


def test_env_file_syntax(tmp_path):
    path = tmp_path / '.env'
    path.write_text('# a comment\n'
                    '\n'
                    'export PROXMOX_CLUSTERS=production\n'
                    'PROXMOX_CLUSTER_production_API_URL="https://pve.example.com:8006"\n'
                    "PROXMOX_CLUSTER_production_TOKEN_ID='root@pam!ansible'\n"
                    'PROXMOX_CLUSTER_production_TOKEN_SECRET=%s  # trailing comment\n'
                    'PROXMOX_CLUSTER_production_REGION = eu-west\n'
                    'NOT_OURS=ignored\n' % SECRET_PROD)
    os.chmod(str(path), 0o600)
    config = load_config(environ={}, env_file=str(path))
    cluster = config.clusters['production']
    assert cluster.api_url == 'https://pve.example.com:8006'
    assert cluster.token_id == 'root@pam!ansible'
    assert cluster.token_secret == SECRET_PROD
    assert cluster.region == 'eu-west'
    assert config.warnings == []


def test_env_file_malformed_line_is_named_not_shown(tmp_path):
    path = tmp_path / '.env'
    path.write_text('PROXMOX_CLUSTERS=production\n'
                    'PROXMOX_CLUSTER_production_API_URL=https://pve.example.com:8006\n'
                    'PROXMOX_CLUSTER_production_TOKEN_SECRET %s\n' % SECRET_PROD)
    os.chmod(str(path), 0o600)
    with pytest.raises(ConfigError) as caught:
        load_config(environ={}, env_file=str(path))
    message = str(caught.value)
    assert str(path) in message
    assert re.search(r'\bline 3\b', message)
    assert SECRET_PROD not in message
    assert 'TOKEN_SECRET' not in message


def test_env_file_several_malformed_lines(tmp_path):
    path = tmp_path / '.env'
    path.write_text('this is not valid\nPROXMOX_CLUSTERS=production\nneither is this\n')
    os.chmod(str(path), 0o600)
    with pytest.raises(ConfigError) as caught:
        load_config(environ={}, env_file=str(path))
    assert re.search(r'\bline 1, 3\b', str(caught.value))
    assert 'this is not valid' not in str(caught.value)
    assert 'neither is this' not in str(caught.value)


@pytest.mark.parametrize('mode,warned', [(0o600, False), (0o400, False), (0o640, True), (0o644, True), (0o604, True)])
def test_env_file_readable_by_others_warns(tmp_path, mode, warned):
    path = write_env(tmp_path / '.env', one(), mode=mode)
    config = load_config(environ={}, env_file=path)
    assert config.names == ['production']
    if warned:
        assert len(config.warnings) == 1
        assert path in config.warnings[0]
        assert 'chmod 600' in config.warnings[0]
        assert SECRET_PROD not in config.warnings[0]
    else:
        assert config.warnings == []


def test_env_file_missing(tmp_path):
    missing = str(tmp_path / 'nope.env')
    with pytest.raises(ConfigError) as caught:
        load_config(environ=one(), env_file=missing)
    assert missing in str(caught.value)
    assert 'does not exist' in str(caught.value)


def test_env_file_missing_from_proxmox_env_file(tmp_path):
    missing = str(tmp_path / 'nope.env')
    with pytest.raises(ConfigError) as caught:
        load_config(environ=dict(one(), PROXMOX_ENV_FILE=missing))
    assert 'PROXMOX_ENV_FILE' in str(caught.value)


@pytest.mark.parametrize('explicit,needle', [
    ({'production': {'api_url': 'https://a', 'password': 'x'}}, 'unknown setting(s) password'),
    ([{'api_url': 'https://a'}], 'with a name'),
    (['production'], 'with a name'),
    ('production', 'dictionary of cluster name'),
    ({'production': 'https://a'}, 'clusters.production must be a dictionary'),
])
def test_invalid_explicit_clusters(explicit, needle):
    with pytest.raises(ConfigError) as caught:
        load_config(environ={}, clusters=explicit)
    assert needle in str(caught.value)


# --------------------------------------------------------------------------------------- secrets stay hidden

def test_repr_and_public_never_show_the_secret():
    config = load_config(environ=SEED)
    for text in (repr(config), str(config), repr(config.clusters), repr(list(config.clusters.values()))):
        for secret in (SECRET_PROD, SECRET_STG, SECRET_DR):
            assert secret not in text
    assert 'pve-prod.example.com' in repr(config)  # the repr is still useful
    for cluster in config.clusters.values():
        public = cluster.public()
        assert 'token_secret' not in public
        assert cluster.token_secret not in repr(public)
        assert public['name'] == cluster.name
        assert public['token_id'] == cluster.token_id
        assert public['api_urls'] == cluster.api_urls


def test_public_is_a_copy():
    cluster = load_config(environ=SEED).clusters['production']
    public = cluster.public()
    public['patterns'].append('x-*')
    public['api_urls'].append('https://evil:8006')
    assert cluster.patterns == ['prod-*', '*-prod']
    assert cluster.api_urls == ['https://pve-prod.example.com:8006']


def test_registry_secrets():
    assert load_config(environ=SEED).secrets == [SECRET_PROD, SECRET_STG, SECRET_DR]
    assert load_config(environ=LEGACY).secrets == [SECRET_PROD]


@pytest.mark.parametrize('environ,clusters', [
    (one(), []),
    (one(VERIFY_SSL='false'), ['production']),
    (one(VERIFY='0'), ['production']),
    (with_(SEED, PROXMOX_CLUSTER_DISASTER_RECOVERY_VERIFY_SSL='no', PROXMOX_CLUSTER_staging_VERIFY='off'),
     ['staging', 'disaster-recovery']),
], ids=['on', 'off', 'off-seed-alias', 'two-off'])
def test_warning_when_verification_is_off(environ, clusters):
    config = load_config(environ=environ)
    assert len(config.warnings) == len(clusters)
    for name, warning in zip(clusters, config.warnings):
        assert "cluster '%s'" % name in warning
        assert 'CA_BUNDLE' in warning
        for secret in config.secrets:
            assert secret not in warning
