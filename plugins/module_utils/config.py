# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cluster configuration: from the process environment, a ``.env`` file and explicit values.

Sources, later wins: the process environment < the ``.env`` file < explicit
values (task options or an inventory file). Variable names follow the seed::

    PROXMOX_CLUSTERS=production,staging,disaster-recovery
    PROXMOX_CLUSTER_<name>_API_URL / _TOKEN_ID / _TOKEN_SECRET / _VERIFY_SSL / _CA_BUNDLE
    PROXMOX_CLUSTER_<name>_REGION / _TIER / _PATTERNS / _TIMEOUT / _DEFAULT_NODE ...
    PROXMOX_DEFAULT_CLUSTER, PROXMOX_CLIENT_CACHE_TTL, PROXMOX_CLUSTER_PATTERNS

``<name>`` is the cluster name as written or upper-cased with ``-`` as ``_``
(shells cannot export names with ``-``). Legacy single-cluster variables
``PROXMOX_API_URL`` / ``PROXMOX_TOKEN_ID`` / ``PROXMOX_TOKEN_SECRET`` define
one cluster named ``default``.

This file is pure Python: no Ansible import, so the MCP server shares it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import stat
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple
from urllib.parse import urlsplit

from ansible_collections.pmx.multicluster.plugins.module_utils.errors import ConfigError

PREFIX = 'PROXMOX_'
DEFAULT_CACHE_TTL = 3600
DEFAULT_TIMEOUT = 10
DEFAULT_PORT = 8006
LEGACY_CLUSTER = 'default'

# Per-cluster settings: suffix of PROXMOX_CLUSTER_<name>_<SUFFIX> -> field name.
CLUSTER_SETTINGS = OrderedDict([
    ('API_URL', 'api_url'),
    ('TOKEN_ID', 'token_id'),
    ('TOKEN_SECRET', 'token_secret'),
    ('VERIFY_SSL', 'verify_ssl'),
    ('VERIFY', 'verify_ssl'),  # the seed's spelling
    ('CA_BUNDLE', 'ca_bundle'),
    ('TIMEOUT', 'timeout'),
    ('REGION', 'region'),
    ('TIER', 'tier'),
    ('PATTERNS', 'patterns'),
    ('DEFAULT_NODE', 'default_node'),
    ('DEFAULT_STORAGE', 'default_storage'),
    ('DEFAULT_BRIDGE', 'default_bridge'),
])
# Keys accepted in explicit (task / inventory) cluster definitions.
EXPLICIT_KEYS = ('api_url', 'token_id', 'token_secret', 'verify_ssl', 'ca_bundle', 'timeout', 'region', 'tier',
                 'patterns', 'default_node', 'default_storage', 'default_bridge')

CLUSTER_NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]*$')
# PVE token ids: user@realm!tokenname (the token name starts with a letter).
TOKEN_ID_RE = re.compile(r'^(?P<user>[^\s@!:]+@[^\s@!:]+)!(?P<name>[A-Za-z][A-Za-z0-9._-]*)$')
TRUE = ('1', 'true', 'yes', 'on', 'y')
FALSE = ('0', 'false', 'no', 'off', 'n')


@dataclass
class ClusterConfig:
    """One cluster: where it is, how to authenticate, its metadata and routing patterns.

    ``token_secret`` is excluded from ``repr`` and from :meth:`public`, so
    printing a config never shows it.
    """

    name: str
    api_urls: List[str]
    token_id: str
    token_secret: str = field(repr=False)
    verify_ssl: bool = True
    ca_bundle: Optional[str] = None
    timeout: float = DEFAULT_TIMEOUT
    region: Optional[str] = None
    tier: Optional[str] = None
    patterns: List[str] = field(default_factory=list)
    default_node: Optional[str] = None
    default_storage: Optional[str] = None
    default_bridge: Optional[str] = None

    @property
    def api_url(self) -> str:
        """The first (preferred) API URL."""
        return self.api_urls[0]

    @property
    def verify(self):
        """What ``requests`` takes as ``verify``: False, True or the CA bundle path."""
        if not self.verify_ssl:
            return False
        return self.ca_bundle or True

    @property
    def token_user(self) -> str:
        return TOKEN_ID_RE.match(self.token_id).group('user')

    @property
    def token_name(self) -> str:
        return TOKEN_ID_RE.match(self.token_id).group('name')

    def public(self) -> Dict:
        """Everything a user may see: no secret."""
        return {
            'name': self.name,
            'api_url': self.api_url,
            'api_urls': list(self.api_urls),
            'token_id': self.token_id,
            'verify_ssl': self.verify_ssl,
            'ca_bundle': self.ca_bundle,
            'region': self.region,
            'tier': self.tier,
            'patterns': list(self.patterns),
        }


@dataclass
class RegistryConfig:
    """All clusters, the default one, the client cache TTL and the global prefix map."""

    clusters: 'OrderedDict[str, ClusterConfig]'
    default_cluster: str
    cache_ttl: int = DEFAULT_CACHE_TTL
    # (prefix, cluster) pairs from PROXMOX_CLUSTER_PATTERNS, in the order given.
    prefix_patterns: List[Tuple[str, str]] = field(default_factory=list)
    # Non-fatal problems (for example an .env file readable by others) for the front end to show.
    warnings: List[str] = field(default_factory=list)
    env_file: Optional[str] = None

    @property
    def names(self) -> List[str]:
        return list(self.clusters)

    @property
    def secrets(self) -> List[str]:
        """Every token secret, for front ends that scrub output."""
        return [c.token_secret for c in self.clusters.values() if c.token_secret]


def normalise_name(name: str) -> str:
    """The shell-safe spelling of a cluster name: upper case, ``-`` and ``.`` as ``_``."""
    return re.sub(r'[^A-Za-z0-9_]', '_', name).upper()


def read_env_file(path: str) -> Tuple['OrderedDict[str, str]', List[str]]:
    """Variables of a ``.env`` file (python-dotenv syntax) and warnings about it.

    A line python-dotenv cannot parse is an error naming the file and line;
    the line itself is not shown since it may hold a secret. A file that
    other users can read gives a warning.
    """
    try:
        from dotenv.parser import parse_stream
        from dotenv.main import resolve_variables
    except ImportError:  # pragma: no cover - declared requirement
        raise ConfigError('reading %s needs the python-dotenv package: pip install python-dotenv' % path)
    path = os.path.expanduser(path)
    warnings = []
    try:
        with open(path, encoding='utf-8') as handle:
            mode = os.fstat(handle.fileno()).st_mode
            bindings = list(parse_stream(handle))
    except FileNotFoundError:
        raise ConfigError('the env file %s does not exist; check env_file / PROXMOX_ENV_FILE' % path)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError('cannot read the env file %s: %s' % (path, getattr(exc, 'strerror', None) or exc))
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        warnings.append('the env file %s holds secrets but other users can read it; run: chmod 600 %s'
                        % (path, path))
    bad = [b for b in bindings if b.error]
    if bad:
        lines = ', '.join(str(b.original.line) for b in bad)
        raise ConfigError('the env file %s has line(s) that are not KEY=VALUE: line %s; '
                          'fix or comment them out with #' % (path, lines))
    pairs = [(b.key, b.value) for b in bindings if b.key is not None]
    values = OrderedDict(resolve_variables(pairs, override=True))
    return OrderedDict((k, '' if v is None else v) for k, v in values.items()), warnings


def _as_bool(value, what: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise ConfigError('%s must be true or false, got %r' % (what, value))


def _as_list(value) -> List[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        items = value
    else:
        items = str(value).split(',')
    return [str(item).strip() for item in items if str(item).strip()]


def parse_api_url(url: str, what: str) -> str:
    """Normalise an API URL to ``https://host:port``; a clear error for anything else."""
    text = url.strip()
    if '://' not in text:
        text = 'https://' + text
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        raise ConfigError('%s: %r has an invalid port' % (what, url))
    if parts.scheme != 'https' or not parts.hostname:
        raise ConfigError('%s must be an https URL such as https://pve.example.com:8006, got %r' % (what, url))
    path = parts.path.rstrip('/')
    if path not in ('', '/api2/json'):
        raise ConfigError('%s: %r has a path; give only https://host:port' % (what, url))
    host = parts.hostname
    if ':' in host:
        host = '[%s]' % host
    return 'https://%s:%d' % (host, port or DEFAULT_PORT)


class _Lookup:
    """Reads the merged variables for one cluster under both spellings of its name."""

    def __init__(self, variables: Mapping[str, str], name: str):
        self.variables = variables
        self.spellings = list(OrderedDict.fromkeys([name, normalise_name(name)]))

    def get(self, suffix: str) -> Tuple[Optional[str], Optional[str]]:
        """(value, variable name) of a setting; an error when both spellings differ."""
        found = []
        for spelling in self.spellings:
            var = 'PROXMOX_CLUSTER_%s_%s' % (spelling, suffix)
            if var in self.variables and self.variables[var] != '':
                found.append((self.variables[var], var))
        if len(found) > 1 and found[0][0] != found[1][0]:
            raise ConfigError('%s and %s are both set, with different values; keep one of them'
                              % (found[0][1], found[1][1]))
        return found[0] if found else (None, None)


def _cluster_from_variables(name: str, variables: Mapping[str, str]) -> Dict:
    lookup = _Lookup(variables, name)
    raw = {}
    sources = {}
    for suffix, key in CLUSTER_SETTINGS.items():
        value, var = lookup.get(suffix)
        if value is not None and key not in raw:
            raw[key] = value
            sources[key] = var
    raw['_sources'] = sources
    return raw


def _legacy_cluster(variables: Mapping[str, str]) -> Optional[Dict]:
    if not variables.get('PROXMOX_API_URL'):
        return None
    raw = {'_sources': {}, '_prefix': PREFIX}
    for suffix, key in (('API_URL', 'api_url'), ('TOKEN_ID', 'token_id'), ('TOKEN_SECRET', 'token_secret'),
                        ('VERIFY_SSL', 'verify_ssl'), ('CA_BUNDLE', 'ca_bundle'), ('TIMEOUT', 'timeout')):
        var = PREFIX + suffix
        if variables.get(var):
            raw[key] = variables[var]
            raw['_sources'][key] = var
    return raw


def _build_cluster(name: str, raw: Dict) -> ClusterConfig:
    sources = raw.get('_sources', {})

    # The variable family to name in hints: legacy mode reads PROXMOX_API_URL etc.
    prefix = raw.get('_prefix') or 'PROXMOX_CLUSTER_%s_' % name

    def what(key):
        return sources.get(key) or "cluster '%s' %s" % (name, key)

    if not CLUSTER_NAME_RE.match(name):
        raise ConfigError("cluster name %r is not valid: use letters, digits, '-', '_' and '.'" % name)
    urls = _as_list(raw.get('api_url'))
    if not urls:
        raise ConfigError("cluster '%s' has no API URL: set %sAPI_URL=https://host:8006" % (name, prefix))
    api_urls = [parse_api_url(u, what('api_url')) for u in urls]
    token_id = (raw.get('token_id') or '').strip()
    if not token_id:
        raise ConfigError("cluster '%s' has no API token id: set %sTOKEN_ID=user@realm!tokenname" % (name, prefix))
    if not TOKEN_ID_RE.match(token_id):
        shown = token_id
        if '=' in token_id:
            # PVE shows tokens as id=secret; never echo what follows '='.
            shown = token_id.split('=', 1)[0] + '=<hidden>'
        raise ConfigError("%s must have the form user@realm!tokenname (for example root@pam!ansible), got %r; "
                          "the secret goes in %sTOKEN_SECRET" % (what('token_id'), shown, prefix))
    secret = raw.get('token_secret')
    if not secret:
        raise ConfigError("cluster '%s' has no API token secret: set %sTOKEN_SECRET" % (name, prefix))
    verify = _as_bool(raw['verify_ssl'], what('verify_ssl')) if raw.get('verify_ssl') not in (None, '') else True
    ca_bundle = raw.get('ca_bundle') or None
    if ca_bundle:
        ca_bundle = os.path.expanduser(str(ca_bundle))
        if not os.path.isfile(ca_bundle):
            raise ConfigError('%s: the CA bundle %s does not exist' % (what('ca_bundle'), ca_bundle))
    timeout = raw.get('timeout')
    try:
        timeout = float(timeout) if timeout not in (None, '') else DEFAULT_TIMEOUT
        if timeout <= 0:
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError('%s must be a positive number of seconds, got %r' % (what('timeout'), timeout))
    patterns = _as_list(raw.get('patterns'))
    for pattern in patterns:
        if pattern in ('*',) or re.search(r'\s', pattern):
            raise ConfigError("%s: pattern %r is not allowed: it must not contain spaces and must not match "
                              "every name (use PROXMOX_DEFAULT_CLUSTER for a catch-all)" % (what('patterns'), pattern))
    return ClusterConfig(
        name=name, api_urls=api_urls, token_id=token_id, token_secret=str(secret), verify_ssl=verify,
        ca_bundle=ca_bundle if verify else None, timeout=timeout,
        region=raw.get('region') or None, tier=raw.get('tier') or None, patterns=patterns,
        default_node=raw.get('default_node') or None, default_storage=raw.get('default_storage') or None,
        default_bridge=raw.get('default_bridge') or None)


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
                clusters=None, default_cluster: Optional[str] = None,
                cache_ttl: Optional[int] = None) -> RegistryConfig:
    """Build the configuration from the environment, an optional ``.env`` file and explicit values.

    :param environ: the process environment (``os.environ`` when None).
    :param env_file: a ``.env`` file; when None, ``PROXMOX_ENV_FILE`` from the environment, if set.
    :param clusters: explicit cluster definitions (``{name: {api_url:..., token_id:...}}``); they
        add clusters and override single settings of clusters from the variables.
    :raises ConfigError: with a message naming the variable to fix (never its secret value).
    """
    environ = os.environ if environ is None else environ
    # Each source is a layer; the two spellings of a name are compared within one
    # layer only, so a .env file wins over an environment variable spelled the other way.
    layers = [OrderedDict((k, v) for k, v in environ.items() if k.startswith(PREFIX))]
    warnings = []
    env_file = env_file or environ.get('PROXMOX_ENV_FILE') or None
    if env_file:
        file_vars, file_warnings = read_env_file(env_file)
        layers.append(OrderedDict((k, v) for k, v in file_vars.items() if k.startswith(PREFIX)))
        warnings.extend(file_warnings)
    variables = OrderedDict()
    for layer in layers:
        variables.update(layer)

    def cluster_settings(name):
        merged = {'_sources': {}}
        for layer in layers:
            found = _cluster_from_variables(name, layer)
            merged['_sources'].update(found.pop('_sources'))
            merged.update(found)
        return merged

    raw_clusters = OrderedDict()
    names = _as_list(variables.get('PROXMOX_CLUSTERS'))
    seen = {}
    for name in names:
        key = normalise_name(name)
        if key in seen:
            raise ConfigError("PROXMOX_CLUSTERS names the cluster '%s' twice (as '%s' and '%s')"
                              % (name, seen[key], name))
        seen[key] = name
        raw_clusters[name] = cluster_settings(name)
    if not names:
        legacy = _legacy_cluster(variables)
        if legacy:
            raw_clusters[LEGACY_CLUSTER] = legacy

    for name, settings in _explicit_clusters(clusters).items():
        target = raw_clusters.setdefault(name, {'_sources': {}})
        for key, value in settings.items():
            target[key] = value
            target['_sources'].pop(key, None)

    if not raw_clusters:
        raise ConfigError('no Proxmox cluster is configured: set PROXMOX_CLUSTERS and the '
                          'PROXMOX_CLUSTER_<name>_API_URL / _TOKEN_ID / _TOKEN_SECRET variables '
                          '(in the environment or an env file given by env_file / PROXMOX_ENV_FILE), '
                          'or the clusters option')

    built = OrderedDict((name, _build_cluster(name, raw)) for name, raw in raw_clusters.items())
    for cluster in built.values():
        if not cluster.verify_ssl:
            warnings.append("TLS certificate verification is off for cluster '%s': anyone on the network path "
                            "can read its token. Prefer PROXMOX_CLUSTER_%s_CA_BUNDLE." % (cluster.name, cluster.name))

    default = default_cluster or variables.get('PROXMOX_DEFAULT_CLUSTER') or next(iter(built))
    if default not in built:
        raise ConfigError("the default cluster '%s' (PROXMOX_DEFAULT_CLUSTER) is not configured; "
                          "configured clusters: %s" % (default, ', '.join(built)))

    ttl = cache_ttl
    if ttl is None:
        ttl = variables.get('PROXMOX_CLIENT_CACHE_TTL') or variables.get('PROXMOX_CLUSTER_CACHE_TTL')
    try:
        ttl = int(ttl) if ttl not in (None, '') else DEFAULT_CACHE_TTL
        if ttl < 0:
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError('PROXMOX_CLIENT_CACHE_TTL must be a whole number of seconds >= 0, got %r' % ttl)

    prefixes = []
    for entry in _as_list(variables.get('PROXMOX_CLUSTER_PATTERNS')):
        prefix, sep, target = entry.partition(':')
        prefix, target = prefix.strip(), target.strip()
        if not sep or not prefix or not target:
            raise ConfigError("PROXMOX_CLUSTER_PATTERNS entries must look like prefix:cluster "
                              "(for example prod-:production), got %r" % entry)
        if target not in built:
            raise ConfigError("PROXMOX_CLUSTER_PATTERNS maps %r to the unknown cluster '%s'; configured "
                              "clusters: %s" % (prefix, target, ', '.join(built)))
        prefixes.append((prefix, target))

    return RegistryConfig(clusters=built, default_cluster=default, cache_ttl=ttl, prefix_patterns=prefixes,
                          warnings=warnings, env_file=env_file)
