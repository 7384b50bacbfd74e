# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: pmx
short_description: Every guest of several Proxmox VE clusters in one inventory source
version_added: 0.1.0
author: pmx.multicluster contributors (@pmx-multicluster)
description:
  - Lists the virtual machines and containers of every configured Proxmox VE cluster (or of those
    selected by O(include_clusters)) from one inventory file whose name ends in C(.pmx.yml) or C(.pmx.yaml).
  - Reads the same configuration as the modules of this collection (environment, C(.env) file,
    or O(clusters) given in the file), through the same cluster registry and API client. Values of
    O(clusters) may be Jinja templates or vault-encrypted (C(!vault)).
  - By default it makes B(one) API request per cluster, C(GET /cluster/resources?type=vm), all clusters
    at once. Per-guest requests are made only for O(want_config) and O(want_ips), concurrently with at most
    O(max_workers) requests in flight per cluster.
  - A cluster that cannot be read is skipped with a warning naming it and why; the other clusters are still
    listed. With O(fail_on_unreachable) (by default the value of O(strict)) it is an error instead.
  - "Host variables, all prefixed C(pmx_): C(pmx_cluster), C(pmx_region), C(pmx_tier), C(pmx_vmid), C(pmx_node),
    C(pmx_type) (V(qemu) or V(lxc)), C(pmx_status), C(pmx_name), C(pmx_tags) (a list), C(pmx_pool), C(pmx_template),
    C(pmx_lock), C(pmx_cpu), C(pmx_maxcpu), C(pmx_mem), C(pmx_maxmem), C(pmx_disk), C(pmx_maxdisk), C(pmx_uptime);
    C(pmx_config) with O(want_config); C(pmx_ips) with O(want_ips). No token or secret is ever a host variable."
  - "Groups (with the default O(group_prefix)): C(pmx_all) > C(pmx_cluster_<cluster>) > C(pmx_node_<cluster>_<node>)
    > hosts, and C(pmx_type_<qemu|lxc>), C(pmx_status_<status>), C(pmx_tag_<tag>), C(pmx_pool_<pool>),
    C(pmx_region_<region>), C(pmx_tier_<tier>). Characters other than letters, digits and C(_) in group names
    become C(_) (C(pmx_cluster_disaster_recovery))."
  - "Host names come from O(hostname_template). When the template gives the same name to guests of different
    clusters (or twice in one cluster), none replaces another: each of those guests is named
    C(<name>.<cluster>), and if that is still not unique, C(<name>.<cluster>.<vmid>). A generated name never
    takes the real name of another guest (a guest may be called C(web01.production)): that guest keeps its name,
    and the generated one takes the next form (or, if that is a real name too, C(-2), C(-3)... appended).
    No guest is lost; a warning lists every renamed one."
extends_documentation_fragment:
  - pmx.multicluster.pmx
  - constructed
  - inventory_cache
options:
  plugin:
    description: The name of this plugin; makes the file an inventory source of this plugin.
    required: true
    type: str
    choices: [pmx.multicluster.pmx]
  env_file:
    description:
      - Path of a C(.env) file with the cluster configuration (python-dotenv syntax), as for the modules.
      - A relative path is relative to the directory of the inventory file; C(~) is expanded.
      - If not set, the environment variable E(PROXMOX_ENV_FILE) is used; with neither, only the process
        environment and O(clusters) are read.
    type: str
  include_clusters:
    description:
      - Names or globs (V(prod*)) of the clusters to list. Empty (the default) lists all configured clusters.
      - A plain name that is not configured, or a glob that matches none, is an error.
    type: list
    elements: str
    default: []
  status:
    description: List only guests in one of these states (V(running), V(stopped), V(paused), ...). Empty lists all.
    type: list
    elements: str
    default: []
  types:
    description: List only guests of these types. Empty lists both.
    type: list
    elements: str
    choices: [qemu, lxc]
    default: []
  tags:
    description: List only guests that carry at least one of these Proxmox tags. Empty lists all.
    type: list
    elements: str
    default: []
  filters:
    description:
      - Jinja expressions (without C({{ }})) evaluated on each guest's C(pmx_) host variables; a guest is listed
        only when all are true, for example V(pmx_maxmem >= 4294967296) or V("'web' in pmx_tags").
      - They see the C(pmx_) variables, including C(pmx_config) and C(pmx_ips) when asked, not O(compose) results.
      - An expression that fails counts as false, or is an error with O(strict).
    type: list
    elements: str
    default: []
  include_templates:
    description: List templates (guests with C(template=1)) too. They are left out by default.
    type: bool
    default: false
  want_config:
    description:
      - Read each listed guest's configuration into C(pmx_config) (one request per guest).
      - Guests left out by O(status), O(types), O(tags) or O(include_templates) are not asked for.
    type: bool
    default: false
  want_ips:
    description:
      - Read each running guest's IP addresses into C(pmx_ips) (a list, IPv4 first; loopback and link-local left
        out), from the QEMU guest agent (C(network-get-interfaces)) or the container's C(interfaces).
      - One request per running guest; stopped guests, and with O(want_config) VMs whose agent is off, are not
        asked and get an empty list.
    type: bool
    default: false
  ansible_host_from_ip:
    description: With O(want_ips), set C(ansible_host) to the guest's first address, if it has one.
    type: bool
    default: true
  hostname_template:
    description:
      - The inventory host name of a guest, a Python format string with the fields C(name), C(vmid), C(cluster),
        C(node) and C(type); for example V({name}.{cluster}) or V({cluster}-{vmid}).
      - A guest without a name is named C(<type>-<vmid>) in C({name}).
      - Names given to more than one guest are made unique as described above, with a warning.
    type: str
    default: '{name}'
  group_prefix:
    description: Prefix of the groups this plugin makes (not of O(keyed_groups) and O(groups)).
    type: str
    default: pmx_
  max_workers:
    description:
      - The most per-guest requests (O(want_config), O(want_ips)) in flight at once per cluster; all clusters
        are read at the same time.
      - At most 10 are used, the number of connections the API client keeps open to a cluster.
    type: int
    default: 10
  fail_on_unreachable:
    description:
      - Fail when a cluster cannot be read, or a guest's config or addresses cannot be read, instead of skipping
        it with a warning.
      - When not set, the value of O(strict) is used.
      - A failing inventory source is reported by Ansible as not parsed; set C(inventory_any_unparsed_is_failed)
        (E(ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED)) so that it stops the run.
    type: bool
notes:
  - With O(cache), a cache hit makes no API request at all. A result in which a cluster could not be read is not
    cached, so the next run asks again. C(ansible-inventory --flush-cache) refreshes the cache.
  - The values of O(clusters) are read from this file only; the token secrets are never written to the cache.
'''

EXAMPLES = r'''
# clusters.pmx.yml: every guest of every cluster configured in the environment or PROXMOX_ENV_FILE
plugin: pmx.multicluster.pmx

---
# clusters.pmx.yml: clusters in the file (secret vault-encrypted), running production VMs only
plugin: pmx.multicluster.pmx
clusters:
  - name: production
    api_url: https://pve-prod.example.com:8006
    token_id: root@pam!ansible
    token_secret: !vault |
      $ANSIBLE_VAULT;1.1;AES256
      ...
    region: eu-west
    tier: production
  - name: staging
    api_url: https://pve-stg.example.com:8006
    token_id: root@pam!ansible
    token_secret: "{{ lookup('ansible.builtin.env', 'STAGING_TOKEN_SECRET') }}"
status: [running]
types: [qemu]

---
# clusters.pmx.yml: addresses from the guest agent, config, composed variables and groups, cached
plugin: pmx.multicluster.pmx
env_file: ~/.config/pmx/clusters.env
include_clusters: [production, 'stag*']
want_ips: true
want_config: true
filters:
  - "'web' in pmx_tags or pmx_maxmem >= 8589934592"
hostname_template: '{name}'
compose:
  ansible_user: "'debian' if pmx_type == 'qemu' else 'root'"
  cores: pmx_config.cores | default(1)
keyed_groups:
  - key: pmx_config.ostype | default('unknown')
    prefix: os
groups:
  big: pmx_maxmem >= 8589934592
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: ~/.cache/pmx-inventory
cache_timeout: 300
'''

import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from ansible import template as ansible_template
from ansible.errors import AnsibleParserError
from ansible.inventory.group import to_safe_group_name
from ansible.module_utils.common.text.converters import to_native, to_text
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable

from ansible_collections.pmx.multicluster.plugins.module_utils.errors import ClusterError
from ansible_collections.pmx.multicluster.plugins.module_utils.guests.addresses import guest_addresses
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.kinds import guest_path
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.values import parse_tags
from ansible_collections.pmx.multicluster.plugins.module_utils.redact import Scrubber

if hasattr(ansible_template, 'trust_as_template'):
    # ansible-core 2.19+: a string is never templated unless tagged trusted, so API data is safe as it is,
    # and wrap_var would only cost time (a third of populating 1,500 hosts).
    def make_unsafe(value):
        return value
else:  # pragma: no cover - ansible-core < 2.19
    from ansible.utils.unsafe_proxy import wrap_var as make_unsafe

# Bump when the cached record format changes: an old cache is then ignored, not misread.
CACHE_VERSION = 1
NUMBERS = ('cpu', 'maxcpu', 'mem', 'maxmem', 'disk', 'maxdisk', 'uptime')
# The record fields every host gets as a pmx_ variable, and those names.
HOSTVAR_FIELDS = ('cluster', 'region', 'tier', 'vmid', 'node', 'type', 'status', 'name', 'tags', 'pool', 'template',
                  'lock') + NUMBERS
HOSTVAR_NAMES = tuple('pmx_' + field for field in HOSTVAR_FIELDS)
# Connections requests keeps per host in one session, hence the most useful workers per cluster.
POOL_SIZE = 10
HOSTNAME_FIELDS = ('name', 'vmid', 'cluster', 'node', 'type')
# How many per-guest failures a warning names before it only counts them.
SHOW_FAILURES = 3


def split_tags(value):
    """PVE's tag string (``web;prod``; older releases also use ``,`` or spaces) as a list: the core's parser."""
    return [to_text(t) for t in parse_tags(value)]


def normalise(cluster, item):
    """A JSON-safe record of one ``/cluster/resources`` entry: only the fields the inventory uses."""
    record = {
        'cluster': cluster.name,
        'region': cluster.region,
        'tier': cluster.tier,
        'vmid': int(item['vmid']),
        'node': to_text(item.get('node') or ''),
        'type': to_text(item.get('type') or ''),
        'status': to_text(item.get('status') or 'unknown'),
        'name': to_text(item.get('name') or ''),
        'tags': split_tags(item.get('tags')),
        'pool': to_text(item['pool']) if item.get('pool') else None,
        'template': bool(int(item.get('template') or 0)),
        'lock': to_text(item['lock']) if item.get('lock') else None,
    }
    for key in NUMBERS:
        value = item.get(key)
        record[key] = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    return record


def hostnames(records, template):
    """Unique inventory names for the records, and a description of each name that had to be disambiguated.

    Rule: the template's name; a name several guests share becomes ``<name>.<cluster>`` for each of them,
    and one still shared (the same name twice in a cluster) ``<name>.<cluster>.<vmid>``. A generated name
    never takes a name that a guest really has (a guest may be called ``web01.production``): such a guest
    keeps its own name and the generated one moves to the next form, and if even ``<name>.<cluster>.<vmid>``
    is a real name, ``-2``, ``-3``... is appended. No guest is ever lost.
    Deterministic: it depends only on the records, not on the order the clusters answered in.
    """
    base = [render_hostname(template, r) for r in records]
    counts = Counter(base)
    names = [name if counts[name] == 1 else None for name in base]
    taken = set(base)  # every real name, shared or not: no generated name may be one of them

    def order(i):
        return (str(records[i]['cluster']), int(records[i]['vmid'] or 0), i)

    pending = sorted((i for i, name in enumerate(names) if name is None), key=order)
    with_cluster = dict((i, '%s.%s' % (base[i], records[i]['cluster'])) for i in pending)
    shared = Counter(with_cluster.values())
    for i in pending:
        if shared[with_cluster[i]] == 1 and with_cluster[i] not in taken:
            names[i] = with_cluster[i]
            taken.add(names[i])
    for i in pending:
        if names[i] is None:
            stem = '%s.%s.%s' % (base[i], records[i]['cluster'], records[i]['vmid'])
            name, n = stem, 2
            while name in taken:
                name, n = '%s-%d' % (stem, n), n + 1
            names[i] = name
            taken.add(name)
    duplicates = {}
    for i, name in enumerate(names):
        if name != base[i]:
            duplicates.setdefault(base[i], []).append('%s (%s vmid %s)'
                                                      % (name, records[i]['cluster'], records[i]['vmid']))
    return names, duplicates


def render_hostname(template, record):
    values = dict((key, record.get(key)) for key in HOSTNAME_FIELDS)
    if not values['name']:
        values['name'] = '%s-%s' % (record.get('type') or 'guest', record.get('vmid'))
    return template.format(**values)


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    """Every guest of several Proxmox VE clusters, through the collection's cluster registry."""

    NAME = 'pmx.multicluster.pmx'

    def verify_file(self, path):
        """Only files named ``*.pmx.yml`` / ``*.pmx.yaml``."""
        return super(InventoryModule, self).verify_file(path) and path.endswith(('.pmx.yml', '.pmx.yaml'))

    def _sanitize_group_name(self, name):
        # Always replace characters Ansible does not accept in group names ('-' in disaster-recovery), silently:
        # the default TRANSFORM_INVALID_GROUP_CHARS=never would keep them and warn on every run.
        return to_safe_group_name(name, force=True, silent=True)

    def parse(self, inventory, loader, path, cache=True):
        super(InventoryModule, self).parse(inventory, loader, path, cache)
        self._read_config_data(path)
        self._path = path
        self._check_options()

        cache_key = self.get_cache_key(path)
        use_cache = self.get_option('cache') and cache
        update_cache = self.get_option('cache') and not cache
        records = None
        if use_cache:
            try:
                cached = self._cache[cache_key]
            except KeyError:
                update_cache = True
            else:
                if isinstance(cached, dict) and cached.get('version') == CACHE_VERSION:
                    records = cached['guests']
                    self.display.vvv('pmx inventory: %d guest(s) from the cache' % len(records))
                else:
                    update_cache = True
        if records is None:
            records, complete = self._fetch()
            if update_cache and complete:
                self._cache[cache_key] = {'version': CACHE_VERSION, 'guests': records}
            elif update_cache:
                self.display.vvv('pmx inventory: a cluster could not be read; the result is not cached')
        started = time.time()
        self._populate(records)
        self.display.vvv('pmx inventory: %d guest(s) added in %.2fs' % (len(records), time.time() - started))

    # ------------------------------------------------------------ options

    def _check_options(self):
        template = self.get_option('hostname_template')
        try:
            render_hostname(template, {'name': 'n', 'vmid': 1, 'cluster': 'c', 'node': 'x', 'type': 'qemu'})
        except (KeyError, IndexError, ValueError) as exc:
            raise AnsibleParserError('hostname_template %r is not valid: %s; use the fields %s, as in {name}'
                                     % (template, to_native(exc), ', '.join(HOSTNAME_FIELDS)))
        if self.get_option('max_workers') < 1:
            raise AnsibleParserError('max_workers must be at least 1')

    def _fail_hard(self):
        value = self.get_option('fail_on_unreachable')
        return self.get_option('strict') if value is None else value

    def _clusters_option(self):
        """The clusters option with templates rendered and vaulted values decrypted (never logged)."""
        out = []
        for entry in self.get_option('clusters') or []:
            if not isinstance(entry, dict):
                raise AnsibleParserError('each entry of clusters must be a dictionary with a name')
            out.append(dict((key, self._plain(value)) for key, value in entry.items()))
        return out

    def _plain(self, value):
        if isinstance(value, (list, tuple)):
            return [self._plain(v) for v in value]
        if value is None or isinstance(value, (bool, int, float)):
            return value
        # Templating decrypts !vault values and renders "{{ lookup(...) }}"; to_text makes a plain str.
        return to_text(self.templar.template(value))

    def _registry(self):
        from ansible_collections.pmx.multicluster.plugins.module_utils.client import HAS_DEPS, IMPORT_ERROR
        from ansible_collections.pmx.multicluster.plugins.module_utils.config import load_config
        from ansible_collections.pmx.multicluster.plugins.module_utils.registry import ClusterRegistry
        if not HAS_DEPS:
            raise AnsibleParserError('the pmx.multicluster.pmx inventory needs proxmoxer and requests in the Python '
                                     'that runs Ansible: pip install proxmoxer requests (%s)' % IMPORT_ERROR)
        env_file = self.get_option('env_file')
        if env_file:
            env_file = os.path.expanduser(env_file)
            if not os.path.isabs(env_file):
                env_file = os.path.join(os.path.dirname(os.path.abspath(self._path)), env_file)
        clusters = self._clusters_option()
        # Every warning and error of this source is scrubbed of every form of every token secret.
        self._scrub = Scrubber(to_text(c['token_secret']) for c in clusters if c.get('token_secret'))
        try:
            config = load_config(env_file=env_file, clusters=clusters,
                                 default_cluster=self.get_option('default_cluster'))
            self._scrub.add(config.secrets)
            registry = ClusterRegistry(config)
            names = registry.match(self.get_option('include_clusters'))
        except ClusterError as exc:
            raise AnsibleParserError(self._scrub('pmx inventory %s: %s' % (self._path, exc)))
        for warning in config.warnings:
            self.display.warning(self._scrub(warning))
        return registry, names

    # -------------------------------------------------------------- fetch

    def _wanted(self, record):
        """The filters that need no Jinja: templates, status, type and tags."""
        if record['template'] and not self.get_option('include_templates'):
            return False
        status, types, tags = self.get_option('status'), self.get_option('types'), self.get_option('tags')
        if status and record['status'] not in status:
            return False
        if types and record['type'] not in types:
            return False
        if tags and not set(tags) & set(record['tags']):
            return False
        return True

    def _fetch(self):
        """Normalised records of the wanted guests of every selected cluster; (records, every cluster read)."""
        registry, names = self._registry()
        started = time.time()
        results = registry.guests(names)
        records, failed = [], []
        by_cluster = {}
        for name in names:
            result = results[name]
            if not result.ok:
                failed.append((name, result.error))
                continue
            cluster = registry.cluster(name)
            wanted = [normalise(cluster, item) for item in result.value or []
                      if item.get('type') in ('qemu', 'lxc') and item.get('vmid') is not None]
            wanted = sorted((r for r in wanted if self._wanted(r)), key=lambda r: r['vmid'])
            by_cluster[name] = wanted
            self.display.vvv("pmx inventory: cluster '%s': %d guest(s) listed, %d wanted (%.2fs)"
                             % (name, len(result.value or []), len(wanted), time.time() - started))
        self._report(failed, 'cannot be read, its guests are not listed')
        if self.get_option('want_config') or self.get_option('want_ips'):
            details = registry.map(lambda name, client: self._details(client, by_cluster[name]), list(by_cluster))
            problems = []
            for name, result in details.items():
                if not result.ok:
                    problems.append((name, result.error))
                elif result.value:
                    shown = '; '.join('%s: %s' % (guest, error) for guest, error in result.value[:SHOW_FAILURES])
                    more = len(result.value) - SHOW_FAILURES
                    tail = ' and %d more' % more if more > 0 else ''
                    problems.append((name, '%d guest(s): %s%s' % (len(result.value), shown, tail)))
            self._report(problems, 'details of some guests cannot be read, they are listed without them')
            failed.extend(problems)
        for name in names:
            records.extend(by_cluster.get(name, []))
        self.display.vvv('pmx inventory: %d guest(s) from %d cluster(s) in %.2fs'
                         % (len(records), len(names) - len(failed), time.time() - started))
        return records, not failed

    def _report(self, failed, what):
        if not failed:
            return
        if self._fail_hard():
            raise AnsibleParserError(self._scrub('pmx inventory %s: %s' % (self._path, '; '.join(
                "cluster '%s' %s: %s" % (name, what, error) for name, error in failed))))
        for name, error in failed:
            self.display.warning(self._scrub("pmx inventory: cluster '%s' %s: %s" % (name, what, error)))

    def _details(self, client, records):
        """Config and/or addresses of one cluster's records, concurrently; returns [(guest, error)]."""
        want_config, want_ips = self.get_option('want_config'), self.get_option('want_ips')
        errors = []

        def one(record):
            base = guest_path(record['type'], record['node'], record['vmid'])
            try:
                config = None
                if want_config:
                    config = client.get(base + '/config') or {}
                    record['config'] = dict((to_text(k), v if isinstance(v, (int, float)) else to_text(v))
                                            for k, v in config.items())
                if want_ips:
                    record['ips'] = self._ips(client, record, base, config)
            except ClusterError as exc:
                errors.append(('%s (vmid %s)' % (record['name'], record['vmid']), exc))

        if records:
            # The client's requests session keeps POOL_SIZE connections per host; more threads would open
            # and discard a TLS connection for most requests.
            with ThreadPoolExecutor(max_workers=min(self.get_option('max_workers'), POOL_SIZE, len(records))) as pool:
                list(pool.map(one, records))
        return errors

    @staticmethod
    def _ips(client, record, base, config):
        return guest_addresses(client, record, config)

    # ----------------------------------------------------------- populate

    def _hostvars(self, record):
        hostvars = dict(zip(HOSTVAR_NAMES, map(record.get, HOSTVAR_FIELDS)))
        if 'config' in record:
            hostvars['pmx_config'] = record['config']
        if 'ips' in record:
            hostvars['pmx_ips'] = record['ips']
        return make_unsafe(hostvars)

    def _passes(self, hostvars):
        for expression in self.get_option('filters'):
            try:
                if not self._compose(expression, hostvars):
                    return False
            except Exception as exc:  # noqa: BLE001 - any template error; strict decides
                if self.get_option('strict'):
                    raise AnsibleParserError('pmx inventory: filter %r failed for %s in cluster %s: %s'
                                             % (expression, hostvars['pmx_name'], hostvars['pmx_cluster'],
                                                to_native(exc)))
                return False
        return True

    def _populate(self, records):
        kept = []
        for record in records:
            hostvars = self._hostvars(record)
            if self._passes(hostvars):
                kept.append((record, hostvars))
        names, duplicates = hostnames([pair[0] for pair in kept], self.get_option('hostname_template'))
        if duplicates:
            self.display.warning('pmx inventory: guest names used more than once, each named with its cluster: %s'
                                 % '; '.join('%s -> %s' % (name, ', '.join(hosts))
                                             for name, hosts in sorted(duplicates.items())))

        prefix = self.get_option('group_prefix')
        strict = self.get_option('strict')
        compose, groups, keyed = self.get_option('compose'), self.get_option('groups'), self.get_option('keyed_groups')
        use_ip = self.get_option('want_ips') and self.get_option('ansible_host_from_ip')
        inventory = self.inventory
        add_child, set_variable = inventory.add_child, inventory.set_variable
        made, nodes = {}, {}

        def group(*parts):
            # Keyed by the parts: the name is built and sanitised once per group, not once per guest.
            found = made.get(parts)
            if found is None:
                raw = prefix + '_'.join(to_text(p) for p in parts)
                found = made[parts] = inventory.add_group(self._sanitize_group_name(raw))
            return found

        top = group('all')
        for (record, hostvars), name in zip(kept, names):
            host = inventory.add_host(name)
            for key, value in hostvars.items():
                set_variable(host, key, value)
            if use_ip and record.get('ips'):
                set_variable(host, 'ansible_host', make_unsafe(record['ips'][0]))

            node_key = (record['cluster'], record['node'])
            node = nodes.get(node_key)
            if node is None:
                # Group-to-group links once per node, not once per guest: populating 1,500 guests is 20% faster.
                cluster = group('cluster', record['cluster'])
                add_child(top, cluster)
                node = nodes[node_key] = group('node', record['cluster'], record['node'])
                add_child(cluster, node)
            add_child(node, host)
            add_child(group('type', record['type']), host)
            add_child(group('status', record['status']), host)
            for tag in record['tags']:
                add_child(group('tag', tag), host)
            for kind in ('pool', 'region', 'tier'):
                if record.get(kind):
                    add_child(group(kind, record[kind]), host)

            if compose:
                self._set_composite_vars(compose, hostvars, host, strict=strict)
            if groups:
                self._add_host_to_composed_groups(groups, hostvars, host, strict=strict)
            if keyed:
                self._add_host_to_keyed_groups(keyed, hostvars, host, strict=strict)
