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

This file is pure Python: no Ansible import, so the MCP server shares it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import io
import os
import re
import stat
from bisect import bisect_left
from itertools import accumulate
from collections import OrderedDict
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple
from urllib.parse import urlsplit

from ansible_collections.pmx.multicluster.plugins.module_utils.errors import ConfigError

try:
    from dotenv.parser import parse_stream
    from dotenv.variables import parse_variables
    HAS_DOTENV = True
except ImportError:  # pragma: no cover - declared requirement; only reading a .env file needs it
    HAS_DOTENV = False

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


CLUSTER_NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]*$')
# PVE token ids: user@realm!tokenname (the token name starts with a letter).
TOKEN_ID_RE = re.compile(r'^(?P<user>[^\s@!:]+@[^\s@!:]+)!(?P<name>[A-Za-z][A-Za-z0-9._-]*)$')
TRUE = ('1', 'true', 'yes', 'on', 'y')
FALSE = ('0', 'false', 'no', 'off', 'n')
PEM_CERTIFICATE = re.compile(br'-----BEGIN (?:TRUSTED )?CERTIFICATE-----')
CONTROL_CHARACTER = re.compile(r'[\x00-\x1f\x7f]')


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


# ----------------------------------------------------------------------------------------- the .env file
#
# python-dotenv's parser costs about 30 microseconds a line, which a .env file shared with other tools
# (thousands of lines) turns into most of a task's start-up. So the common lines are read here and
# python-dotenv reads every other one. A common line is printable ASCII: a blank line, a comment, or
# KEY=VALUE with a value unquoted, or quoted without a backslash or that quote inside. For those,
# python-dotenv's grammar reduces to the two expressions below (an unquoted value loses an inline
# " #comment" and trailing blanks; after a quoted one only a comment may follow).
# tests/unit/test_config.py compares both readings on tricky lines.

_NEWLINE = re.compile(r'(\r\n|\n|\r)')
_BLANK_OR_COMMENT = re.compile(r'[ \t]*(?:#.*)?$')
_SIMPLE_BINDING = re.compile(
    r'[ \t]*(?:export[ \t]+)?([A-Za-z0-9_.-]+)=([ \t]*)'
    r'(?:"([\t !#-\[\]-~]*)"[ \t]*(?:#.*)?'          # "double-quoted"
    r"|'([\t -&(-\[\]-~]*)'[ \t]*(?:#.*)?"           # 'single-quoted'
    r'|([\t !#-&(-~]*))$')                           # unquoted
_INLINE_COMMENT = re.compile(r'\s+#.*')


def _dotenv_bindings(text: str):
    """python-dotenv's bindings of ``text``: (key, value or None, error, characters read) each."""
    for binding in parse_stream(io.StringIO(text)):
        yield binding.key, binding.value, binding.error, len(binding.original.string)


class EnvText:
    """A ``.env`` text as python-dotenv reads it: at most one binding a line, its value read when asked for.

    ``bad`` holds the numbers of the lines that are not KEY=VALUE. A line's index is its number - 1.
    """

    def __init__(self, text: str):
        text = text[1:] if text.startswith('\ufeff') else text
        if '\r' in text:
            parts = _NEWLINE.split(text)
            lines, ends = parts[0::2], [len(sep) for sep in parts[1::2]] + [0]
        else:
            lines = text.split('\n')
            ends = [1] * (len(lines) - 1) + [0]
        self.lines = lines
        self.matches = list(map(_SIMPLE_BINDING.match, lines))
        self.other = {}  # index -> (key, value) that python-dotenv read
        self.bad = []
        self.index = None
        self.expanded = {}
        offsets = None  # where each line starts, once a line needs python-dotenv
        resume = 0
        for index in [i for i, match in enumerate(self.matches) if match is None]:
            content = lines[index]
            if index < resume or _BLANK_OR_COMMENT.match(content):
                continue
            if offsets is None:
                offsets = [0] + list(accumulate(len(line) + end for line, end in zip(lines, ends)))
            pos = offsets[index]
            found = list(_dotenv_bindings(text[pos:offsets[index + 1]]))
            if any(error for dummy, dummy2, error, dummy3 in found) and ("'" in content or '"' in content):
                # A quote left open may close on a later line: python-dotenv reads one binding from here on.
                found = [next(_dotenv_bindings(text[pos:]))]
                resume = bisect_left(offsets, pos + found[0][3])
                for inside in range(index + 1, resume):
                    self.matches[inside] = None
            for key, value, error, dummy in found:
                if error:
                    self.bad.append(index + 1)
                elif key is not None:
                    self.other[index] = (key, value)

    def key(self, index: int) -> Optional[str]:
        """The key of the binding on line ``index`` (None: no binding there)."""
        match = self.matches[index]
        if match is not None:
            return match.group(1)
        return self.other.get(index, (None, None))[0]

    def raw(self, index: int) -> Optional[str]:
        """The value of the binding on line ``index``, not expanded (None for a key without ``=``)."""
        match = self.matches[index]
        if match is None:
            return self.other[index][1]
        dummy, blanks, double, single, rest = match.groups()
        if double is not None or single is not None:
            return single if double is None else double
        if not rest or (blanks and rest[0] == '#'):
            return ''
        return (_INLINE_COMMENT.sub('', rest) if '#' in rest else rest).rstrip()

    def value(self, index: int, environ: Mapping[str, str]) -> Optional[str]:
        """The value of the binding on line ``index`` with its ``${VAR}`` references resolved."""
        if index not in self.expanded:
            raw = self.raw(index)
            if raw is not None and '${' in raw:
                references = _References(self, environ, index)
                raw = ''.join(atom.resolve(references) for atom in parse_variables(raw))
            self.expanded[index] = raw
        return self.expanded[index]

    def where(self, prefix: str = '') -> List[int]:
        """The indexes of the lines with a binding whose key starts with ``prefix``."""
        candidates = [i for i, line in enumerate(self.lines) if prefix in line] if prefix else range(len(self.lines))
        keys = [(i, self.key(i)) for i in candidates]
        return [i for i, key in keys if key is not None and key.startswith(prefix)]

    def positions(self, key: str) -> List[int]:
        """The indexes of the lines that bind ``key``."""
        if self.index is None:
            self.index = {}
            for index in self.where():
                self.index.setdefault(self.key(index), []).append(index)
        return self.index.get(key, [])


def scan_env_text(text: str) -> Tuple[List[Tuple[str, Optional[str], int]], List[int]]:
    """The ``(key, value, line)`` bindings of a ``.env`` text as python-dotenv parses them (values not expanded;
    None for a key without ``=``) and the numbers of the lines that are not KEY=VALUE.

    A line number is the line the key is on (python-dotenv itself counts from a blank line before it).
    """
    env = EnvText(text)
    return [(env.key(i), env.raw(i), i + 1) for i in env.where()], env.bad


class _References(MappingABC):
    """What a ``${VAR}`` on one line of a ``.env`` text sees: the environment, else the bindings above it.

    That is python-dotenv's ``load_dotenv`` without ``override``. Values of the text are expanded when
    a reference asks for them, so only the variables that a PROXMOX_ value refers to are.
    """

    def __init__(self, text: EnvText, environ: Mapping[str, str], index: int):
        self.text = text
        self.environ = environ
        self.index = index

    def __getitem__(self, name):
        if name in self.environ:
            return self.environ[name]
        indexes = self.text.positions(name)
        earlier = bisect_left(indexes, self.index)
        if earlier:
            return self.text.value(indexes[earlier - 1], self.environ)
        raise KeyError(name)

    def __iter__(self):  # pragma: no cover - python-dotenv only calls get()
        return iter(())

    def __len__(self):  # pragma: no cover
        return 0


def read_env_file(path: str, environ: Optional[Mapping[str, str]] = None) -> Tuple['OrderedDict[str, str]', List[str]]:
    """The ``PROXMOX_`` variables of a ``.env`` file (python-dotenv syntax), expanded, and warnings about it.

    ``${VAR}`` references resolve from ``environ`` (``os.environ`` when None), else from the file's lines
    above. A line python-dotenv cannot parse, and a ``PROXMOX_`` key set twice with different values,
    are errors naming the file and the lines; neither a line nor a value is shown, since either may hold
    a secret. A file that other users can read gives a warning.
    """
    if not HAS_DOTENV:  # pragma: no cover - declared requirement
        raise ConfigError('reading %s needs the python-dotenv package: pip install python-dotenv' % path)
    environ = os.environ if environ is None else environ
    path = os.path.expanduser(path)
    warnings = []
    try:
        with open(path, encoding='utf-8') as handle:
            mode = os.fstat(handle.fileno()).st_mode
            text = EnvText(handle.read())
    except FileNotFoundError:
        raise ConfigError('the env file %s does not exist; check env_file / PROXMOX_ENV_FILE' % path)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError('cannot read the env file %s: %s' % (path, getattr(exc, 'strerror', None) or exc))
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        warnings.append('the env file %s holds secrets but other users can read it; run: chmod 600 %s'
                        % (path, path))
    if text.bad:
        raise ConfigError('the env file %s has line(s) that are not KEY=VALUE: line %s; '
                          'fix or comment them out with #' % (path, ', '.join(str(n) for n in text.bad)))
    ours = OrderedDict()
    for index in text.where(PREFIX):
        ours.setdefault(text.key(index), []).append(index)
    twice = ['%s (lines %s)' % (key, ', '.join(str(i + 1) for i in indexes))
             for key, indexes in ours.items() if len(set(text.raw(i) for i in indexes)) > 1]
    if twice:
        raise ConfigError('the env file %s sets %s more than once, with different values; keep one line of each'
                          % (path, '; '.join(twice)))
    try:
        values = OrderedDict((key, text.value(indexes[-1], environ)) for key, indexes in ours.items())
    except RecursionError:
        raise ConfigError('the env file %s has ${...} references nested too deeply to expand' % path)
    return OrderedDict((k, '' if v is None else v) for k, v in values.items()), warnings


# ------------------------------------------------------------------------------------- values and URLs

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


# --------------------------------------------------------------------------------- the variable sources

def _text(value, what):
    """A text setting as two sources are compared: without surrounding whitespace."""
    return str(value).strip()


def _boolean(value, what):
    """A boolean setting as two sources are compared (``1`` and ``true`` agree); an error if it is none."""
    return _as_bool(value, what)


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
    urls = _as_list(raw.get('api_url'))
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
    verify = _as_bool(raw['verify_ssl'], what('verify_ssl')) if raw.get('verify_ssl') not in (None, '') else True
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
    patterns = _as_list(raw.get('patterns'))
    for pattern in patterns:
        if pattern in ('*',) or re.search(r'\s', pattern):
            raise ConfigError("%s: pattern %r is not allowed: it must not contain spaces and must not match "
                              "every name (use PROXMOX_DEFAULT_CLUSTER for a catch-all)" % (what('patterns'), pattern))
    if not verify:
        warnings.append("TLS certificate verification is off for cluster '%s': anyone on the network path "
                        "can read its token. Prefer %sCA_BUNDLE." % (name, prefix))
    return ClusterConfig(
        name=name, api_urls=api_urls, token_id=token_id, token_secret=secret, verify_ssl=verify,
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
    names = _as_list(sources.get(['PROXMOX_CLUSTERS'])[0])
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
    for entry in _as_list(sources.get(['PROXMOX_CLUSTER_PATTERNS'])[0]):
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
