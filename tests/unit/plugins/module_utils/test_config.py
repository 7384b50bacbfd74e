"""load_config: the seed's variables, both spellings of a name, sources and their precedence, and the errors."""

import os
import re

import pytest

from ansible_collections.pmx.multicluster.plugins.module_utils.config import (
    DEFAULT_CACHE_TTL,
    DEFAULT_TIMEOUT,
    ClusterConfig,
    RegistryConfig,
    load_config,
)
from ansible_collections.pmx.multicluster.plugins.module_utils.errors import ConfigError

SECRET_PROD = 'a1b2c3d4-0000-4000-8000-prodprodprod'
SECRET_STG = 'a1b2c3d4-0000-4000-8000-stgstgstgstg'
SECRET_DR = 'a1b2c3d4-0000-4000-8000-drdrdrdrdrdr'
OTHER_SECRET = 'ffffffff-1111-4111-8111-otherotherot'
# What a CA bundle must hold at least (the TLS handshake checks the rest).
PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n'

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
    # legacy mode reads the seed's upstream variables too
    ('legacy-verify-seed-alias', with_(LEGACY, PROXMOX_VERIFY='false'), {
        'default.verify_ssl': False, 'default.verify': False}),
    ('legacy-verify-both-agree-as-booleans', with_(LEGACY, PROXMOX_VERIFY='1', PROXMOX_VERIFY_SSL='true'), {
        'default.verify_ssl': True}),
    ('legacy-guest-defaults', with_(LEGACY, PROXMOX_DEFAULT_NODE='pve2', PROXMOX_DEFAULT_STORAGE='ceph',
                                    PROXMOX_DEFAULT_BRIDGE='vmbr1'), {
        'default.default_node': 'pve2', 'default.default_storage': 'ceph', 'default.default_bridge': 'vmbr1'}),
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
    ('verify-and-verify-ssl-agree-as-booleans', one(VERIFY_SSL='1', VERIFY='true'), {'production.verify_ssl': True}),
    ('verify-and-verify-ssl-agree-off', one(VERIFY_SSL='off', VERIFY=' No'), {'production.verify_ssl': False}),
    ('verify-four-spellings-agree', with_(HYPHENATED, **{
        'PROXMOX_CLUSTER_disaster-recovery_VERIFY_SSL': 'yes', 'PROXMOX_CLUSTER_DISASTER_RECOVERY_VERIFY_SSL': 'TRUE',
        'PROXMOX_CLUSTER_disaster-recovery_VERIFY': 'on', 'PROXMOX_CLUSTER_DISASTER_RECOVERY_VERIFY': '1'}), {
        'disaster-recovery.verify_ssl': True}),
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
    ca.write_text(PEM)
    config = load_config(environ=one(CA_BUNDLE=str(ca)))
    cluster = config.clusters['production']
    assert cluster.ca_bundle == str(ca)
    assert cluster.verify == str(ca)
    assert cluster.verify_ssl is True


def test_ca_bundle_expands_home(tmp_path, monkeypatch):
    monkeypatch.setenv('HOME', str(tmp_path))
    (tmp_path / 'ca.pem').write_text(PEM)
    config = load_config(environ=one(CA_BUNDLE='~/ca.pem'))
    assert config.clusters['production'].ca_bundle == str(tmp_path / 'ca.pem')


def test_ca_bundle_is_ignored_when_verification_is_off(tmp_path):
    ca = tmp_path / 'ca.pem'
    ca.write_text(PEM)
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
    ('pattern-star', one(PATTERNS='prod-*,*'),
     ['PROXMOX_CLUSTER_production_PATTERNS', "'*'", 'PROXMOX_DEFAULT_CLUSTER'], []),
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
    # VERIFY_SSL and the seed's VERIFY are one setting: different values (as booleans) are an error naming both
    ('verify-and-verify-ssl-differ', one(VERIFY_SSL='true', VERIFY='0'),
     ['PROXMOX_CLUSTER_production_VERIFY_SSL and PROXMOX_CLUSTER_production_VERIFY are both set, with different '
      'values; keep one of them (in the environment)'], []),
    ('verify-and-verify-ssl-differ-across-spellings',
     with_(HYPHENATED, **{'PROXMOX_CLUSTER_disaster-recovery_VERIFY_SSL': 'yes',
                          'PROXMOX_CLUSTER_DISASTER_RECOVERY_VERIFY': 'off'}),
     ['PROXMOX_CLUSTER_disaster-recovery_VERIFY_SSL and PROXMOX_CLUSTER_DISASTER_RECOVERY_VERIFY are both set'], []),
    ('verify-and-verify-ssl-one-not-a-bool', one(VERIFY_SSL='true', VERIFY='maybe'),
     ['PROXMOX_CLUSTER_production_VERIFY must be true or false', 'maybe'], []),
    ('legacy-verify-and-verify-ssl-differ', with_(LEGACY, PROXMOX_VERIFY='false', PROXMOX_VERIFY_SSL='true'),
     ['PROXMOX_VERIFY_SSL and PROXMOX_VERIFY are both set, with different values'], []),
    # A hyphenated name: the hint names the upper-case spelling too, since a shell such as dash drops the other
    ('hyphenated-without-api-url', with_(HYPHENATED, **{'PROXMOX_CLUSTER_disaster-recovery_API_URL': None}),
     ["cluster 'disaster-recovery' has no API URL: set PROXMOX_CLUSTER_disaster-recovery_API_URL=https://host:8006 "
      "(or PROXMOX_CLUSTER_DISASTER_RECOVERY_API_URL: shells such as dash drop variables whose names contain '-')"],
     []),
    ('hyphenated-without-token-id', with_(HYPHENATED, **{'PROXMOX_CLUSTER_disaster-recovery_TOKEN_ID': None}),
     ['PROXMOX_CLUSTER_disaster-recovery_TOKEN_ID=user@realm!tokenname',
      'PROXMOX_CLUSTER_DISASTER_RECOVERY_TOKEN_ID', 'dash'], []),
    ('hyphenated-without-token-secret', with_(HYPHENATED, **{'PROXMOX_CLUSTER_disaster-recovery_TOKEN_SECRET': None}),
     ['PROXMOX_CLUSTER_disaster-recovery_TOKEN_SECRET', 'PROXMOX_CLUSTER_DISASTER_RECOVERY_TOKEN_SECRET', 'dash'], []),
    ('hyphenated-listed-without-any-variable', with_(SEED, PROXMOX_CLUSTERS='production,backup-site'),
     ['PROXMOX_CLUSTER_backup-site_API_URL', 'PROXMOX_CLUSTER_BACKUP_SITE_API_URL', 'dash'], []),
    ('dotted-without-api-url', {'PROXMOX_CLUSTERS': 'pve.lab'},
     ['PROXMOX_CLUSTER_pve.lab_API_URL', 'PROXMOX_CLUSTER_PVE_LAB_API_URL', "contain '.'"], []),
    ('plain-name-without-api-url-no-spelling-hint', one(API_URL=None), ['PROXMOX_CLUSTER_production_API_URL'],
     ['dash', 'PRODUCTION']),
    # An API URL with credentials: refused, naming the variable, showing only scheme://host:port
    ('api-url-with-credentials', one(API_URL='https://admin:Pa55-w0rd@pve.example.com:8006'),
     ["PROXMOX_CLUSTER_production_API_URL: the API URL https://pve.example.com:8006 has a user name or password in "
      "it", 'PROXMOX_CLUSTER_production_TOKEN_ID / PROXMOX_CLUSTER_production_TOKEN_SECRET'], ['admin', 'Pa55']),
    ('api-url-with-credentials-no-scheme', one(API_URL='admin:Pa55-w0rd@pve.example.com'),
     ['the API URL https://pve.example.com has a user name or password'], ['admin', 'Pa55']),
    ('api-url-with-credentials-http', one(API_URL='http://admin:Pa55-w0rd@pve.example.com:8006'),
     ['http://pve.example.com:8006 has a user name or password'], ['admin', 'Pa55']),
    ('api-url-with-credentials-second-of-two', one(API_URL='https://a.example.com,https://admin:Pa55@b.example.com'),
     ['https://b.example.com has a user name or password'], ['admin', 'Pa55']),
    ('api-url-with-credentials-password-with-separators',
     one(API_URL='https://admin:Pa5/5,w0rd?x#y@pve.example.com:8006'),
     ['https://pve.example.com:8006 has a user name or password'], ['admin', 'Pa5', 'w0rd']),
    ('api-url-with-credentials-and-bad-port', one(API_URL='https://admin:Pa55@pve.example.com:80o6'),
     ['https://pve.example.com has a user name or password'], ['admin', 'Pa55', '80o6']),
    ('api-url-with-user-only', one(API_URL='https://root@pam@pve.example.com:8006'),
     ['https://pve.example.com:8006 has a user name or password'], ['root@pam']),
    ('api-url-with-query', one(API_URL='https://pve.example.com:8006/?ticket=Pa55-w0rd'),
     ['PROXMOX_CLUSTER_production_API_URL: https://pve.example.com:8006... has a query or fragment'], ['Pa55']),
    ('api-url-with-fragment', one(API_URL='https://pve.example.com:8006#Pa55'), ['has a query or fragment'],
     ['Pa55']),
    ('api-url-unparseable', one(API_URL='https://[fd00::1'), ['PROXMOX_CLUSTER_production_API_URL', 'not a valid URL'],
     []),
    # A line break inside a secret cannot be meant and would make the HTTP library print the header
    ('token-secret-with-inner-newline', one(TOKEN_SECRET='a1b2c3d4\n0000'),
     ['PROXMOX_CLUSTER_production_TOKEN_SECRET contains a line break'], ['a1b2c3d4', '0000']),
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
# Setting by setting, later wins: the .env file < the environment < explicit clusters.
PRECEDENCE = [
    ('env-only', one(REGION='env'), None, None, {'production.region': 'env'}),
    ('env-file-only', {}, one(REGION='file'), None, {'production.region': 'file'}),
    ('env-over-env-file', one(REGION='env', TIER='env-tier'),
     {'PROXMOX_CLUSTER_production_REGION': 'file', 'PROXMOX_CLUSTER_production_PATTERNS': 'file-*'}, None,
     {'production.region': 'env', 'production.tier': 'env-tier', 'production.patterns': ['file-*']}),
    ('env-over-env-file-secret', one(), {'PROXMOX_CLUSTER_production_TOKEN_SECRET': OTHER_SECRET}, None,
     {'production.token_secret': SECRET_PROD}),
    ('env-cluster-list-over-env-file', one(), dict(one('staging'), PROXMOX_CLUSTERS='staging'), None,
     {'names': ['production']}),
    ('env-file-completes-the-env', {'PROXMOX_CLUSTERS': 'staging', 'PROXMOX_CLUSTER_staging_REGION': 'env'},
     one('staging', REGION='file'), None, {'names': ['staging'], 'staging.region': 'env',
                                           'staging.token_secret': SECRET_PROD}),
    ('env-global-settings-over-env-file', with_(SEED, PROXMOX_DEFAULT_CLUSTER='staging', PROXMOX_CLIENT_CACHE_TTL='10'),
     {'PROXMOX_DEFAULT_CLUSTER': 'disaster-recovery', 'PROXMOX_CLIENT_CACHE_TTL': '20'}, None,
     {'default_cluster': 'staging', 'cache_ttl': 10}),
    ('env-older-ttl-name-over-env-file', with_(SEED, PROXMOX_CLUSTER_CACHE_TTL='5'),
     {'PROXMOX_CLIENT_CACHE_TTL': '20'}, None, {'cache_ttl': 5}),
    ('env-prefix-map-over-env-file', with_(SEED, PROXMOX_CLUSTER_PATTERNS='web-:staging'),
     {'PROXMOX_CLUSTER_PATTERNS': 'web-:production'}, None, {'prefix_patterns': [('web-', 'staging')]}),
    ('empty-env-value-is-unset', one(REGION=''), {'PROXMOX_CLUSTER_production_REGION': 'file'}, None,
     {'production.region': 'file'}),
    ('explicit-over-env-and-env-file', one(REGION='env'), {'PROXMOX_CLUSTER_production_REGION': 'file'},
     {'production': {'region': 'explicit'}}, {'production.region': 'explicit'}),
    ('explicit-over-env-file', {}, one(REGION='file'), {'production': {'region': 'explicit'}},
     {'production.region': 'explicit', 'production.token_secret': SECRET_PROD}),
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
    # The environment wins whatever spelling each source uses (a shell can export only the upper-case one).
    ('env-over-env-file-other-spelling',
     with_(HYPHENATED, PROXMOX_CLUSTER_DISASTER_RECOVERY_TOKEN_SECRET=OTHER_SECRET,
           **{'PROXMOX_CLUSTER_disaster-recovery_TOKEN_SECRET': None}),
     {'PROXMOX_CLUSTER_disaster-recovery_TOKEN_SECRET': SECRET_DR}, None,
     {'disaster-recovery.token_secret': OTHER_SECRET}),
    ('env-verify-over-env-file-verify-ssl', one(VERIFY='0'), {'PROXMOX_CLUSTER_production_VERIFY_SSL': 'true'}, None,
     {'production.verify_ssl': False}),
    ('legacy-env-over-env-file', LEGACY, with_(LEGACY, PROXMOX_API_URL='https://file.example.com',
                                                PROXMOX_DEFAULT_NODE='pve2'), None,
     {'default.api_url': 'https://pve.example.com:8006', 'default.default_node': 'pve2'}),
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


# ------------------------------------------------------------------- the environment shadowing the .env file

def write_env_text(path, text, mode=0o600):
    path.write_text(text)
    os.chmod(str(path), mode)
    return str(path)


def shadow_warnings(config):
    return [w for w in config.warnings if 'the environment' in w]


# (id, process environment, .env file, names each warning must hold (one list per warning), values never shown)
SHADOWING = [
    ('same-value-no-warning', one(REGION='eu'), one(REGION='eu'), [], []),
    ('env-only-no-warning', one(REGION='eu'), {'PROXMOX_CLUSTERS': 'production'}, [], []),
    ('different-value', one(REGION='env-region'), one(REGION='file-region'),
     [['PROXMOX_CLUSTER_production_REGION is set in the environment and in the env file',
       "with different values; the environment's value is used"]], ['env-region', 'file-region']),
    ('different-secret', one(), one(TOKEN_SECRET=OTHER_SECRET),
     [['PROXMOX_CLUSTER_production_TOKEN_SECRET is set in the environment']], [SECRET_PROD, OTHER_SECRET]),
    ('two-settings', one(REGION='a', TIER='b'), one(REGION='c', TIER='d'),
     [['PROXMOX_CLUSTER_production_REGION'], ['PROXMOX_CLUSTER_production_TIER']], []),
    ('cluster-list', one(clusters='production'), dict(one(), PROXMOX_CLUSTERS='production,staging'),
     [['PROXMOX_CLUSTERS is set in the environment']], []),
    ('other-spelling-different-value',
     with_(HYPHENATED_UPPER, PROXMOX_CLUSTER_DISASTER_RECOVERY_API_URL='https://env-dr.example.com:8006'), HYPHENATED,
     [['PROXMOX_CLUSTER_DISASTER_RECOVERY_API_URL (in the environment) and '
       'PROXMOX_CLUSTER_disaster-recovery_API_URL (in the env file']], ['env-dr', 'dr.example.com']),
    ('other-spelling-same-value', HYPHENATED_UPPER, HYPHENATED, [], []),
    ('verify-same-as-booleans', one(VERIFY='1'), one(VERIFY_SSL='true'), [], []),
    ('verify-different', one(VERIFY='0'), one(VERIFY_SSL='true'),
     [['PROXMOX_CLUSTER_production_VERIFY (in the environment) and PROXMOX_CLUSTER_production_VERIFY_SSL']], []),
    ('unread-variable-no-warning', dict(one(), PROXMOX_CLUSTER_retired_REGION='a'),
     dict(one(), PROXMOX_CLUSTER_retired_REGION='b'), [], []),
    ('default-cluster', with_(SEED, PROXMOX_DEFAULT_CLUSTER='staging'),
     with_(SEED, PROXMOX_DEFAULT_CLUSTER='production'), [['PROXMOX_DEFAULT_CLUSTER']], []),
]


@pytest.mark.parametrize('environ,file_vars,expected,hidden', [r[1:] for r in SHADOWING],
                         ids=[r[0] for r in SHADOWING])
def test_environment_shadowing_the_env_file_warns_by_name(tmp_path, environ, file_vars, expected, hidden):
    path = write_env(tmp_path / '.env', file_vars)
    warnings = shadow_warnings(load_config(environ=environ, env_file=path))
    assert len(warnings) == len(expected), warnings
    for warning, needles in zip(warnings, expected):
        for needle in needles + [path]:
            assert needle in warning
        for value in hidden + [SECRET_PROD, SECRET_STG, SECRET_DR, OTHER_SECRET]:
            assert value not in warning


def test_shadowing_warning_in_full(tmp_path):
    path = write_env(tmp_path / '.env', one(REGION='file-region'))
    config = load_config(environ={'PROXMOX_CLUSTER_production_REGION': 'env-region'}, env_file=path)
    assert config.clusters['production'].region == 'env-region'
    assert config.warnings == [
        "PROXMOX_CLUSTER_production_REGION is set in the environment and in the env file %s, with different values; "
        "the environment's value is used (unset the variable or make the two agree)" % path]


# ------------------------------------------------------------------------- a key set twice in one .env file

# (id, .env text, needles of the error or None when the file is fine)
TWICE = [
    ('same-value', 'PROXMOX_CLUSTER_production_REGION=eu\nPROXMOX_CLUSTER_production_REGION=eu\n', None),
    ('same-value-quoted-once', 'PROXMOX_CLUSTER_production_REGION=eu\nPROXMOX_CLUSTER_production_REGION="eu"\n',
     None),
    ('different-values', 'PROXMOX_CLUSTER_production_REGION=eu\n# moved\n\nPROXMOX_CLUSTER_production_REGION=us\n',
     ['sets PROXMOX_CLUSTER_production_REGION (lines 1, 4) more than once, with different values; keep one line']),
    ('three-times', 'PROXMOX_CLUSTER_production_TIER=a\nPROXMOX_CLUSTER_production_TIER=a\n'
                    'PROXMOX_CLUSTER_production_TIER=b\n', ['PROXMOX_CLUSTER_production_TIER (lines 1, 2, 3)']),
    ('secret-twice', 'PROXMOX_CLUSTER_production_TOKEN_SECRET=%s\nexport PROXMOX_CLUSTER_production_TOKEN_SECRET=%s\n'
                     % (SECRET_PROD, OTHER_SECRET), ['PROXMOX_CLUSTER_production_TOKEN_SECRET (lines 1, 2, 6)']),
    ('two-keys', 'PROXMOX_CLUSTER_production_REGION=a\nPROXMOX_CLUSTER_production_TIER=x\n'
                 'PROXMOX_CLUSTER_production_REGION=b\nPROXMOX_CLUSTER_production_TIER=y\n',
     ['PROXMOX_CLUSTER_production_REGION (lines 1, 3); PROXMOX_CLUSTER_production_TIER (lines 2, 4)']),
    ('other-spellings-are-not-the-same-key',
     'PROXMOX_CLUSTER_production_REGION=a\nPROXMOX_CLUSTER_PRODUCTION_REGION=b\n',
     ['PROXMOX_CLUSTER_production_REGION and PROXMOX_CLUSTER_PRODUCTION_REGION are both set']),
    ('not-ours', 'EDITOR=vi\nEDITOR=nano\n', None),
]


@pytest.mark.parametrize('text,needles', [r[1:] for r in TWICE], ids=[r[0] for r in TWICE])
def test_key_set_twice_in_the_env_file(tmp_path, text, needles):
    base = ''.join('%s=%s\n' % item for item in one().items())
    path = write_env_text(tmp_path / '.env', text + base)
    if needles is None:
        assert load_config(environ={}, env_file=path).names == ['production']
        return
    with pytest.raises(ConfigError) as caught:
        load_config(environ={}, env_file=path)
    message = str(caught.value)
    for needle in needles + [path]:
        assert needle in message
    for value in ('=eu', '=us', '=a\n', SECRET_PROD, OTHER_SECRET):
        assert value not in message


# --------------------------------------------------------------------------------- ${VAR} in the .env file

# (id, process environment, .env lines, expected region of production)
REFERENCES = [
    ('from-the-file', {}, ['SITE=eu', 'PROXMOX_CLUSTER_production_REGION=${SITE}-west'], 'eu-west'),
    ('from-the-environment', {'SITE': 'us'}, ['PROXMOX_CLUSTER_production_REGION=${SITE}-east'], 'us-east'),
    ('environment-wins', {'SITE': 'us'}, ['SITE=eu', 'PROXMOX_CLUSTER_production_REGION=${SITE}'], 'us'),
    ('default', {}, ['PROXMOX_CLUSTER_production_REGION=${NOPE:-fallback}'], 'fallback'),
    ('unset-is-empty', {}, ['PROXMOX_CLUSTER_production_REGION=x${NOPE}y'], 'xy'),
    ('only-lines-above', {}, ['PROXMOX_CLUSTER_production_REGION=x${LATER}', 'LATER=1'], 'x'),
    ('chained', {}, ['A=a', 'B=${A}b', 'PROXMOX_CLUSTER_production_REGION="${B}c"'], 'abc'),
    ('redefined-above', {}, ['A=1', 'A=2', 'PROXMOX_CLUSTER_production_REGION=${A}', 'A=3'], '2'),
    ('proxmox-variable', {}, ['PROXMOX_CLUSTER_production_TIER=gold', 'PROXMOX_CLUSTER_production_REGION=${'
                                                                         'PROXMOX_CLUSTER_production_TIER}'], 'gold'),
    ('single-quoted-too', {}, ['A=1', "PROXMOX_CLUSTER_production_REGION='${A}'"], '1'),
]


@pytest.mark.parametrize('environ,lines,region', [r[1:] for r in REFERENCES], ids=[r[0] for r in REFERENCES])
def test_references_in_the_env_file(tmp_path, environ, lines, region):
    base = ''.join('%s=%s\n' % item for item in one().items())
    path = write_env_text(tmp_path / '.env', base + '\n'.join(lines) + '\n')
    assert load_config(environ=environ, env_file=path).clusters['production'].region == region


def test_references_resolve_as_python_dotenv_load_dotenv(tmp_path, monkeypatch):
    """The same values as python-dotenv's own reading without override (load_dotenv's), for PROXMOX_ keys."""
    from dotenv.main import DotEnv

    from ansible_collections.pmx.multicluster.plugins.module_utils.config import read_env_file
    monkeypatch.setenv('PMX_TEST_SITE', 'from-env')
    text = ('A=1\nB=${A}2\nPROXMOX_X=${B}3\nPROXMOX_Y="${PMX_TEST_SITE}/${A:-d}/${NONE:-d}"\nPMX_TEST_SITE=file\n'
            "PROXMOX_Z='${PMX_TEST_SITE}'\nKEYONLY\nPROXMOX_W=${KEYONLY:-d}\nPROXMOX_V\nPROXMOX_U=${PROXMOX_X}\n")
    path = write_env_text(tmp_path / '.env', text)
    expected = dict((k, '' if v is None else v) for k, v in DotEnv(path, override=False).dict().items()
                    if k.startswith('PROXMOX_'))
    values, dummy = read_env_file(path)
    assert dict(values) == expected
    assert values['PROXMOX_Y'] == 'from-env/1/d'


# ---------------------------------------------------------------------- the .env reader and python-dotenv

# Lines whose reading a fast path could get wrong; each must give what python-dotenv's parser gives.
DOTENV_LINES = [
    'A=1', 'export B=2', 'export  B2 =3', 'export=4', 'export =5', 'exportC=6', 'D= #comment', 'E=#value',
    'F=a # comment', 'G=a#b', 'H= a b  ', 'I=', 'J', '  K=1', '\tL=\t1\t', 'M = 2', 'N="double # quoted"',
    "O='single # quoted'", 'P="a\\nb"', "Q='a\\'b'", 'R="x" # c', 'S="x"y', 'T="open', 'U=\'open', 'V=it\'s',
    'W=é', 'X="é"', '# comment "with quotes\'', '   ', '', 'bad line', '=nokey', "'quoted key'=1", 'Y=${A}',
    'Z="multi\nline"', "AA='multi\n\nlines'", 'AB="a\\\\"', 'AC=\\"', 'AD=a\fb', 'AE=1\r', 'AF="x"\t#c',
    'AG=  "spaced"  ', 'AH="unterminated\nAI=1', 'AJ=a\x0bb', 'AK=\u00a0x', 'AL="x\\"y"',
]


def dotenv_reading(text):
    import io

    from dotenv.parser import parse_stream
    bindings = list(parse_stream(io.StringIO(text)))
    return [(b.key, b.value) for b in bindings if b.key is not None and not b.error], sum(b.error for b in bindings)


@pytest.mark.parametrize('newline', ['\n', '\r\n', '\r'], ids=['lf', 'crlf', 'cr'])
def test_env_reader_reads_as_python_dotenv(newline):
    from ansible_collections.pmx.multicluster.plugins.module_utils.config import scan_env_text
    texts = [line + newline for line in DOTENV_LINES] + [newline.join(DOTENV_LINES),
                                                         newline.join(reversed(DOTENV_LINES)) + newline]
    for text in texts:
        bindings, bad = scan_env_text(text)
        assert ([(k, v) for k, v, dummy in bindings], len(bad)) == dotenv_reading(text), repr(text)


def test_env_reader_line_numbers():
    from ansible_collections.pmx.multicluster.plugins.module_utils.config import scan_env_text
    text = 'A=1\n\n# c\nB="two\nlines"\nC=3\n\nbad line\r\nD=4\rE=5\n'
    bindings, bad = scan_env_text(text)
    assert [(k, line) for k, dummy, line in bindings] == [('A', 1), ('B', 4), ('C', 6), ('D', 9), ('E', 10)]
    assert bad == [8]


# --------------------------------------------------------------------------- a large .env file loads fast

def test_large_env_file_loads_fast(tmp_path):
    """10,000 lines the collection does not read (unquoted, quoted, comments, references) beside the real ones."""
    import statistics
    import time
    lines = []
    for n in range(10000):
        kind = n % 10
        if kind == 0:
            lines.append('# section %d' % n)
        elif kind == 1:
            lines.append('QUOTED_%05d="a quoted value # not a comment"' % n)
        elif kind == 2:
            lines.append('export EXPORTED_%05d=value' % n)
        elif kind == 3:
            lines.append('REFERENCE_%05d=${OTHER_%05d}/path' % (n, n - 1))
        else:
            lines.append('OTHER_%05d=some-value-%d  # comment' % (n, n))
    path = write_env_text(tmp_path / '.env', '\n'.join(lines + ['%s=%s' % item for item in SEED.items()]) + '\n')
    times = []
    for dummy in range(7):
        start = time.perf_counter()
        config = load_config(environ={}, env_file=path)
        times.append(time.perf_counter() - start)
    assert config.names == ['production', 'staging', 'disaster-recovery']
    median = statistics.median(times) * 1000
    print('\nload_config of a .env file with 10,000 unrelated lines: median %.1f ms (min %.1f ms) of 7 loads'
          % (median, min(times) * 1000))
    assert median < 100


# ----------------------------------------------------------------- whitespace around a secret, id or URL

def env_line(key, value):
    return '%s="%s"\n' % (key, value.replace('\n', '\\n').replace('"', '\\"'))


# (id, how: 'env-file' / 'environment' / 'clusters', setting, value given, the name the warning uses)
WHITESPACE = [
    ('env-file-secret-quoted-newline', 'env-file', 'token_secret', SECRET_PROD + '\n',
     'PROXMOX_CLUSTER_production_TOKEN_SECRET'),
    ('env-file-secret-spaces', 'env-file', 'token_secret', '  %s\t' % SECRET_PROD,
     'PROXMOX_CLUSTER_production_TOKEN_SECRET'),
    ('environment-secret-newline', 'environment', 'token_secret', SECRET_PROD + '\n',
     'PROXMOX_CLUSTER_production_TOKEN_SECRET'),
    ('environment-secret-crlf', 'environment', 'token_secret', SECRET_PROD + '\r\n',
     'PROXMOX_CLUSTER_production_TOKEN_SECRET'),
    # ansible-vault encrypt_string of piped input (echo secret | ansible-vault encrypt_string) keeps the newline
    ('clusters-option-secret-from-vault', 'clusters', 'token_secret', SECRET_PROD + '\n',
     'clusters.production.token_secret'),
    ('env-file-token-id', 'env-file', 'token_id', 'root@pam!ansible \n', 'PROXMOX_CLUSTER_production_TOKEN_ID'),
    ('clusters-option-token-id', 'clusters', 'token_id', '\troot@pam!ansible', 'clusters.production.token_id'),
    ('env-file-api-url', 'env-file', 'api_url', 'https://pve.example.com:8006\n',
     'PROXMOX_CLUSTER_production_API_URL'),
    ('clusters-option-api-url-list', 'clusters', 'api_url', ['https://pve.example.com:8006\n'],
     'clusters.production.api_url'),
]
EXPECTED = {'token_secret': SECRET_PROD, 'token_id': 'root@pam!ansible', 'api_url': 'https://pve.example.com:8006'}


@pytest.mark.parametrize('how,setting,value,name', [r[1:] for r in WHITESPACE], ids=[r[0] for r in WHITESPACE])
def test_surrounding_whitespace_is_stripped_with_a_warning(tmp_path, how, setting, value, name):
    suffix = setting.upper()
    key = 'PROXMOX_CLUSTER_production_' + suffix
    environ, env_file, clusters = one(), None, None
    if how == 'env-file':
        environ = {}
        env_file = write_env_text(tmp_path / '.env', ''.join(env_line(k, value if k == key else v)
                                                             for k, v in one().items()))
    elif how == 'environment':
        environ = one(**{suffix: value})
    else:
        clusters = {'production': {setting: value}}
    config = load_config(environ=environ, env_file=env_file, clusters=clusters)
    cluster = config.clusters['production']
    assert getattr(cluster, setting) == EXPECTED[setting]
    assert config.secrets == [SECRET_PROD]
    (warning,) = config.warnings
    assert warning.startswith(name + ' starts or ends with whitespace')
    assert 'it was removed' in warning
    assert SECRET_PROD not in warning and 'root@pam' not in warning and 'pve.example.com' not in warning


def test_a_stripped_secret_makes_a_valid_header():
    """Unstripped, the HTTP library refuses the header and prints the secret; stripped, the header is valid."""
    from requests.exceptions import InvalidHeader
    from requests.utils import check_header_validity
    cluster = load_config(environ=one(TOKEN_SECRET=SECRET_PROD + '\n')).clusters['production']
    header = 'PVEAPIToken=%s=%s' % (cluster.token_id, cluster.token_secret)
    check_header_validity(('Authorization', header))
    with pytest.raises(InvalidHeader) as caught:
        check_header_validity(('Authorization', header + '\n'))
    assert SECRET_PROD in str(caught.value)  # why the secret must be stripped before any request


def test_no_warning_without_whitespace():
    assert load_config(environ=one()).warnings == []


# ------------------------------------------------------------------------------------------ the CA bundle

# (id, file content, what the message says)
BAD_CA_BUNDLES = [
    ('empty', b'', 'is empty'),
    ('only-blank-lines', b'\n \n', 'is empty'),
    ('der-certificate', b'\x30\x82\x03\x0b\x30\x82\x01\xf3\xa0\x03\x02\x01\x02', 'is not a PEM certificate file (it '
                                                                                  'has no -----BEGIN CERTIFICATE-----'),
    ('private-key', b'-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n', 'is not a PEM certificate'),
    ('text', b'see https://wiki.example.com/ca\n', 'is not a PEM certificate'),
]


@pytest.mark.parametrize('content,problem', [r[1:] for r in BAD_CA_BUNDLES], ids=[r[0] for r in BAD_CA_BUNDLES])
@pytest.mark.parametrize('how', ['variable', 'clusters'])
def test_bad_ca_bundle_has_its_own_message(tmp_path, content, problem, how):
    ca = tmp_path / 'ca.pem'
    ca.write_bytes(content)
    if how == 'variable':
        environ, clusters, name = one(CA_BUNDLE=str(ca)), None, 'PROXMOX_CLUSTER_production_CA_BUNDLE'
    else:
        environ, clusters, name = one(), {'production': {'ca_bundle': str(ca)}}, 'clusters.production.ca_bundle'
    with pytest.raises(ConfigError) as caught:
        load_config(environ=environ, clusters=clusters)
    message = str(caught.value)
    assert message.startswith('%s: the CA bundle %s %s' % (name, ca, problem))
    assert "point %s at the PEM file of the CA that signed the cluster's certificate" % name in message
    # The way out is the right CA, never turning verification off.
    assert 'VERIFY' not in message and 'false' not in message and 'off' not in message


@pytest.mark.parametrize('content', [PEM, 'subject=CN = lab\n' + PEM + PEM,
                                     '-----BEGIN TRUSTED CERTIFICATE-----\nMIIB\n-----END TRUSTED CERTIFICATE-----\n'],
                         ids=['one', 'bundle-with-text', 'trusted'])
def test_pem_ca_bundles_are_accepted(tmp_path, content):
    ca = tmp_path / 'ca.pem'
    ca.write_text(content)
    assert load_config(environ=one(CA_BUNDLE=str(ca))).clusters['production'].verify == str(ca)


def test_unreadable_ca_bundle(tmp_path, monkeypatch):
    ca = tmp_path / 'ca.pem'
    ca.write_text(PEM)
    ca.chmod(0)
    if os.geteuid() == 0:
        # root reads every file whatever its mode: the refusal a user meets is injected where config opens it.
        from ansible_collections.pmx.multicluster.plugins.module_utils import config as config_module

        def refuse(path, *args, **kwargs):
            raise PermissionError(13, 'Permission denied', str(path))
        monkeypatch.setattr(config_module, 'open', refuse, raising=False)
    with pytest.raises(ConfigError) as caught:
        load_config(environ=one(CA_BUNDLE=str(ca)))
    assert 'cannot read the CA bundle %s' % ca in str(caught.value)


def test_api_url_credentials_in_the_clusters_option():
    with pytest.raises(ConfigError) as caught:
        load_config(environ={}, clusters={'lab': {'api_url': ['https://a:8006', 'https://admin:Pa55@b:8006'],
                                                  'token_id': 'u@pve!t', 'token_secret': OTHER_SECRET}})
    message = str(caught.value)
    assert message.startswith('clusters.lab.api_url: the API URL https://b:8006 has a user name or password')
    assert 'clusters.lab.token_id / clusters.lab.token_secret' in message
    assert 'admin' not in message and 'Pa55' not in message


def test_env_reader_reads_random_texts_as_python_dotenv():
    """Random texts of tricky pieces: the same bindings and the same number of bad lines as python-dotenv."""
    import random

    from ansible_collections.pmx.multicluster.plugins.module_utils.config import scan_env_text
    pieces = ['A', 'B_1', 'export', 'export ', ' ', '\t', '=', '#', '  #c', "'", '"', '"ab"', "'c d'", '\\', 'x',
              '\n', '\n', '\r\n', '\r', '${A}', '\u00e9', '\f', ':', '.', '-']
    rng = random.Random(12)
    for dummy in range(3000):
        text = ''.join(rng.choice(pieces) for dummy2 in range(rng.randint(1, 16)))
        bindings, bad = scan_env_text(text)
        assert ([(k, v) for k, v, dummy3 in bindings], len(bad)) == dotenv_reading(text), repr(text)


def test_references_nested_too_deeply(tmp_path):
    base = ''.join('%s=%s\n' % item for item in one().items())
    chain = ''.join('V%d=${V%d}x\n' % (n, n - 1) for n in range(1, 3000))
    path = write_env_text(tmp_path / '.env', base + 'V0=a\n' + chain + 'PROXMOX_CLUSTER_production_REGION=${V2999}\n')
    with pytest.raises(ConfigError) as caught:
        load_config(environ={}, env_file=path)
    assert 'references nested too deeply' in str(caught.value)
    short = base + 'V0=a\n' + chain[:chain.index('V100=')] + 'PROXMOX_CLUSTER_production_REGION=${V99}\n'
    path = write_env_text(tmp_path / 'short.env', short)
    assert load_config(environ={}, env_file=path).clusters['production'].region == 'a' + 'x' * 99
