# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a cluster's configuration is: the one table of per-cluster settings, how their values are read
(booleans, lists, API URLs), ClusterConfig and RegistryConfig.

config.py loads them from a ``.env`` file (envfile.py), the environment and explicit values. Pure Python:
no Ansible import.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Union
from urllib.parse import urlsplit

from ansible_collections.pmx.multicluster.plugins.module_utils.errors import ConfigError
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.values import as_bool as boolean_word

PREFIX = 'PROXMOX_'
DEFAULT_CACHE_TTL = 3600
DEFAULT_TIMEOUT = 10
DEFAULT_PORT = 8006
LEGACY_CLUSTER = 'default'


@dataclass(frozen=True)
class Setting:
    """One per-cluster setting, the one table every list of them derives from.

    ``key``: its field of ClusterConfig and its name in the ``clusters`` option. ``suffixes``: of its variables
    ``PROXMOX_CLUSTER_<name>_<SUFFIX>`` (legacy mode: ``PROXMOX_<SUFFIX>``), the preferred one first. ``type`` and
    ``elements``: its Ansible option type. ``legacy``: read in legacy single-cluster mode too. ``stripped``: loses
    surrounding whitespace, with a warning (it cannot be meant, and in an HTTP header a newline makes the HTTP
    library refuse the request with the header, secret included, in its message). ``secret``: never shown.
    The doc fragment (plugins/doc_fragments/pmx.py) and .env.example.multi describe the same settings; a unit
    test checks that they list exactly these.
    """

    key: str
    suffixes: Tuple[str, ...]
    type: str = 'str'
    elements: Optional[str] = None
    legacy: bool = True
    stripped: bool = False
    secret: bool = False

    def option(self) -> Dict[str, Any]:
        """Its AnsibleModule argument spec entry (a suboption of ``clusters``)."""
        spec: Dict[str, Any] = {'type': self.type}
        if self.elements:
            spec['elements'] = self.elements
        if self.secret:
            spec['no_log'] = True
        return spec


SETTINGS = (
    Setting('api_url', ('API_URL',), 'list', 'str', stripped=True),
    Setting('token_id', ('TOKEN_ID',), stripped=True),
    Setting('token_secret', ('TOKEN_SECRET',), stripped=True, secret=True),
    Setting('verify_ssl', ('VERIFY_SSL', 'VERIFY'), 'bool'),  # VERIFY: the seed's spelling
    Setting('ca_bundle', ('CA_BUNDLE',), 'path'),
    Setting('timeout', ('TIMEOUT',), 'float'),
    Setting('region', ('REGION',), legacy=False),
    Setting('tier', ('TIER',), legacy=False),
    Setting('patterns', ('PATTERNS',), 'list', 'str', legacy=False),
    Setting('default_node', ('DEFAULT_NODE',)),
    Setting('default_storage', ('DEFAULT_STORAGE',)),
    Setting('default_bridge', ('DEFAULT_BRIDGE',)),
    # The SHA-256 fingerprint of the cluster's API certificate, for other clusters' moves of guests to it.
    Setting('fingerprint', ('FINGERPRINT',)),
)
# Per-cluster settings: field name -> suffixes of PROXMOX_CLUSTER_<name>_<SUFFIX>, the preferred one first.
CLUSTER_SETTINGS = OrderedDict((s.key, s.suffixes) for s in SETTINGS)
# The settings legacy single-cluster mode reads, as PROXMOX_<SUFFIX>.
LEGACY_SETTINGS = tuple(s.key for s in SETTINGS if s.legacy)
# Keys accepted in explicit (task / inventory) cluster definitions.
EXPLICIT_KEYS = tuple(CLUSTER_SETTINGS)
STRIPPED = tuple(s.key for s in SETTINGS if s.stripped)


def cluster_option_spec() -> Dict[str, Dict[str, Any]]:
    """The suboptions of the ``clusters`` option (an AnsibleModule argument spec): ``name`` and every setting."""
    spec: Dict[str, Dict[str, Any]] = {'name': {'type': 'str', 'required': True}}
    spec.update((s.key, s.option()) for s in SETTINGS)
    return spec


# PVE token ids: user@realm!tokenname (the token name starts with a letter).
TOKEN_ID_RE = re.compile(r'^(?P<user>[^\s@!:]+@[^\s@!:]+)!(?P<name>[A-Za-z][A-Za-z0-9._-]*)$')
# The words a boolean setting may be written with.


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
    # SHA-256 fingerprint of the API certificate (AA:BB:...), given to PVE when a guest moves to this cluster.
    fingerprint: Optional[str] = None

    @property
    def api_url(self) -> str:
        """The first (preferred) API URL."""
        return self.api_urls[0]

    @property
    def verify(self) -> Union[bool, str]:
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


# ------------------------------------------------------------------------------------- values and URLs

def as_bool(value: Any, what: str) -> bool:
    """A boolean setting: a bool, or one of the core's boolean words (pve/values.py); a ConfigError naming ``what``
    else."""
    flag = boolean_word(value)
    if flag is None:
        raise ConfigError('%s must be true or false, got %r' % (what, value))
    return flag


def as_list(value: Any) -> List[str]:
    """A list setting: a list, or comma-separated text; items stripped, empty ones dropped."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        items = value
    else:
        items = str(value).split(',')
    return [str(item).strip() for item in items if str(item).strip()]


def _host_port(parts) -> str:
    """``scheme://host[:port]`` of a split URL: what may be shown of a URL that had credentials."""
    try:
        host = parts.hostname or ''
        port = parts.port
    except ValueError:
        port = None
    if ':' in host:
        host = '[%s]' % host
    return '%s://%s%s' % (parts.scheme or 'https', host or '<no host>', ':%d' % port if port else '')


def refuse_credentials(url: str, what: str, token_hint: str = 'the token id and secret settings') -> None:
    """A ConfigError when an API URL carries ``user:password@``; the message shows only scheme://host:port."""
    text = str(url).strip()
    if '@' not in text:  # no host name, port or accepted path holds '@'
        return
    # Show only the host and port after the last '@' (a password may hold ',', '/' or '://').
    scheme = text.split('://', 1)[0] if '://' in text else 'https'
    scheme = scheme if re.match(r'^[A-Za-z][A-Za-z0-9+.-]*$', scheme) else 'https'
    try:
        shown = _host_port(urlsplit('%s://%s' % (scheme, re.split(r'[/?#,]', text.rsplit('@', 1)[1])[0])))
    except ValueError:
        shown = '%s://<host>' % scheme
    raise ConfigError("%s: the API URL %s has a user name or password in it (an '@' before the host); remove them "
                      "from the URL and put the API token in %s" % (what, shown, token_hint))


def parse_api_url(url: str, what: str, token_hint: str = 'the token id and secret settings') -> str:
    """Normalise an API URL to ``https://host:port``; a clear error for anything else.

    A URL with credentials is refused without repeating them; no message shows a query or fragment.
    """
    refuse_credentials(url, what, token_hint)
    text = url.strip()
    if '://' not in text:
        text = 'https://' + text
    try:
        parts = urlsplit(text)
    except ValueError:
        raise ConfigError('%s: %r is not a valid URL; give https://host:port' % (what, url))
    try:
        port = parts.port
    except ValueError:
        raise ConfigError('%s: %r has an invalid port' % (what, url))
    if parts.scheme != 'https' or not parts.hostname:
        raise ConfigError('%s must be an https URL such as https://pve.example.com:8006, got %r' % (what, url))
    if parts.query or parts.fragment or text.endswith(('?', '#')):
        raise ConfigError('%s: %s... has a query or fragment; give only https://host:port'
                          % (what, _host_port(parts)))
    path = parts.path.rstrip('/')
    if path not in ('', '/api2/json'):
        raise ConfigError('%s: %r has a path; give only https://host:port' % (what, url))
    host = parts.hostname
    if ':' in host:
        host = '[%s]' % host
    return 'https://%s:%d' % (host, port or DEFAULT_PORT)
