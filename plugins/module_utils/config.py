# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cluster configuration: from a ``.env`` file, the process environment and explicit values.

Sources, later wins, setting by setting: a ``.env`` file < the process environment < explicit values
(task options or an inventory file), the order of python-dotenv, docker compose and the seed. When the
environment sets a setting the ``.env`` file also sets, with another value (under the same name or
under the other spelling of a cluster name), a warning names both variables, never their values. An
empty value counts as unset. Variable names follow the seed::

    PROXMOX_CLUSTERS=production,staging,disaster-recovery
    PROXMOX_CLUSTER_<name>_API_URL / _TOKEN_ID / _TOKEN_SECRET / _VERIFY_SSL (or _VERIFY) / _CA_BUNDLE
    PROXMOX_CLUSTER_<name>_REGION / _TIER / _PATTERNS / _TIMEOUT / _DEFAULT_NODE ...
    PROXMOX_DEFAULT_CLUSTER, PROXMOX_CLIENT_CACHE_TTL, PROXMOX_CLUSTER_PATTERNS

``<name>`` is the cluster name as written or upper-cased with ``-`` as ``_``
(shells cannot export names with ``-``). The legacy single-cluster variables
``PROXMOX_API_URL`` / ``PROXMOX_TOKEN_ID`` / ``PROXMOX_TOKEN_SECRET`` (with ``PROXMOX_VERIFY_SSL``
or ``PROXMOX_VERIFY``, ``PROXMOX_CA_BUNDLE``, ``PROXMOX_TIMEOUT``, ``PROXMOX_DEFAULT_NODE``,
``PROXMOX_DEFAULT_STORAGE``, ``PROXMOX_DEFAULT_BRIDGE``) define one cluster named ``default``.

Within one source, two variables for one setting with different values (the two spellings of a
name, or ``VERIFY_SSL`` and ``VERIFY``, compared as booleans) are an error, and so is a ``.env`` key
set twice with different values. Only ``PROXMOX_`` values of the ``.env`` file are expanded; a
``${VAR}`` in one resolves as python-dotenv's ``load_dotenv`` resolves it: from the environment,
else from the lines above it in the file.

The settings and their values are in settings.py, the ``.env`` reader in envfile.py; their public names
are importable from here too. This file is pure Python: no Ansible import, so the MCP server shares it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ansible_collections.pmx.multicluster.plugins.module_utils.envfile import (
    HAS_DOTENV,
    EnvText,
    read_env_file,
    scan_env_text,
)
from ansible_collections.pmx.multicluster.plugins.module_utils.errors import ConfigError
from ansible_collections.pmx.multicluster.plugins.module_utils.settings import (
    CLUSTER_SETTINGS,
    DEFAULT_CACHE_TTL,
    DEFAULT_PORT,
    DEFAULT_TIMEOUT,
    EXPLICIT_KEYS,
    LEGACY_CLUSTER,
    LEGACY_SETTINGS,
    PREFIX,
    SETTINGS,
    STRIPPED,
    TOKEN_ID_RE,
    ClusterConfig,
    RegistryConfig,
    Setting,
    as_bool,
    as_list,
    cluster_option_spec,
    normalise_name,
    parse_api_url,
    refuse_credentials,
)

# What the front ends and tests import from here, wherever it is defined.
__all__ = [
    'CLUSTER_SETTINGS', 'DEFAULT_CACHE_TTL', 'DEFAULT_PORT', 'DEFAULT_TIMEOUT', 'EXPLICIT_KEYS', 'HAS_DOTENV',
    'LEGACY_CLUSTER', 'LEGACY_SETTINGS', 'PREFIX', 'SETTINGS', 'STRIPPED', 'ClusterConfig', 'EnvText',
    'RegistryConfig', 'Setting', 'cluster_option_spec', 'load_config', 'normalise_name', 'parse_api_url',
    'read_env_file', 'refuse_credentials', 'scan_env_text',
]

CLUSTER_NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]*$')
PEM_CERTIFICATE = re.compile(br'-----BEGIN (?:TRUSTED )?CERTIFICATE-----')
CONTROL_CHARACTER = re.compile(r'[\x00-\x1f\x7f]')
FINGERPRINT_RE = re.compile(r'^(?:[0-9A-Fa-f]{2}:){31}[0-9A-Fa-f]{2}$')


def normalise_fingerprint(text: str, what: str) -> str:
    """A SHA-256 certificate fingerprint as PVE writes it (``AA:BB:...``, 32 bytes); a ConfigError else."""
    value = text.strip()
    if re.fullmatch(r'[0-9A-Fa-f]{64}', value):
        value = ':'.join(value[i:i + 2] for i in range(0, 64, 2))
    if not FINGERPRINT_RE.match(value):
        raise ConfigError("%s must be the SHA-256 fingerprint of the cluster's API certificate, 32 hex bytes separated "
                          "by ':' (on a node: openssl x509 -in /etc/pve/local/pve-ssl.pem -noout -fingerprint "
                          "-sha256), got %r" % (what, value[:120]))
    return value.upper()


# --------------------------------------------------------------------------------- the variable sources

def _text(value, what):
    """A text setting as two sources are compared: without surrounding whitespace."""
    return str(value).strip()


def _boolean(value, what):
    """A boolean setting as two sources are compared (``1`` and ``true`` agree); an error if it is none."""
    return as_bool(value, what)


class _Sources:
    """The ``PROXMOX_`` variables of the environment and of the ``.env`` file: one setting at a time,
    the environment first, with the conflicts between and within them."""

    def __init__(self, environ_vars: Mapping[str, str], file_vars: Optional[Mapping[str, str]],
                 env_file: Optional[str]):
        self.layers = [('the environment', environ_vars)]
        if file_vars is not None:
            self.layers.append(('the env file %s' % env_file, file_vars))
        self.env_file = env_file
        self.warnings = OrderedDict()

    def get(self, names, compared=_text, first_wins=False) -> Tuple[Optional[str], Optional[str]]:
        """(value, variable) of the setting that ``names`` all spell (the preferred one first).

        Within one source, two of the names whose values differ (as ``compared`` gives them) are an error, unless
        ``first_wins``. The environment wins over the file, with a warning when the values differ.
        """
        chosen = []
        for where, variables in self.layers:
            found = [(variables[n], n) for n in names if variables.get(n, '') != '']
            if not found:
                continue
            if not first_wins:
                for value, var in found[1:]:
                    if compared(value, var) != compared(*found[0]):
                        raise ConfigError('%s and %s are both set, with different values; keep one of them (in %s)'
                                          % (found[0][1], var, where))
            chosen.append(found[0])
        if not chosen:
            return None, None
        if len(chosen) > 1 and compared(*chosen[0]) != compared(*chosen[1]):
            (dummy, env_var), (dummy2, file_var) = chosen
            if env_var == file_var:
                message = ('%s is set in the environment and in the env file %s, with different values; the '
                           "environment's value is used" % (env_var, self.env_file))
            else:
                message = ('%s (in the environment) and %s (in the env file %s) set the same setting with different '
                           "values; the environment's value is used" % (env_var, file_var, self.env_file))
            self.warnings[message + ' (unset the variable or make the two agree)'] = None
        return chosen[0]

    def cluster(self, name: str) -> Dict:
        """The raw settings of cluster ``name`` (``_sources``: setting -> variable it came from)."""
        spellings = list(OrderedDict.fromkeys([name, normalise_name(name)]))
        raw = {'_sources': {}}
        for key, suffixes in CLUSTER_SETTINGS.items():
            names = ['PROXMOX_CLUSTER_%s_%s' % (spelling, suffix) for suffix in suffixes for spelling in spellings]
            value, var = self.get(names, compared=_boolean if key == 'verify_ssl' else _text)
            if value is not None:
                raw[key] = value
                raw['_sources'][key] = var
        return raw

    def legacy(self) -> Optional[Dict]:
        """The raw settings of the legacy single cluster, or None without PROXMOX_API_URL."""
        if self.get([PREFIX + 'API_URL'])[0] is None:
            return None
        raw = {'_sources': {}, '_prefix': PREFIX}
        for key in LEGACY_SETTINGS:
            names = [PREFIX + suffix for suffix in CLUSTER_SETTINGS[key]]
            value, var = self.get(names, compared=_boolean if key == 'verify_ssl' else _text)
            if value is not None:
                raw[key] = value
                raw['_sources'][key] = var
        return raw


# ---------------------------------------------------------------------------------------- one cluster

def _strip(value, what: str, warnings: List[str]):
    """``value`` without surrounding whitespace (a list: each item), with a warning naming ``what``."""
    items = value if isinstance(value, (list, tuple)) else [value]
    if any(isinstance(item, str) and item != item.strip() for item in items):
        warnings.append('%s starts or ends with whitespace, such as a newline (a quoted "...\\n" in a .env file, or '
                        'ansible-vault encrypt_string fed by echo); it was removed. Remove it from the value to '
                        'silence this warning.' % what)
        if isinstance(value, (list, tuple)):
            return [item.strip() if isinstance(item, str) else item for item in value]
        return value.strip()
    return value


def _check_ca_bundle(path: str, what: str) -> None:
    """A ConfigError unless ``path`` is a readable file holding a PEM certificate."""
    if not os.path.isfile(path):
        raise ConfigError('%s: the CA bundle %s does not exist' % (what, path))
    todo = ("point %s at the PEM file of the CA that signed the cluster's certificate (a Proxmox VE node's "
            "own CA is /etc/pve/pve-root-ca.pem)" % what)
    try:
        with open(path, 'rb') as handle:
            data = handle.read()
    except OSError as exc:
        raise ConfigError('%s: cannot read the CA bundle %s (%s); make it readable, or %s'
                          % (what, path, exc.strerror or exc, todo))
    if not data.strip():
        raise ConfigError('%s: the CA bundle %s is empty; %s' % (what, path, todo))
    if not PEM_CERTIFICATE.search(data):
        raise ConfigError('%s: the CA bundle %s is not a PEM certificate file (it has no -----BEGIN CERTIFICATE----- '
                          'block); %s. A DER certificate converts with: openssl x509 -inform der -in ca.der -out ca.pem'
                          % (what, path, todo))


def _build_cluster(name: str, raw: Dict, warnings: List[str]) -> ClusterConfig:
    sources = raw.get('_sources', {})

    # The variable family to name in hints: legacy mode reads PROXMOX_API_URL etc.
    prefix = raw.get('_prefix') or 'PROXMOX_CLUSTER_%s_' % name

    def what(key):
        return sources.get(key) or "cluster '%s' %s" % (name, key)

    def missing(suffix, example=''):
        hint = '%s%s%s' % (prefix, suffix, example)
        if not raw.get('_prefix') and normalise_name(name) != name.upper():
            # A shell drops (or cannot export) a variable whose name has '-': offer the other spelling.
            hint += (' (or PROXMOX_CLUSTER_%s_%s: shells such as dash drop variables whose names contain %s)'
                     % (normalise_name(name), suffix, ' or '.join("'%s'" % c for c in '-.' if c in name)))
        return hint

    if not CLUSTER_NAME_RE.match(name):
        raise ConfigError("cluster name %r is not valid: use letters, digits, '-', '_' and '.'" % name)
    for key in STRIPPED:
        if raw.get(key) is not None:
            raw[key] = _strip(raw[key], what(key), warnings)
    if raw.get('_explicit'):
        token_hint = 'clusters.%s.token_id / clusters.%s.token_secret' % (name, name)
    else:
        token_hint = '%sTOKEN_ID / %sTOKEN_SECRET' % (prefix, prefix)
    for url in raw.get('api_url') if isinstance(raw.get('api_url'), (list, tuple)) else [raw.get('api_url')]:
        if url is not None:
            refuse_credentials(url, what('api_url'), token_hint)
    urls = as_list(raw.get('api_url'))
    if not urls:
        raise ConfigError("cluster '%s' has no API URL: set %s" % (name, missing('API_URL', '=https://host:8006')))
    api_urls = [parse_api_url(u, what('api_url'), token_hint) for u in urls]
    token_id = (raw.get('token_id') or '').strip()
    if not token_id:
        raise ConfigError("cluster '%s' has no API token id: set %s"
                          % (name, missing('TOKEN_ID', '=user@realm!tokenname')))
    if not TOKEN_ID_RE.match(token_id):
        shown = token_id
        if '=' in token_id:
            # PVE shows tokens as id=secret; never echo what follows '='.
            shown = token_id.split('=', 1)[0] + '=<hidden>'
        raise ConfigError("%s must have the form user@realm!tokenname (for example root@pam!ansible), got %r; "
                          "the secret goes in %sTOKEN_SECRET" % (what('token_id'), shown, prefix))
    secret = raw.get('token_secret')
    if not secret:
        raise ConfigError("cluster '%s' has no API token secret: set %s" % (name, missing('TOKEN_SECRET')))
    secret = str(secret)
    if CONTROL_CHARACTER.search(secret):
        raise ConfigError('%s contains a line break or another control character; a PVE token secret is one line '
                          '(a UUID such as 01234567-89ab-cdef-0123-456789abcdef): set it again' % what('token_secret'))
    verify = as_bool(raw['verify_ssl'], what('verify_ssl')) if raw.get('verify_ssl') not in (None, '') else True
    ca_bundle = raw.get('ca_bundle') or None
    if ca_bundle:
        ca_bundle = os.path.expanduser(str(ca_bundle))
        _check_ca_bundle(ca_bundle, what('ca_bundle'))
    timeout = raw.get('timeout')
    try:
        timeout = float(timeout) if timeout not in (None, '') else DEFAULT_TIMEOUT
        if timeout <= 0:
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError('%s must be a positive number of seconds, got %r' % (what('timeout'), timeout))
    patterns = as_list(raw.get('patterns'))
    for pattern in patterns:
        if pattern in ('*',) or re.search(r'\s', pattern):
            raise ConfigError("%s: pattern %r is not allowed: it must not contain spaces and must not match "
                              "every name (use PROXMOX_DEFAULT_CLUSTER for a catch-all)" % (what('patterns'), pattern))
    fingerprint = raw.get('fingerprint') or None
    if fingerprint:
        fingerprint = normalise_fingerprint(str(fingerprint), what('fingerprint'))
    if not verify:
        warnings.append("TLS certificate verification is off for cluster '%s': anyone on the network path "
                        "can read its token. Prefer %sCA_BUNDLE." % (name, prefix))
    return ClusterConfig(
        name=name, api_urls=api_urls, token_id=token_id, token_secret=secret, verify_ssl=verify,
        ca_bundle=ca_bundle if verify else None, timeout=timeout,
        region=raw.get('region') or None, tier=raw.get('tier') or None, patterns=patterns,
        default_node=raw.get('default_node') or None, default_storage=raw.get('default_storage') or None,
        default_bridge=raw.get('default_bridge') or None, fingerprint=fingerprint)


def _explicit_clusters(explicit) -> 'OrderedDict[str, Dict]':
    """Explicit cluster definitions: a dict name -> settings, or a list of dicts with ``name``."""
    if not explicit:
        return OrderedDict()
    if isinstance(explicit, Mapping):
        items = list(explicit.items())
    elif isinstance(explicit, (list, tuple)):
        items = []
        for entry in explicit:
            if not isinstance(entry, Mapping) or not entry.get('name'):
                raise ConfigError('each entry of clusters must be a dictionary with a name')
            items.append((entry['name'], dict((k, v) for k, v in entry.items() if k != 'name')))
    else:
        raise ConfigError('clusters must be a dictionary of cluster name -> settings')
    out = OrderedDict()
    for name, settings in items:
        settings = settings or {}
        if not isinstance(settings, Mapping):
            raise ConfigError("clusters.%s must be a dictionary of settings" % name)
        unknown = sorted(set(settings) - set(EXPLICIT_KEYS))
        if unknown:
            raise ConfigError('clusters.%s: unknown setting(s) %s; known: %s'
                              % (name, ', '.join(unknown), ', '.join(EXPLICIT_KEYS)))
        out[str(name)] = dict((k, v) for k, v in settings.items() if v is not None)
    return out


def load_config(environ: Optional[Mapping[str, str]] = None, env_file: Optional[str] = None,
                clusters: Any = None, default_cluster: Optional[str] = None,
                cache_ttl: Optional[int] = None) -> RegistryConfig:
    """Build the configuration from an optional ``.env`` file, the environment and explicit values.

    Setting by setting, the environment wins over the ``.env`` file and explicit values win over both.

    :param environ: the process environment (``os.environ`` when None).
    :param env_file: a ``.env`` file; when None, ``PROXMOX_ENV_FILE`` from the environment, if set.
    :param clusters: explicit cluster definitions (``{name: {api_url:..., token_id:...}}``); they
        add clusters and override single settings of clusters from the variables.
    :raises ConfigError: with a message naming the variable to fix (never its secret value).
    """
    environ = os.environ if environ is None else environ
    warnings = []
    env_file = env_file or environ.get('PROXMOX_ENV_FILE') or None
    file_vars = None
    if env_file:
        file_vars, file_warnings = read_env_file(env_file, environ)
        warnings.extend(file_warnings)
    sources = _Sources(OrderedDict((k, v) for k, v in environ.items() if k.startswith(PREFIX)), file_vars,
                       os.path.expanduser(env_file) if env_file else None)

    raw_clusters = OrderedDict()
    names = as_list(sources.get(['PROXMOX_CLUSTERS'])[0])
    seen = {}
    for name in names:
        key = normalise_name(name)
        if key in seen:
            raise ConfigError("PROXMOX_CLUSTERS names the cluster '%s' twice (as '%s' and '%s')"
                              % (name, seen[key], name))
        seen[key] = name
        raw_clusters[name] = sources.cluster(name)
    if not names:
        legacy = sources.legacy()
        if legacy:
            raw_clusters[LEGACY_CLUSTER] = legacy

    for name, settings in _explicit_clusters(clusters).items():
        target = raw_clusters.setdefault(name, {'_sources': {}, '_explicit': True})
        for key, value in settings.items():
            target[key] = value
            target['_sources'][key] = 'clusters.%s.%s' % (name, key)

    if not raw_clusters:
        raise ConfigError('no Proxmox cluster is configured: set PROXMOX_CLUSTERS and the '
                          'PROXMOX_CLUSTER_<name>_API_URL / _TOKEN_ID / _TOKEN_SECRET variables '
                          '(in the environment or an env file given by env_file / PROXMOX_ENV_FILE), '
                          'or the clusters option')

    cluster_warnings = []
    built = OrderedDict((name, _build_cluster(name, raw, cluster_warnings)) for name, raw in raw_clusters.items())

    default = default_cluster or sources.get(['PROXMOX_DEFAULT_CLUSTER'])[0] or next(iter(built))
    if default not in built:
        raise ConfigError("the default cluster '%s' (PROXMOX_DEFAULT_CLUSTER) is not configured; "
                          "configured clusters: %s" % (default, ', '.join(built)))

    ttl, ttl_var = cache_ttl, 'cache_ttl'
    if ttl is None:
        # The seed's older name, PROXMOX_CLUSTER_CACHE_TTL, yields to PROXMOX_CLIENT_CACHE_TTL.
        ttl, ttl_var = sources.get(['PROXMOX_CLIENT_CACHE_TTL', 'PROXMOX_CLUSTER_CACHE_TTL'], first_wins=True)
    try:
        ttl = int(ttl) if ttl not in (None, '') else DEFAULT_CACHE_TTL
        if ttl < 0:
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError('%s must be a whole number of seconds >= 0, got %r' % (ttl_var, ttl))

    prefixes = []
    for entry in as_list(sources.get(['PROXMOX_CLUSTER_PATTERNS'])[0]):
        prefix, sep, target = entry.partition(':')
        prefix, target = prefix.strip(), target.strip()
        if not sep or not prefix or not target:
            raise ConfigError("PROXMOX_CLUSTER_PATTERNS entries must look like prefix:cluster "
                              "(for example prod-:production), got %r" % entry)
        if target not in built:
            raise ConfigError("PROXMOX_CLUSTER_PATTERNS maps %r to the unknown cluster '%s'; configured "
                              "clusters: %s" % (prefix, target, ', '.join(built)))
        prefixes.append((prefix, target))

    warnings.extend(sources.warnings)
    warnings.extend(cluster_warnings)
    return RegistryConfig(clusters=built, default_cluster=default, cache_ttl=ttl, prefix_patterns=prefixes,
                          warnings=warnings, env_file=env_file)
