# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""pmx.multicluster MCP server: several Proxmox VE clusters for an AI assistant, over stdio or streamable HTTP.

Start it from the installed collection (it finds the collection's core by its own path)::

    python <collections path>/ansible_collections/pmx/multicluster/extensions/mcp/pmx_mcp.py [--env-file FILE]
    python .../pmx_mcp.py --transport http [--host 127.0.0.1] [--port 8765] [--token-file FILE]

Over HTTP it listens on loopback by default; any other address needs a bearer token (PMX_MCP_HTTP_TOKEN,
PMX_MCP_HTTP_TOKEN_FILE or --token-file), and with a token every request without it gets 401.

It reads the collection's configuration (PROXMOX_* variables, a .env file from
--env-file or PROXMOX_ENV_FILE) once at start. A bad configuration does not stop
the server: every tool then answers with the configuration error, so the
assistant can show the user what to fix.

Read tools are always there. Write tools exist only with PMX_MCP_ALLOW_WRITE=1;
PMX_MCP_WRITE_CLUSTERS=staging,dr limits them to those clusters. Destructive
writes (every tool annotated DESTRUCTIVE: stop, delete, rollback, prune, restore, migrate, evacuate, disk
moves and detaches, bulk actions) and deploy_guests (GATED_ADDITIVE: many guests created at once) go through
pmx_gate.Gate: a call answers with a preview and a
confirmation token bound to exactly that action, and only the same call with that token and confirm=true
acts. Every preview and write is one JSON line in PMX_MCP_AUDIT_LOG (off by default). Routing, guest
lifecycle and errors are the collection's core (module_utils), the same as the pmx_vm module's.

A read that spans clusters (list_clusters, cluster_status, list_nodes,
list_guests, list_storages, recent_tasks) answers within PMX_MCP_DEADLINE
seconds (default 15): a cluster that has not answered by then is named in the
answer's errors / unreachable list, with the others' results, and is not
asked again for 30 s (the core's memory of failed clusters), so the next
calls answer at once. No tool result, tool error or log line carries a
token secret, in any form (raw, escaped, URL-encoded).

A foreseen failure (a ClusterError) is a tool error whose structured content is
what a failed module returns: ``msg`` and ``error`` (type, cluster, status, upid,
exitstatus, log: ClusterError.details()); see tool_error.
"""

import argparse
import fnmatch
import functools
import json
import logging
import os
import sys
import time
from typing import Annotated, Any, Callable, Dict, List, Literal, Optional, Tuple


def _collections_root(path: str = __file__) -> Optional[str]:
    """The directory holding ``ansible_collections`` when this file is in an installed collection.

    This file is <root>/ansible_collections/pmx/multicluster/extensions/mcp/pmx_mcp.py.
    abspath, not realpath: a collection installed through a symlink keeps its layout.
    """
    here = os.path.dirname(os.path.abspath(path))
    top = here
    for dummy in range(4):
        top = os.path.dirname(top)
    if os.path.basename(top) != 'ansible_collections':
        return None
    return os.path.dirname(top)


_ROOT = _collections_root()
if _ROOT and _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

# pylint: disable=wrong-import-position
import pmx_mcp_answers as answers  # noqa: E402  (beside this file; python puts a script's directory first on sys.path)
from mcp.server.mcpserver import MCPServer  # noqa: E402
from mcp.server.mcpserver.exceptions import ResourceError, ToolError  # noqa: E402
from mcp.types import CallToolResult, TextContent, ToolAnnotations  # noqa: E402
from pydantic import Field  # noqa: E402

from ansible_collections.pmx.multicluster.extensions.mcp import pmx_gate  # noqa: E402
from ansible_collections.pmx.multicluster.extensions.mcp.pmx_gate import (  # noqa: E402
    ConfirmArg,
    ConfirmationRefused,
)
from ansible_collections.pmx.multicluster.extensions.mcp.pmx_results import (  # noqa: E402
    AuditEntries,
    BackupWrite,
    BulkWrite,
    EvacuationWrite,
    GuestItem,
    GuestWrite,
    MigrateWrite,
    RestoreWrite,
    SnapshotWrite,
)
from ansible_collections.pmx.multicluster.plugins.module_utils import backups, fleet, selection, snapshots  # noqa: E402
from ansible_collections.pmx.multicluster.plugins.module_utils.config import load_config  # noqa: E402
from ansible_collections.pmx.multicluster.plugins.module_utils.errors import (  # noqa: E402
    ClusterError,
    ConfigError,
    GuestConflictError,
)
from ansible_collections.pmx.multicluster.plugins.module_utils.guests.lookup import source_type  # noqa: E402
from ansible_collections.pmx.multicluster.plugins.module_utils.guests.manager import GuestManager  # noqa: E402
from ansible_collections.pmx.multicluster.plugins.module_utils.guests.migration import (  # noqa: E402
    Migrator,
    MoveSpec,
    evacuation,
)
from ansible_collections.pmx.multicluster.plugins.module_utils.guests.spec import (  # noqa: E402
    GuestSpec,
    simple_lxc_config,
    simple_vm_config,
)
from ansible_collections.pmx.multicluster.plugins.module_utils.health import (  # noqa: E402
    GUEST_TYPES,
    clusters_health,
    guest_row,
    node_row,
    storage_row,
)
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.checks import check_guest_name, check_vmid  # noqa: E402
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.kinds import (  # noqa: E402
    DEFAULT_TIMEOUT,
    LXC,
    QEMU,
    guest_path,
    kind_of,
)
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.values import as_bool, size_bytes  # noqa: E402
from ansible_collections.pmx.multicluster.plugins.module_utils.redact import Scrubber  # noqa: E402
from ansible_collections.pmx.multicluster.plugins.module_utils.registry import ClusterRegistry  # noqa: E402
from ansible_collections.pmx.multicluster.plugins.module_utils.router import unreadable_error  # noqa: E402

# pylint: enable=wrong-import-position

LOG = logging.getLogger('pmx_mcp')
# Seconds a read across clusters waits for them (PMX_MCP_DEADLINE); the slower ones are reported, not waited for.
DEFAULT_DEADLINE = 15.0

READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=True)
# Additive writes (start, create, snapshot): asking twice changes nothing more.
ADDITIVE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=True)
# Changes state but loses nothing (graceful shutdown, reboot).
DISRUPTIVE = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=True)
# Loses data or running state; needs confirm=true.
DESTRUCTIVE = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=True)
# Additive, but on many guests at once (deploy_guests): behind the confirmation gate as DESTRUCTIVE tools are.
GATED_ADDITIVE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True,
                                 open_world_hint=True)

# ------------------------------------------------------------------ parameter types (JSON schema + descriptions)

# The paging parameters every list tool ends with (answers.paged pages them).
Limit, Cursor, SummaryArg = answers.LimitArg, answers.CursorArg, answers.SummaryArg
DEFAULT_LIMIT = answers.DEFAULT_LIMIT
LIST_RULES = ('List tools answer at most `limit` rows (default %d) with `total` (how many match in all) and '
              '`next_cursor` for the next page; `fields` keeps only the columns you need and summary=true gives '
              'counts instead of rows: use them rather than asking for everything.' % DEFAULT_LIMIT)

ClusterArg = Annotated[Optional[str], Field(
    description='Cluster name. Optional: without it the guest is routed by its name pattern (prod-* ...), '
                'then by where it exists, then to the default cluster.')]
ClusterFilter = Annotated[Optional[str], Field(
    description="Cluster name or glob (e.g. 'production', 'st*'). Optional: all clusters when omitted.")]
NameArg = Annotated[Optional[str], Field(description="Guest name (e.g. 'stg-web01'). Give name or vmid.")]
VmidArg = Annotated[Optional[int], Field(
    description='Guest id (vmid). Give name or vmid; vmids repeat across clusters, so give cluster with a bare vmid.',
    ge=1)]
TimeoutArg = Annotated[int, Field(description='Seconds to wait for the Proxmox task(s).', ge=1, le=3600)]


class Pmx:
    """The server's state: the configuration (read once), the registry and the write settings."""

    def __init__(self, environ: Dict[str, str], env_file: Optional[str] = None, scrub: Optional[Scrubber] = None):
        self.registry = None
        self.config_error: Optional[ClusterError] = None
        # Masks every form of every token secret in tool results, tool errors and (shared with it) the log.
        self.scrub = scrub if scrub is not None else Scrubber()
        self.deadline = DEFAULT_DEADLINE
        self.allow_write = as_bool(environ.get('PMX_MCP_ALLOW_WRITE', '')) is True
        self.write_setting = [c.strip() for c in environ.get('PMX_MCP_WRITE_CLUSTERS', '').split(',') if c.strip()]
        self.write_clusters: Optional[List[str]] = None  # None: every cluster
        self.write_error: Optional[ClusterError] = None
        # The confirmation gate and the audit log (pmx_gate); a bad PMX_MCP_CONFIRM_TTL is a configuration error.
        self.gate = pmx_gate.Gate(elicit=as_bool(environ.get('PMX_MCP_ELICIT', '')) is True)
        self.audit = pmx_gate.Audit(environ.get('PMX_MCP_AUDIT_LOG', '').strip() or None, self.scrub.deep)
        try:
            self.gate.ttl = pmx_gate.confirm_ttl(environ)
            self.audit.check()
            config = load_config(environ=environ, env_file=env_file)
            self.scrub.add(config.secrets)
            self.deadline = _deadline(environ)
            self.registry = ClusterRegistry(config, lookup_deadline=self.deadline)
            for warning in config.warnings:
                LOG.warning('%s', warning)
        except ClusterError as exc:
            self.config_error = exc
            LOG.warning('configuration error (every tool will report it): %s', exc)
            return
        if self.write_setting:
            try:
                self.write_clusters = self.registry.match(self.write_setting)
            except ClusterError as exc:
                self.write_error = ConfigError('PMX_MCP_WRITE_CLUSTERS: %s; no write is allowed until it is fixed'
                                               % exc)
                LOG.warning('%s', self.write_error)

    # ------------------------------------------------------------ helpers

    def reg(self) -> ClusterRegistry:
        if self.config_error is not None:
            raise self.config_error
        return self.registry

    def order(self, cluster: str) -> int:
        """A cluster's place in the configuration: the first column of the order of every list across clusters."""
        return self.reg().names.index(cluster)

    def writes(self) -> Dict:
        clusters: Any = []
        if self.allow_write and self.write_error is None:
            clusters = self.write_clusters if self.write_clusters is not None else 'all'
        return {'enabled': self.allow_write, 'clusters': clusters, 'error': str(self.write_error or '') or None,
                'PMX_MCP_WRITE_CLUSTERS': ','.join(self.write_setting) or None,
                'how_to_enable': None if self.allow_write else 'restart the server with PMX_MCP_ALLOW_WRITE=1'}

    def writable(self, cluster: str) -> bool:
        """Whether a write routed to this cluster would be allowed."""
        return self.allow_write and self.write_error is None and (self.write_clusters is None
                                                                  or cluster in self.write_clusters)

    def check_writable(self, cluster: str) -> None:
        """:raises ClusterError: writes are off, or the routed cluster is not in PMX_MCP_WRITE_CLUSTERS."""
        if not self.allow_write:
            raise ClusterError('writes are disabled on this MCP server; start it with PMX_MCP_ALLOW_WRITE=1 to allow '
                               'them')
        if self.write_error is not None:
            raise self.write_error
        if self.write_clusters is not None and cluster not in self.write_clusters:
            raise ClusterError("writes to cluster '%s' are not allowed by this MCP server (PMX_MCP_WRITE_CLUSTERS=%s); "
                               "nothing was changed" % (cluster, ','.join(self.write_setting)), cluster)

    def clusters(self, selector: Optional[str]) -> List[str]:
        return self.reg().match([selector] if selector else None)

    @staticmethod
    def errors(results) -> List[Dict]:
        return [{'cluster': name, 'error': str(r.error)} for name, r in results.items() if not r.ok]

    def locate(self, name: Optional[str], vmid: Optional[int], cluster: Optional[str], write: bool = True):
        """(route, client, /cluster/resources entry) of an existing guest, routed as the modules route.

        For a write the route is strict (a lookup that could not read every cluster is refused); a read
        answers from what it could read, and ``route.unreadable`` names the rest.
        """
        check_guest_name(name)
        check_vmid(vmid)
        return self.reg().find_guest(name=name, vmid=vmid, cluster=cluster, strict=write)

    @staticmethod
    def summary(guest: Dict) -> Dict:
        return {'name': guest.get('name'), 'vmid': int(guest['vmid']), 'type': guest.get('type'),
                'node': guest.get('node'), 'status': guest.get('status'), 'template': bool(guest.get('template'))}

    def manager(self, guest_type: str) -> GuestManager:
        return GuestManager(self.reg(), kind=kind_of(guest_type))

    def existing(self, name, vmid, cluster, **spec):
        """(route, entry, manager, spec) of an existing guest for a write: routed strictly, writes allowed there."""
        route, dummy, guest = self.locate(name, vmid, cluster)
        self.check_writable(route.cluster)
        spec = GuestSpec(name=guest.get('name'), vmid=int(guest['vmid']), cluster=cluster, update=False, **spec)
        return route, guest, self.manager(guest['type']), spec

    def ensure(self, state: str, name, vmid, cluster, **spec) -> Dict:
        """Route and locate an existing guest, check the write settings, then the core's ensure()."""
        route, dummy, manager, spec = self.existing(name, vmid, cluster, **spec)
        return self.write_result(route, manager.ensure(state, spec, route=route))

    def plan(self, state: str, name, vmid, cluster, **spec) -> Tuple[Any, Dict, List[Dict]]:
        """(route, entry, the core's plan as steps) for a preview: what ensure() would do, nothing written."""
        route, guest, manager, spec = self.existing(name, vmid, cluster, **spec)
        plan = manager.prepare(state, spec, route)[3]
        return route, guest, [step.as_dict() for step in plan.steps]

    @staticmethod
    def unread(route) -> List[Dict]:
        """The clusters a read's lookup could not read, for the answer."""
        return [{'cluster': name, 'error': error} for name, error in route.unreadable.items()]

    @staticmethod
    def write_result(route, result: Dict) -> Dict:
        out = {'cluster': route.cluster, 'route_reason': route.reason}
        out.update((k, v) for k, v in result.items() if k not in ('cluster', 'route_reason', 'diff'))
        return out


def _deadline(environ: Dict[str, str]) -> float:
    """PMX_MCP_DEADLINE in seconds (DEFAULT_DEADLINE when unset)."""
    return pmx_gate.seconds_setting(environ, 'PMX_MCP_DEADLINE', DEFAULT_DEADLINE)


def tool_error(scrub: Scrubber, tool_name: str, exc: ClusterError) -> CallToolResult:
    """A tool error (``isError``) that carries the failure as data, as a failed module does.

    Its text is what the SDK makes of a raised ToolError; its structured content is a failed module's
    ``msg`` and ``error`` (``ClusterError.details()``: type, cluster, status, upid, exitstatus, log), both
    scrubbed. A client that ignores ``structuredContent`` on errors still reads the message.
    """
    message = scrub(str(exc))
    text = 'Error executing tool %s: %s' % (tool_name, message)
    return CallToolResult(content=[TextContent(type='text', text=text)],
                          structured_content={'msg': message, 'error': scrub.deep(exc.details())}, is_error=True)


# ------------------------------------------------------------------ the tools

def refused_result(scrub: Scrubber, tool_name: str, exc: ConfirmationRefused) -> CallToolResult:
    """A refused confirmation: a tool error whose structured content carries the fresh preview (and its new
    token); its text has the message, then the preview as JSON, for a client that reads only text."""
    result = tool_error(scrub, tool_name, exc)
    result.content.append(TextContent(type='text', text=json.dumps(scrub.deep(exc.preview), default=str)))
    return result


def guarded(pmx: Pmx, fn: Callable, annotations: ToolAnnotations) -> Callable:
    """A tool function as the server calls it: a destructive one behind the confirmation gate, a write recorded
    in the audit log, a foreseen failure turned into a tool error, every answer scrubbed of secrets."""
    name = fn.__name__
    body = pmx.gate.wrap(fn) if annotations is DESTRUCTIVE or annotations is GATED_ADDITIVE else fn
    audited = not annotations.read_only_hint

    @functools.wraps(body)
    def wrapper(*args, **kwargs):
        started = time.monotonic()
        try:
            result = body(*args, **kwargs)
        except ConfirmationRefused as exc:
            pmx.audit.record(name, kwargs, started, error=exc)
            return refused_result(pmx.scrub, name, exc)
        except ClusterError as exc:
            if audited:
                pmx.audit.record(name, kwargs, started, error=exc)
            return tool_error(pmx.scrub, name, exc)
        except Exception as exc:  # pylint: disable=broad-exception-caught
            # Unforeseen: one line on stderr (no traceback, no request data), a short tool error.
            LOG.warning('%s failed unexpectedly: %s: %s', name, type(exc).__name__, pmx.scrub(str(exc)))
            raise ToolError('internal error in pmx_mcp (%s); see the server log' % type(exc).__name__) from None
        if audited:
            entry = pmx.audit.record(name, kwargs, started, result=result)
            if entry and entry.get('audit_error') and isinstance(result, dict):
                LOG.warning('%s', entry['audit_error'])
                result = dict(result, audit_error=entry['audit_error'])
        return pmx.scrub.deep(result)
    return wrapper


def build_server(pmx: Pmx, **options) -> MCPServer:
    """The MCP server with its read tools, and its write tools when writes are enabled.

    ``options`` go to MCPServer (the HTTP transport's bearer auth)."""
    writes = ('Write tools are enabled%s.' % (' for clusters ' + ', '.join(pmx.write_clusters)
                                              if pmx.write_clusters is not None else '')
              if pmx.allow_write
              else 'Write tools are disabled (the server was started without PMX_MCP_ALLOW_WRITE=1).')
    server = MCPServer(
        name='pmx-multicluster', version=answers.collection_version(), log_level='WARNING',
        instructions='Several Proxmox VE clusters managed as one. A guest is routed to its cluster by an explicit '
                     'cluster, else its name pattern (see list_clusters and route_guest), else where it exists, '
                     'else the default cluster. Cluster-wide reads cover every cluster; one that is down is '
                     'reported in the answer. ' + writes + ' Destructive tools (stop, delete, rollback, '
                     'prune, restore, migrate, evacuate, disk moves and detaches, bulk actions) act in two steps: '
                     'the first call answers with a preview and a confirmation_token; show the preview to the '
                     'user, and only on their approval call again with the same arguments, confirm=true and '
                     'that token (valid %d s, once). ' % int(pmx.gate.ttl) + LIST_RULES,
        middleware=[pmx_gate.ClientInfo()], **options)

    def tool(annotations: ToolAnnotations, title: str):
        def register(fn: Callable) -> Callable:
            answers.add_tool(server, guarded(pmx, fn, annotations), name=fn.__name__, title=title,
                             annotations=annotations)
            return fn
        return register

    # -------------------------------------------------------------- reads

    # Every list tool ends with limit, cursor, fields and summary, and answers through answers.paged; rows
    # across clusters are ordered by the cluster's place in the configuration first.
    order = pmx.order

    @tool(READ, 'List clusters with health')
    def list_clusters(limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None,
                      fields: answers.fields_arg(answers.HealthRow) = None,
                      summary: SummaryArg = False) -> answers.ClusterList:
        """Every configured cluster with its health (version, quorum, nodes online, guest counts), its routing
        patterns, region and tier. Clusters are queried concurrently; an unreachable one is listed with
        reachable=false and the error, it does not fail the call. summary=true counts by reachable, tier,
        region."""
        registry = pmx.reg()
        health = clusters_health(registry, deadline=pmx.deadline)
        rows, page = answers.paged('list_clusters', health, lambda c: (order(c['name']),),
                                   ('reachable', 'tier', 'region'), {}, limit, cursor, fields, summary)
        return dict({'clusters': rows, 'default_cluster': registry.config.default_cluster,
                     'reachable': [c['name'] for c in health if c['reachable']],
                     'unreachable': [{'cluster': c['name'], 'error': c['error']} for c in health if not c['reachable']],
                     'prefix_patterns': [{'prefix': p, 'cluster': c} for p, c in registry.config.prefix_patterns],
                     'writes': pmx.writes()}, **page)

    @tool(READ, 'One cluster in detail')
    def cluster_status(cluster: Annotated[str, Field(description='Cluster name.')]) -> answers.HealthDetail:
        """Health of one cluster: reachability, version, quorum, every node with CPU/memory/uptime, guest counts
        and storages. An unreachable cluster is answered with reachable=false and the error."""
        registry = pmx.reg()
        name = registry.router.resolve_cluster(cluster)
        info = clusters_health(registry, [name], storages=True, deadline=pmx.deadline)[0]
        info['is_default'] = name == registry.config.default_cluster
        info['writable'] = pmx.writable(name)
        return info

    @tool(READ, 'List nodes')
    def list_nodes(cluster: ClusterFilter = None, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None,
                   fields: answers.fields_arg(answers.ClusterNodeRow) = None,
                   summary: SummaryArg = False) -> answers.NodeList:
        """The nodes of one cluster, or of all clusters (queried concurrently), with status, CPU, memory and
        uptime, ordered by cluster and name. A cluster that cannot be reached is listed under errors.
        summary=true counts by cluster, status."""
        names = pmx.clusters(cluster)
        results = pmx.reg().map(lambda name, client: client.get('nodes') or [], names, deadline=pmx.deadline)
        nodes = [dict({'cluster': name}, **node_row(node)) for name, result in results.items()
                 for node in result.value or []]
        rows, page = answers.paged('list_nodes', nodes, lambda n: (order(n['cluster']), n['name'] or ''),
                                   ('cluster', 'status'), {'cluster': cluster}, limit, cursor, fields, summary)
        return dict({'nodes': rows, 'clusters': names, 'errors': pmx.errors(results)}, **page)

    @tool(READ, 'List guests (VMs and containers)')
    def list_guests(cluster: ClusterFilter = None,
                    status: Annotated[Optional[Literal['running', 'stopped', 'paused']], Field(
                        description='Only guests in this state.')] = None,
                    type: Annotated[Optional[Literal['qemu', 'lxc']], Field(  # pylint: disable=redefined-builtin
                        description="Only VMs ('qemu') or only containers ('lxc').")] = None,
                    name_pattern: Annotated[Optional[str], Field(
                        description="Only names matching this glob, e.g. 'stg-web*'.")] = None,
                    tag: Annotated[Optional[str], Field(description='Only guests with this tag.')] = None,
                    include_templates: Annotated[bool, Field(description='Also list templates.')] = True,
                    limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None,
                    fields: answers.fields_arg(answers.ClusterGuestRow) = None,
                    summary: SummaryArg = False) -> answers.GuestList:
        """Guests of every cluster (or of the clusters matching `cluster`), queried concurrently, each with its
        cluster, vmid, name, type, status, node and tags, ordered by cluster and vmid. At most `limit` rows per
        answer: `total` says how many match in all, `next_cursor` gives the next page; `fields` trims the
        rows and summary=true counts by cluster, status, type, tag instead. A cluster that is down is listed
        under errors and the others are still answered."""
        names = pmx.clusters(cluster)
        results = pmx.reg().guests(names, deadline=pmx.deadline)
        guests = []
        for name, result in results.items():
            for guest in result.value or []:
                if guest.get('type') not in GUEST_TYPES:
                    continue
                row = dict({'cluster': name}, **guest_row(guest))
                if ((status and row['status'] != status) or (type and row['type'] != type)
                        or (name_pattern and not fnmatch.fnmatchcase(row['name'] or '', name_pattern))
                        or (tag and tag.lower() not in [t.lower() for t in row['tags']])
                        or (row['template'] and not include_templates)):
                    continue
                guests.append(row)
        rows, page = answers.paged('list_guests', guests, lambda g: (order(g['cluster']), g['vmid']),
                                   ('cluster', 'status', 'type', 'tag'),
                                   {'cluster': cluster, 'status': status, 'type': type, 'name_pattern': name_pattern,
                                    'tag': tag, 'include_templates': include_templates},
                                   limit, cursor, fields, summary)
        return dict({'guests': rows, 'clusters': names, 'errors': pmx.errors(results)}, **page)

    @tool(READ, 'One guest: status and config')
    def guest_details(name: NameArg = None, vmid: VmidArg = None,
                      cluster: ClusterArg = None) -> answers.GuestDetails:
        """Current status and configuration of one guest, found by name or vmid. Without cluster the guest is
        routed (name pattern, then where it exists); the answer says which cluster and why."""
        route, client, guest = pmx.locate(name, vmid, cluster, write=False)
        base = guest_path(guest['type'], guest['node'], guest['vmid'])
        current = client.get(base + '/status/current') or {}
        config = dict(client.get(base + '/config') or {})
        config.pop('digest', None)
        keep = ('status', 'qmpstatus', 'uptime', 'cpu', 'cpus', 'mem', 'maxmem', 'disk', 'maxdisk', 'netin', 'netout',
                'lock', 'ha', 'pid', 'running-machine', 'running-qemu', 'tags')
        return {'cluster': route.cluster, 'route_reason': route.reason, 'guest': pmx.summary(guest),
                'status': dict((k, v) for k, v in current.items() if k in keep), 'config': config,
                'snapshots': snapshots.list_snapshots(client, guest['type'], guest['node'], guest['vmid']),
                'unreadable': pmx.unread(route), 'backups': _guest_backups(client, route.cluster, guest)}

    @tool(READ, 'List storages')
    def list_storages(cluster: ClusterFilter = None, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None,
                      fields: answers.fields_arg(answers.ClusterStorageRow) = None,
                      summary: SummaryArg = False) -> answers.StorageList:
        """Storages of every node of one cluster or of all clusters (concurrently): type, content, usage,
        shared or not, ordered by cluster, node and storage. A cluster that cannot be reached is listed under
        errors. summary=true counts by cluster, status, plugintype, shared."""
        names = pmx.clusters(cluster)
        results = pmx.reg().map(lambda name, client: client.get('cluster/resources', type='storage') or [], names,
                                deadline=pmx.deadline)
        storages = [dict({'cluster': name}, **storage_row(res)) for name, result in results.items()
                    for res in result.value or []]
        rows, page = answers.paged('list_storages', storages,
                                   lambda r: (order(r['cluster']), r['node'] or '', r['storage'] or ''),
                                   ('cluster', 'status', 'plugintype', 'shared'), {'cluster': cluster}, limit, cursor,
                                   fields, summary)
        return dict({'storages': rows, 'clusters': names, 'errors': pmx.errors(results)}, **page)

    @tool(READ, 'Recent Proxmox tasks')
    def recent_tasks(cluster: ClusterFilter = None,
                     errors_only: Annotated[bool, Field(description='Only tasks that did not end OK.')] = False,
                     limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None,
                     fields: answers.fields_arg(answers.TaskRow) = None,
                     summary: SummaryArg = False) -> answers.TaskList:
        """The most recent tasks (create, start, backup, migrate...) of one cluster or of all clusters, newest
        first, with type, guest id, node, user, start/end time and result. summary=true counts by cluster,
        type, status."""
        names = pmx.clusters(cluster)
        results = pmx.reg().map(lambda name, client: client.get('cluster/tasks') or [], names, deadline=pmx.deadline)
        tasks = []
        for name, result in results.items():
            for task in result.value or []:
                row = {'cluster': name, 'upid': task.get('upid'), 'type': task.get('type'), 'id': task.get('id'),
                       'node': task.get('node'), 'user': task.get('user'), 'starttime': task.get('starttime'),
                       'endtime': task.get('endtime'), 'status': task.get('status') or 'running'}
                if errors_only and row['status'] in ('OK', 'running'):
                    continue
                tasks.append(row)
        rows, page = answers.paged('recent_tasks', tasks,
                                   lambda t: (-(t['starttime'] or 0), order(t['cluster']), t['upid'] or ''),
                                   ('cluster', 'type', 'status'), {'cluster': cluster, 'errors_only': errors_only},
                                   limit, cursor, fields, summary)
        return dict({'tasks': rows, 'clusters': names, 'errors': pmx.errors(results)}, **page)

    @tool(READ, 'Which cluster would a guest name go to')
    def route_guest(name: Annotated[str, Field(description='Guest name, existing or not.')]) -> answers.Route:
        """Which cluster a guest with this name belongs to, and why: its name pattern (e.g. "pattern 'stg-*'"),
        the cluster where it already exists ('located'), or 'default'. The same routing as the modules use,
        with the same safety rules: `unreadable` lists clusters the lookup could not read, and `write_refused`
        says why a write (a create, or a change of this guest) would be refused now, with what to do."""
        registry = pmx.reg()
        check_guest_name(name)
        route = registry.select(name=name, lookup=True, strict=False)
        refused = None
        if route.unreadable and not route.by_rule:
            refused = str(unreadable_error("the guest named '%s'" % name, route.located, route.unreadable))
        elif route.by_rule:
            try:
                registry.check_not_elsewhere(route, name)
            except ClusterError as exc:
                refused = 'a create would be refused: %s' % exc
        return {'name': name, 'cluster': route.cluster, 'reason': route.reason, 'located': route.located,
                'pattern_matches': registry.router.pattern_matches(name),
                'writable': pmx.writable(route.cluster), 'unreadable': pmx.unread(route), 'write_refused': refused}

    @tool(READ, 'List snapshots of a guest')
    def snapshot_list(name: NameArg = None, vmid: VmidArg = None, cluster: ClusterArg = None,
                      limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None,
                      fields: answers.fields_arg(answers.SnapshotRow) = None,
                      summary: SummaryArg = False) -> answers.SnapshotList:
        """The snapshots of one guest, oldest first; `current` marks the one the guest runs from. summary=true
        counts by state, vmstate."""
        route, client, guest = pmx.locate(name, vmid, cluster, write=False)
        snaps = snapshots.list_snapshots(client, guest['type'], guest['node'], guest['vmid'])
        rows, page = answers.paged('snapshot_list', snaps, lambda s: (s['snaptime'] or 0, s['name'] or ''),
                                   ('state', 'vmstate'), {'cluster': route.cluster, 'vmid': int(guest['vmid'])},
                                   limit, cursor, fields, summary)
        return dict({'cluster': route.cluster, 'route_reason': route.reason, 'guest': pmx.summary(guest),
                     'snapshots': rows, 'unreadable': pmx.unread(route)}, **page)

    _resources_and_prompts(pmx, server)

    if pmx.allow_write:
        _write_tools(pmx, tool)
        _migration_tools(pmx, tool)
        _snapshot_disk_tools(pmx, tool)
        _fleet_tools(pmx, tool)
        _deploy_tools(pmx, tool)
    _backup_tools(pmx, tool)
    _audit_tools(pmx, tool)
    return server


def _audit_tools(pmx: Pmx, tool) -> None:
    """audit_log: the records of PMX_MCP_AUDIT_LOG (always there; it says so when the log is off)."""

    @tool(READ, 'Audit log of previews and writes')
    def audit_log(limit: Annotated[int, Field(description='How many records, newest first.', ge=1, le=1000)] = 50,
                  tool_name: Annotated[Optional[str], Field(description="Only this tool's records, e.g. "
                                                                        "'delete_guest'.")] = None,
                  cluster: Annotated[Optional[str], Field(description='Only records touching this cluster.')] = None,
                  event: Annotated[Optional[Literal['preview', 'refused', 'write']], Field(
                      description='Only previews, refused confirmations or writes.')] = None,
                  outcome: Annotated[Optional[Literal['preview', 'refused', 'changed', 'unchanged', 'failed']], Field(
                      description='Only records with this outcome.')] = None,
                  since: Annotated[Optional[str], Field(
                      description="Only records from this time on (ISO 8601, UTC, e.g. '2026-12-02T06:00').")]
                  = None) -> AuditEntries:
        """What this server (and any other writing the same PMX_MCP_AUDIT_LOG file) previewed and changed:
        one record per preview, refused confirmation and write, with time, tool, arguments, cluster, route reason,
        plan, Proxmox task ids, outcome and the MCP client's name. Newest first; `matched` counts them all."""
        return pmx.audit.read(limit=limit, tool=tool_name, cluster=cluster, event=event, outcome=outcome,
                              since=since)


def _label(guest: Dict) -> str:
    return "%s '%s' (vmid %s) on node %s" % ('container' if guest.get('type') == 'lxc' else 'VM',
                                             guest.get('name'), guest.get('vmid'), guest.get('node'))


def _previewer(pmx: Pmx):
    def preview(route, guest: Dict, would: str, tool_name: str, **extra) -> Dict:
        """A destructive tool's preview of one guest (the gate adds the confirmation token)."""
        out = {'preview': True, 'changed': False, 'cluster': route.cluster, 'route_reason': route.reason,
               'guest': pmx.summary(guest), 'current_status': guest.get('status'), 'would': would,
               'to_confirm': 'call %s again with the same arguments and confirm=true' % tool_name}
        out.update(extra)
        return out
    return preview


def _write_tools(pmx: Pmx, tool) -> None:
    """Register the write tools (only called with PMX_MCP_ALLOW_WRITE=1)."""
    preview = _previewer(pmx)
    label = _label

    @tool(ADDITIVE, 'Start a guest')
    def start_guest(name: NameArg = None, vmid: VmidArg = None, cluster: ClusterArg = None,
                    timeout: TimeoutArg = DEFAULT_TIMEOUT) -> GuestWrite:
        """Start a VM or container (nothing to do if it runs). Returns cluster, route reason, status and the
        Proxmox task result."""
        return pmx.ensure('started', name, vmid, cluster, timeout=timeout)

    @tool(DISRUPTIVE, 'Shut a guest down gracefully')
    def shutdown_guest(name: NameArg = None, vmid: VmidArg = None, cluster: ClusterArg = None,
                       timeout: TimeoutArg = DEFAULT_TIMEOUT,
                       force: Annotated[bool, Field(description='Stop it hard if it has not shut down within timeout.')]
                       = False) -> GuestWrite:
        """Ask the guest's OS to shut down (ACPI / guest agent) and wait for it. Nothing to do if it is stopped."""
        return pmx.ensure('stopped', name, vmid, cluster, timeout=timeout, force=force)

    @tool(DISRUPTIVE, 'Reboot a guest')
    def reboot_guest(name: NameArg = None, vmid: VmidArg = None, cluster: ClusterArg = None,
                     timeout: TimeoutArg = DEFAULT_TIMEOUT) -> GuestWrite:
        """Reboot a running guest (a stopped one is started). Returns cluster, route reason and task result."""
        return pmx.ensure('restarted', name, vmid, cluster, timeout=timeout)

    @tool(DESTRUCTIVE, 'Stop a guest hard (power off)')
    def stop_guest(name: NameArg = None, vmid: VmidArg = None, cluster: ClusterArg = None,
                   confirm: ConfirmArg = False, timeout: TimeoutArg = DEFAULT_TIMEOUT) -> GuestWrite:
        """Power a guest off at once, like pulling the plug (unsaved data in it is lost). Prefer shutdown_guest.
        Without confirm=true it only returns a preview."""
        route, guest, steps = pmx.plan('stopped', name, vmid, cluster, timeout=timeout, hard_stop=True)
        if not confirm:
            return preview(route, guest, ('power off the running %s at once, without a shutdown' % label(guest))
                           if steps else 'nothing: %s is already %s' % (label(guest), guest.get('status')),
                           'stop_guest', plan=steps)
        return pmx.ensure('stopped', name, vmid, cluster, timeout=timeout, hard_stop=True)

    @tool(DESTRUCTIVE, 'Delete a guest')
    def delete_guest(name: NameArg = None, vmid: VmidArg = None, cluster: ClusterArg = None,
                     confirm: ConfirmArg = False,
                     purge: Annotated[bool, Field(description='Also remove it from backup jobs, HA and replication, '
                                                              'and destroy unreferenced disks.')] = False,
                     timeout: TimeoutArg = DEFAULT_TIMEOUT) -> GuestWrite:
        """Destroy a VM or container and its disks (a running one is stopped first). Cannot be undone. Without
        confirm=true it only returns a preview of what would be deleted."""
        if not confirm:
            route, guest, steps = pmx.plan('absent', name, vmid, cluster, purge=purge, timeout=timeout)
            return preview(route, guest, '%sdestroy %s and its disks on cluster %s; this cannot be undone'
                           % ('stop and ' if guest.get('status') == 'running' else '', label(guest), route.cluster),
                           'delete_guest', plan=steps)
        return pmx.ensure('absent', name, vmid, cluster, purge=purge, timeout=timeout)

    @tool(ADDITIVE, 'Create a VM (routed by name)')
    def create_vm(name: Annotated[str, Field(description="Name of the new VM; it decides the cluster (e.g. 'stg-*' "
                                                         "goes to staging).")],
                  cores: Annotated[int, Field(description='CPU cores.', ge=1, le=512)] = 2,
                  memory: Annotated[int, Field(description='Memory in MiB.', ge=16)] = 2048,
                  disk_gb: Annotated[int, Field(description='Size of the first disk (scsi0) in GiB; 0 for none.',
                                                ge=0)] = 16,
                  storage: Annotated[Optional[str], Field(description="Storage of the disk; default: the cluster's "
                                                                      "DEFAULT_STORAGE, else local-lvm.")] = None,
                  bridge: Annotated[Optional[str], Field(description="Bridge of net0; default: the cluster's "
                                                                     "DEFAULT_BRIDGE, else vmbr0.")] = None,
                  node: Annotated[Optional[str], Field(description='Node; default: the cluster default node, else '
                                                                   'the online node with most free memory.')] = None,
                  vmid: VmidArg = None, cluster: ClusterArg = None,
                  tags: Annotated[Optional[List[str]], Field(description='Tags.')] = None,
                  start: Annotated[bool, Field(description='Start it once created.')] = False,
                  timeout: TimeoutArg = DEFAULT_TIMEOUT) -> GuestWrite:
        """Create a new VM on the cluster its name routes to. If a VM with that name exists there, nothing is
        changed (changed=false). Returns cluster, route reason, vmid, node (and why) and the task results."""
        registry = pmx.reg()
        check_guest_name(name, 'VM')  # before any request
        check_vmid(vmid)
        route = registry.select(cluster=cluster, name=name, vmid=vmid, lookup=True)
        pmx.check_writable(route.cluster)
        # A disk and a net that name no storage or bridge get the cluster's DEFAULT_STORAGE / DEFAULT_BRIDGE from
        # the core, as in pmx_vm; this server's documented fallbacks apply when the cluster has none.
        config = simple_vm_config(cores, memory, disk_gb, storage, bridge, tags)
        result = GuestManager(registry, kind=QEMU).ensure('started' if start else 'present', GuestSpec(
            name=name, vmid=vmid, cluster=cluster, node=node, config=config, update=False, timeout=timeout,
            fallback_storage='local-lvm', fallback_bridge='vmbr0'), route=route)
        return pmx.write_result(route, result)

    @tool(ADDITIVE, 'Clone a guest or template')
    def clone_guest(source: Annotated[str, Field(description='Name or vmid of the template or guest to clone; it '
                                                             'must be on the cluster the new name routes to.')],
                    name: Annotated[str, Field(description='Name of the new guest; it decides the cluster.')],
                    cluster: ClusterArg = None, vmid: VmidArg = None,
                    node: Annotated[Optional[str], Field(description='Target node; default: the source node.')] = None,
                    full: Annotated[Optional[bool], Field(
                        description='Full clone (true) or linked clone of a template (false); default: PVE decides.')]
                    = None,
                    start: Annotated[bool, Field(description='Start it once cloned.')] = False,
                    timeout: TimeoutArg = DEFAULT_TIMEOUT) -> GuestWrite:
        """Clone a template or guest into a new guest named `name`, on the cluster that name routes to. If a guest
        with that name exists there, nothing is changed. Returns cluster, route reason and the task results."""
        registry = pmx.reg()
        check_guest_name(name)  # before any request
        check_vmid(vmid)
        route = registry.select(cluster=cluster, name=name, vmid=vmid, lookup=True)
        pmx.check_writable(route.cluster)
        resources = registry.client(route.cluster).get('cluster/resources', type='vm') or []
        text = str(source).strip()
        result = pmx.manager(source_type(resources, text)).ensure('started' if start else 'present', GuestSpec(
            name=name, vmid=vmid, cluster=cluster, node=node, clone=text, full=full, update=False,
            timeout=timeout), route=route)
        return pmx.write_result(route, result)

    @tool(ADDITIVE, 'Take a snapshot')
    def snapshot_create(snapname: Annotated[str, Field(description="Snapshot name: a letter, then letters, digits, "
                                                                   "'-' or '_' (2-40 characters).")],
                        name: NameArg = None, vmid: VmidArg = None, cluster: ClusterArg = None,
                        description: Annotated[Optional[str], Field(description='Snapshot description.')] = None,
                        vmstate: Annotated[bool, Field(description="Include a running VM's RAM.")] = False,
                        timeout: TimeoutArg = DEFAULT_TIMEOUT) -> SnapshotWrite:
        """Take a snapshot of a guest. If a snapshot of that name exists, nothing is changed (changed=false)."""
        snapshots.check_name(snapname)  # before any request
        route, client, guest = pmx.locate(name, vmid, cluster)
        pmx.check_writable(route.cluster)
        done = snapshots.ensure_snapshot(client, guest, snapname, description, vmstate, timeout, route.cluster)
        return dict({'cluster': route.cluster, 'route_reason': route.reason, 'guest': pmx.summary(guest)}, **done)

    @tool(DESTRUCTIVE, 'Roll a guest back to a snapshot')
    def snapshot_rollback(snapname: Annotated[str, Field(description='The snapshot to roll back to.')],
                          name: NameArg = None, vmid: VmidArg = None, cluster: ClusterArg = None,
                          confirm: ConfirmArg = False,
                          start: Annotated[bool, Field(description='Start the guest after the rollback.')] = False,
                          timeout: TimeoutArg = DEFAULT_TIMEOUT) -> SnapshotWrite:
        """Roll a guest back to a snapshot: every change since the snapshot is lost. Without confirm=true it only
        returns a preview."""
        route, client, guest = pmx.locate(name, vmid, cluster)
        pmx.check_writable(route.cluster)
        snap = snapshots.find_snapshot(client, guest['type'], guest['node'], guest['vmid'], snapname, route.cluster)
        if not confirm:
            return preview(route, guest, "roll %s back to snapshot '%s'; every change made since then (disks and "
                           "config) is lost%s" % (label(guest), snapname, ', and the running guest is stopped'
                                                  if guest.get('status') == 'running' else ''),
                           'snapshot_rollback', snapshot=snap)
        done = snapshots.rollback(client, guest, snapname, start, timeout, route.cluster)
        status = (pmx.reg().find_guest(vmid=int(guest['vmid']), cluster=route.cluster)[2] or {}).get('status')
        return dict({'cluster': route.cluster, 'route_reason': route.reason, 'guest': pmx.summary(guest),
                     'status': status}, **done)


def _fleet_tools(pmx: Pmx, tool) -> None:
    """The bulk tool over a selection of guests (only with writes enabled): the pmx_guest_action core."""

    @tool(DESTRUCTIVE, 'Act on a selection of guests (bulk)')
    def bulk_guest_action(
            action: Annotated[Literal['start', 'shutdown', 'stop', 'reboot', 'snapshot', 'backup', 'migrate'], Field(
                description='What to do to each selected guest.')],
            name_pattern: Annotated[Optional[str], Field(
                description="Guest name glob, e.g. 'stg-web*'. Give name_pattern, cluster or tag.")] = None,
            cluster: ClusterFilter = None,
            tag: Annotated[Optional[str], Field(description='Only guests with this tag.')] = None,
            status: Annotated[Optional[Literal['running', 'stopped', 'paused']], Field(
                description='Only guests in this state.')] = None,
            type: Annotated[Optional[Literal['qemu', 'lxc']], Field(  # pylint: disable=redefined-builtin
                description="Only VMs ('qemu') or only containers ('lxc').")] = None,
            snapname: Annotated[Optional[str], Field(description='Snapshot name (action snapshot).')] = None,
            snapshot_description: Annotated[Optional[str], Field(
                description='Description of the snapshots (action snapshot).')] = None,
            vmstate: Annotated[bool, Field(description="Include running VMs' RAM (action snapshot).")] = False,
            storage: Annotated[Optional[str], Field(description='Backup storage (action backup).')] = None,
            backup_mode: Annotated[Literal['snapshot', 'suspend', 'stop'], Field(
                description='Backup mode (action backup).')] = 'snapshot',
            compress: Annotated[Literal['zstd', 'gzip', 'lzo', '0'], Field(
                description="Backup compression, '0' for none (action backup).")] = 'zstd',
            force: Annotated[bool, Field(
                description='Action shutdown: stop hard a guest that has not shut down within timeout.')] = False,
            target_node: Annotated[Optional[str], Field(description='Node to move to (action migrate).')] = None,
            target_cluster: Annotated[Optional[str], Field(
                description='Cluster to move to (action migrate).')] = None,
            serial: Annotated[int, Field(description='Rolling mode: this many guests at a time, each batch '
                                                     'finished before the next (0: all within the bounds).',
                                         ge=0)] = 0,
            max_failures: Annotated[Optional[int], Field(
                description='Begin no further guest once more than this many failed (rolling default 0).',
                ge=0)] = None,
            confirm: ConfirmArg = False,
            timeout: TimeoutArg = DEFAULT_TIMEOUT) -> BulkWrite:
        """Start, shut down, stop, reboot, snapshot, back up or migrate every guest of a selection across the clusters,
        concurrently (at most 8 per cluster and 4 per node at once). Without confirm=true nothing is changed: the
        answer is a preview listing every selected guest with the steps it would get. Templates are never
        selected."""
        if not (name_pattern or cluster or tag):
            raise ClusterError("give name_pattern, cluster or tag to select guests (name_pattern='*' for all)")
        options = selection.Options(timeout=timeout, force=force, snapname=snapname, description=snapshot_description,
                                    vmstate=vmstate, storage=storage, mode=backup_mode, compress=compress,
                                    target_node=target_node, target_cluster=target_cluster)
        selection.check_options(action, options)
        selector = selection.Selector(names=[name_pattern] if name_pattern else (),
                                      clusters=[cluster] if cluster else (), tags=[tag] if tag else (),
                                      status=status, types=[{'qemu': 'vm'}.get(type, type)] if type else ())
        picked = selection.select(pmx.reg(), selector)
        for name in sorted(set(c for c, dummy in picked) | set([target_cluster] if target_cluster else [])):
            pmx.check_writable(pmx.reg().router.resolve_cluster(name))
        run = functools.partial(selection.run_action, pmx.reg(), action, picked, options, serial=serial or None,
                                max_failures=max_failures, scrub=pmx.scrub)
        results = run(check_mode=not confirm)
        out = {'action': action, 'selection': selector.describe(), 'guests': results,
               'summary': fleet.summarize(results, fleet.Bounds())}
        if not confirm:
            out.update(preview=True, changed=False,
                       would='%s: %d guest(s) selected, %d would change'
                             % (selection.ACTIONS[action].description, len(results),
                                sum(1 for r in results if r['changed'])),
                       to_confirm='call bulk_guest_action again with the same arguments and confirm=true')
        else:
            out['changed'] = any(r['changed'] for r in results)
        return out


def deploy_entries(items: List[Dict[str, Any]], state: str, timeout: int) -> List[fleet.Entry]:
    """deploy_guests' list as the fleet's entries (pmx_guests' core): a VM without clone gets create_vm's
    defaults, a container its ostemplate; a clone gets only the settings given.

    :raises ConfigError: every problem of every item at once, before any request.
    """
    problems, entries = [], []
    for index, item in enumerate(items):
        item = dict(item)
        try:
            check_guest_name(item['name'], 'container' if item.get('type') == 'lxc' else 'VM')
            check_vmid(item.get('vmid'))
        except ClusterError as exc:
            problems.append('guests[%d] (%s): %s' % (index, item['name'], exc))
            continue
        kind = LXC if item.get('type') == 'lxc' else QEMU
        if item.get('ostemplate') and (kind is QEMU or item.get('clone')):
            problems.append('guests[%d] (%s): ostemplate is for a new container (type lxc, no clone)'
                            % (index, item['name']))
            continue
        if item.get('clone'):
            config = dict((key, item[key]) for key in ('cores', 'memory', 'tags') if item.get(key))
        elif kind is LXC:
            config = simple_lxc_config(item.get('ostemplate'), item.get('cores'), item.get('memory'),
                                       item.get('disk_gb') or 0, item.get('storage'), item.get('bridge'),
                                       item.get('tags'))
        else:
            config = simple_vm_config(item.get('cores') or 2, item.get('memory') or 2048,
                                      16 if item.get('disk_gb') is None else item['disk_gb'], item.get('storage'),
                                      item.get('bridge'), item.get('tags'))
        entries.append(fleet.Entry(index, kind, state, GuestSpec(
            name=item['name'], vmid=item.get('vmid'), cluster=item.get('cluster'), node=item.get('node'),
            clone=item.get('clone'), full=item.get('full'), config=config, update=False, timeout=timeout,
            fallback_storage='local-lvm', fallback_bridge='vmbr0')))
    problems += fleet.listed_twice(entries)
    if problems:
        raise ConfigError('guests: %s. Nothing was changed.' % '; '.join(problems))
    return entries


def _deploy_tools(pmx: Pmx, tool) -> None:
    """deploy_guests (only with writes enabled): many guests created at once, the pmx_guests core."""

    @tool(GATED_ADDITIVE, 'Create many guests at once')
    def deploy_guests(
            guests: Annotated[List[GuestItem], Field(description='The guests, each routed by its name (or cluster).',
                                                     min_length=1, max_length=200)],
            state: Annotated[Literal['present', 'started'], Field(
                description="'started' also starts each guest.")] = 'present',
            per_cluster: Annotated[int, Field(description="At most this many of a cluster's guests worked on at "
                                                          "once.", ge=1, le=32)] = fleet.DEFAULT_PER_CLUSTER,
            per_node: Annotated[int, Field(description='At most this many whose tasks run on one node.', ge=1,
                                           le=32)] = fleet.DEFAULT_PER_NODE,
            stop_on_failure: Annotated[bool, Field(description='Begin no further guest after a failure.')] = False,
            confirm: ConfirmArg = False,
            timeout: TimeoutArg = DEFAULT_TIMEOUT) -> BulkWrite:
        """Create (and with state=started start) a list of VMs and containers across the clusters concurrently,
        each exactly as create_vm / clone_guest would (at most per_cluster per cluster and per_node per node at
        once). A guest that exists already is left as it is (changed=false). The first call previews every guest:
        its cluster, route reason and plan. One failing guest does not stop the others; each has its result."""
        entries = deploy_entries(guests, state, timeout)
        bounds = fleet.Bounds(per_cluster, per_node)
        if confirm:
            # The gate previewed this very call a moment ago (the whole list refused if a cluster was not
            # writable); a route that changed since is checked again as each guest is routed.
            results = fleet.converge(pmx.reg(), entries, bounds=bounds, stop_on_failure=stop_on_failure,
                                     scrub=pmx.scrub, check_route=lambda route: pmx.check_writable(route.cluster))
            return {'action': 'deploy', 'guests': results, 'summary': fleet.summarize(results, bounds),
                    'changed': any(r['changed'] for r in results)}
        planned = fleet.converge(pmx.reg(), entries, check_mode=True, bounds=bounds, scrub=pmx.scrub)
        for name in sorted(set(r['cluster'] for r in planned if r.get('cluster'))):
            pmx.check_writable(name)
        out = {'action': 'deploy', 'guests': planned, 'summary': fleet.summarize(planned, bounds), 'changed': False}
        if any(r['changed'] for r in planned):
            out.update(preview=True, would='%d guest(s): %d would be created or changed, %d failed to plan'
                       % (len(planned), sum(1 for r in planned if r['changed']),
                          sum(1 for r in planned if r['failed'])),
                       to_confirm='call deploy_guests again with the same arguments and confirm=true')
        return out


def _migration_tools(pmx: Pmx, tool) -> None:
    """Register migrate_guest (only called with PMX_MCP_ALLOW_WRITE=1): the core's Migrator, previewed first."""

    @tool(DESTRUCTIVE, 'Move a guest to another node or cluster')
    def migrate_guest(name: NameArg = None, vmid: VmidArg = None, cluster: ClusterArg = None,
                      target_node: Annotated[Optional[str], Field(
                          description='Node to move it to: in its own cluster, or with target_cluster in that one.')]
                      = None,
                      target_cluster: Annotated[Optional[str], Field(
                          description='Another cluster to move it to (a remote migration).')] = None,
                      storage_map: Annotated[Optional[Dict[str, str]], Field(
                          description="Source storage -> target storage, e.g. {'local-lvm': 'ceph'}.")] = None,
                      target_storage: Annotated[Optional[str], Field(
                          description='One storage for all its disks on the target.')] = None,
                      bridge_map: Annotated[Optional[Dict[str, str]], Field(
                          description="Source bridge -> target bridge (between clusters), e.g. {'vmbr0': 'vmbr1'}.")]
                      = None,
                      with_local_disks: Annotated[bool, Field(
                          description='Allow a live move within the cluster to copy disks on local storage.')] = False,
                      target_vmid: Annotated[Optional[int], Field(
                          description='Its vmid on the target cluster; default: its own when free there, else the '
                                      'next free one.', ge=100, le=999999999)] = None,
                      delete_source: Annotated[bool, Field(
                          description='Between clusters: delete the source once moved (default: keep it stopped and '
                                      'locked, as Proxmox VE does).')] = False,
                      confirm: ConfirmArg = False,
                      timeout: Annotated[int, Field(description='Seconds to wait for each task of the move.', ge=1,
                                                    le=7200)] = 900) -> MigrateWrite:
        """Move a VM or container to another node of its cluster (live for a running VM, restart mode for a running
        container) or to another cluster. Without confirm=true it only returns the plan: where it is, where it
        would go, the storage and bridge maps, the target vmid and the checks made. Nothing moves then."""
        registry = pmx.reg()
        spec = MoveSpec(name=name, vmid=vmid, cluster=cluster, target_node=target_node, target_cluster=target_cluster,
                        storage_map=dict(storage_map or {}), target_storage=target_storage,
                        bridge_map=dict(bridge_map or {}), with_local_disks=with_local_disks, target_vmid=target_vmid,
                        delete_source=delete_source, timeout=timeout)
        plan = Migrator(registry, check_mode=True, scrub=pmx.scrub).ensure(spec)
        for side in ('was', 'now'):
            pmx.check_writable(plan[side]['cluster'])
        if not confirm or not plan['changed']:
            out = dict(plan, preview=not plan['changed'] or not confirm, changed=False)
            out['would'] = ('nothing: it is already there' if not plan['changed'] else
                            'move %s from %s/%s to %s/%s' % (plan['name'], plan['was']['cluster'], plan['was']['node'],
                                                             plan['now']['cluster'],
                                                             plan['now']['node'] or '(the node Proxmox VE picks)'))
            if plan['changed']:
                out['to_confirm'] = 'call migrate_guest again with the same arguments and confirm=true'
            return out
        return Migrator(registry, scrub=pmx.scrub).ensure(spec)

    @tool(DESTRUCTIVE, 'Empty a node for maintenance')
    def evacuate_node(cluster: Annotated[str, Field(description='The cluster of the node.')],
                      node: Annotated[str, Field(description='The node to empty.')],
                      exclude: Annotated[Optional[List[str]], Field(
                          description='Nodes not to move guests to.')] = None,
                      with_local_disks: Annotated[bool, Field(
                          description='Copy the disks of running VMs on local storage (default true).')] = True,
                      confirm: ConfirmArg = False,
                      timeout: Annotated[int, Field(description='Seconds to wait for each move.', ge=1,
                                                    le=7200)] = 900) -> EvacuationWrite:
        """Move every guest off a node to the other online nodes of its cluster, balanced by free memory (largest
        first, each to the node with most memory left), one after the other, stopping at the first failure: the
        plan of pmx_cluster_info's evacuate and the playbook evacuate_node.yml. The preview lists every guest
        and where it would go; templates stay."""
        registry = pmx.reg()
        plan = evacuation(registry, cluster, node, tuple(exclude or ()))
        pmx.check_writable(plan['cluster'])
        if not plan['moves']:
            return dict(plan, changed=False, results=[], failed=[],
                        would='nothing: node %s has no guest to move' % node)
        if not confirm:
            return dict(plan, preview=True, changed=False, would='move %d guest(s) off %s of %s: %s' % (
                len(plan['moves']), node, plan['cluster'], ', '.join(
                    '%s -> %s' % (m['name'], m['target_node']) for m in plan['moves'])),
                to_confirm='call evacuate_node again with the same arguments and confirm=true')
        results, failed = [], []
        for move in plan['moves']:
            spec = MoveSpec(vmid=move['vmid'], cluster=plan['cluster'], target_node=move['target_node'],
                            with_local_disks=with_local_disks, timeout=timeout)
            try:
                results.append(Migrator(registry, scrub=pmx.scrub).ensure(spec))
            except ClusterError as exc:
                failed.append({'vmid': move['vmid'], 'name': move['name'], 'error': fleet.failure(exc, pmx.scrub)})
                break
        return dict(plan, changed=any(r['changed'] for r in results), results=results, failed=failed)


# ------------------------------------------------------------------ backups

def _guest_backups(client, cluster: str, guest: Dict) -> Dict:
    """A guest's backups on its cluster's backup storages, newest first (for guest_details); a storage that
    cannot be read is named in ``errors``, it does not fail the answer."""
    rows, errors = [], []
    try:
        storages = backups.backup_storages(client, cluster)
    except ClusterError as exc:
        return {'backups': [], 'errors': [{'storage': None, 'error': str(exc)}]}
    for info in storages:
        try:
            rows.extend(backups.guest_backups(client, cluster, info['storage'], guest.get('name')))
        except ClusterError as exc:
            errors.append({'storage': info['storage'], 'error': str(exc)})
    rows.sort(key=lambda r: (-r['ctime'], r['volid']))
    return {'backups': rows, 'errors': errors}


def _backup_tools(pmx: Pmx, tool) -> None:
    """list_backups (always); backup_now, prune_backups and restore_backup with PMX_MCP_ALLOW_WRITE=1."""
    StorageArg = Annotated[Optional[str], Field(description="Backup storage (content 'backup'), e.g. 'backup-nfs'. "
                                                            'Optional for listing: every backup storage.')]
    KeepArg = Annotated[Optional[int], Field(description='Keep the newest backup of each of the last N such periods.',
                                             ge=1)]

    @tool(READ, 'List backups of a guest')
    def list_backups(name: NameArg = None, vmid: VmidArg = None, cluster: ClusterArg = None,
                     storage: StorageArg = None, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None,
                     fields: answers.fields_arg(answers.BackupRow) = None,
                     summary: SummaryArg = False) -> answers.BackupList:
        """The backups of a guest on a cluster's backup storages, newest first, with time (UTC), size and notes.
        With cluster, a guest that does not exist there (a disaster-recovery cluster reading a shared backup
        storage) is found by the name its backups hold. summary=true counts by storage, type, protected."""
        check_guest_name(name)
        check_vmid(vmid)
        if not name and vmid is None:
            raise ClusterError('give name or vmid')
        route = pmx.reg().select(cluster=cluster, name=name, vmid=vmid, lookup=True, strict=False)
        found = backups.backups_of(pmx.reg().client(route.cluster), route.cluster, name, vmid, storage)
        rows, page = answers.paged('list_backups', found, lambda r: (-r['ctime'], r['volid'] or ''),
                                   ('storage', 'type', 'protected'),
                                   {'cluster': route.cluster, 'name': name, 'vmid': vmid, 'storage': storage},
                                   limit, cursor, fields, summary)
        return dict({'cluster': route.cluster, 'route_reason': route.reason, 'backups': rows,
                     'unreadable': pmx.unread(route)}, **page)

    if not pmx.allow_write:
        return

    @tool(DISRUPTIVE, 'Back up a guest now')
    def backup_now(storage: Annotated[str, Field(description="Backup storage, e.g. 'backup-nfs'.")],
                   name: NameArg = None, vmid: VmidArg = None, cluster: ClusterArg = None,
                   mode: Annotated[Literal['snapshot', 'suspend', 'stop'], Field(
                       description='snapshot keeps the guest running; suspend pauses it; stop shuts it down for '
                                   'the backup and starts it again.')] = 'snapshot',
                   notes: Annotated[str, Field(description='Notes; {{guestname}}, {{vmid}}, {{node}}, {{cluster}} '
                                                           'are replaced.')] = backups.DEFAULT_NOTES,
                   protected: Annotated[bool, Field(description='Protect it from pruning and deletion.')] = False,
                   timeout: TimeoutArg = DEFAULT_TIMEOUT) -> BackupWrite:
        """Run a backup (vzdump) of one guest now and wait for it; returns the archive's volume id, size and
        time. A guest locked by another task is waited for up to timeout."""
        route, client, guest = pmx.locate(name, vmid, cluster)
        pmx.check_writable(route.cluster)
        row = backups.Backups(client, route.cluster).backup(guest, storage, mode, 'zstd', notes, protected, timeout)
        return {'cluster': route.cluster, 'route_reason': route.reason, 'guest': pmx.summary(guest),
                'changed': True, 'archive': row}

    @tool(DESTRUCTIVE, 'Prune backups of a guest')
    def prune_backups(storage: Annotated[str, Field(description='Backup storage.')],
                      keep_last: Annotated[Optional[int], Field(description='Keep the newest N backups.', ge=1)]
                      = None,
                      name: NameArg = None, vmid: VmidArg = None, cluster: ClusterArg = None,
                      keep_hourly: KeepArg = None, keep_daily: KeepArg = None, keep_weekly: KeepArg = None,
                      keep_monthly: KeepArg = None, keep_yearly: KeepArg = None,
                      confirm: ConfirmArg = False) -> BackupWrite:
        """Delete the backups of a guest that the keep rules do not keep (Proxmox VE's prune-backups rules, as
        pmx_backup's keep: keep_last the newest N, keep_daily the newest of each of the last N days...; give at
        least one); protected ones always stay. Behind the confirmation gate: the first call previews what
        would be deleted."""
        keep = {'last': keep_last, 'hourly': keep_hourly, 'daily': keep_daily, 'weekly': keep_weekly,
                'monthly': keep_monthly, 'yearly': keep_yearly}
        backups.keep_counts(keep)  # before any request: at least one rule
        route, client, guest = pmx.locate(name, vmid, cluster)
        pmx.check_writable(route.cluster)
        rows = backups.guest_backups(client, route.cluster, storage, guest.get('name'))
        pruner = backups.Backups(client, route.cluster, check_mode=not confirm)
        done = pruner.prune(storage, keep, rows)
        out = {'cluster': route.cluster, 'route_reason': route.reason, 'guest': pmx.summary(guest),
               'changed': bool(confirm and done['removed']), 'removed': done['removed'], 'kept': done['kept']}
        if not confirm:
            out.update(preview=True, would='delete %d backup(s) of %s: %s' % (
                len(done['removed']), guest.get('name'), ', '.join(done['removed']) or 'none'),
                to_confirm='call prune_backups again with the same arguments and confirm=true')
        return out

    @tool(DESTRUCTIVE, 'Restore a guest from a backup')
    def restore_backup(name: NameArg = None, cluster: ClusterArg = None,
                       archive: Annotated[Optional[str], Field(
                           description='Backup volume id; default: the newest backup of name on the cluster.')] = None,
                       storage: StorageArg = None,
                       new_name: Annotated[Optional[str], Field(description='Name of the restored guest.')] = None,
                       vmid: VmidArg = None,
                       node: Annotated[Optional[str], Field(description='Target node.')] = None,
                       target_storage: Annotated[Optional[str], Field(description='Storage for the disks.')] = None,
                       bridge: Annotated[Optional[str], Field(description='Bridge for every network device.')] = None,
                       force: Annotated[bool, Field(description='Replace an existing stopped guest of that name or '
                                                                'vmid.')] = False,
                       start: Annotated[bool, Field(description='Start it once restored.')] = False,
                       unique: Annotated[bool, Field(description='Give its network devices new MAC addresses (a '
                                                                 'copy beside the original).')] = False,
                       confirm: ConfirmArg = False, timeout: TimeoutArg = DEFAULT_TIMEOUT) -> RestoreWrite:
        """Create a guest from a backup on the given (or routed) cluster: the DR case is name + cluster only.
        An existing guest of that name is left alone unless force. Without confirm=true it only returns the plan
        (archive, cluster, node, vmid, and what it would replace)."""
        restorer = backups.Restore(pmx.reg())
        plan = restorer.plan(cluster=cluster, name=name, archive=archive, storage=storage, new_name=new_name,
                             vmid=vmid, node=node, target_storage=target_storage, bridge=bridge, force=force)
        pmx.check_writable(plan['cluster'])
        out = backups.public_plan(plan)
        out.pop('config', None)
        if plan['exists']:
            return dict(out, changed=False, would='nothing: %s exists on %s; force=true replaces it'
                        % (plan['name'], plan['cluster']))
        if not confirm:
            replaced = plan['replaced']
            return dict(out, preview=True, changed=False, would='restore %s as %s (vmid %s) on node %s of %s%s' % (
                plan['archive'], plan['name'], plan['vmid'], plan['node'], plan['cluster'],
                ', replacing %s (vmid %s, %s)' % (replaced['name'], replaced['vmid'], replaced['status'])
                if replaced else ''), to_confirm='call restore_backup again with the same arguments and confirm=true')
        task = restorer.apply(plan, start=start, unique=unique, timeout=timeout)
        return dict(backups.public_plan(plan), changed=True, tasks=[task], config=None)


def _snapshot_disk_tools(pmx: Pmx, tool) -> None:
    """Snapshot deletion and retention (destructive: preview unless confirm=true) and disk growth, over the core's
    snapshots.ensure and GuestManager (only called with PMX_MCP_ALLOW_WRITE=1)."""

    def snapshot_write(request: snapshots.SnapshotRequest, name, vmid, cluster, confirm: bool, tool_name: str):
        found = pmx.locate(name, vmid, cluster)
        route = found[0]
        pmx.check_writable(route.cluster)
        result = snapshots.ensure(pmx.reg(), request, check_mode=not confirm, found=found)
        result.pop('diff', None)
        if not confirm:
            result.update(preview=True, changed=False, would=('delete snapshot(s) %s of %s; this cannot be undone'
                                                              % (', '.join(result['deleted']), result['name'])
                                                              if result['deleted'] else 'nothing: no snapshot to '
                                                              'delete'),
                          to_confirm='call %s again with the same arguments and confirm=true' % tool_name)
        return result

    @tool(DESTRUCTIVE, 'Delete a snapshot')
    def snapshot_delete(snapname: Annotated[str, Field(description='The snapshot to delete.')],
                        name: NameArg = None, vmid: VmidArg = None, cluster: ClusterArg = None,
                        confirm: ConfirmArg = False, timeout: TimeoutArg = DEFAULT_TIMEOUT) -> SnapshotWrite:
        """Delete one snapshot of a guest (no such snapshot: nothing to do). Without confirm=true it only returns
        a preview."""
        return snapshot_write(snapshots.SnapshotRequest(state='absent', snapname=snapname, timeout=timeout),
                              name, vmid, cluster, confirm, 'snapshot_delete')

    @tool(DESTRUCTIVE, 'Keep the newest snapshots, delete older ones')
    def snapshot_retention(keep: Annotated[int, Field(description='How many of the newest covered snapshots stay.',
                                                      ge=0)],
                           name: NameArg = None, vmid: VmidArg = None, cluster: ClusterArg = None,
                           prefix: Annotated[Optional[str], Field(
                               description="Covers the snapshots whose names start with this (e.g. 'nightly-').")]
                           = None,
                           pattern: Annotated[Optional[str], Field(
                               description="Covers the snapshots whose names match this glob.")] = None,
                           force: Annotated[bool, Field(
                               description='Also delete the snapshot the current state is based on.')] = False,
                           confirm: ConfirmArg = False, timeout: TimeoutArg = DEFAULT_TIMEOUT) -> SnapshotWrite:
        """Of a guest's snapshots that prefix or pattern covers, keep the newest `keep` and delete the rest (others
        are never touched). Refuses to delete the current state's parent unless force=true. Without confirm=true
        it only returns a preview (what would be deleted and kept)."""
        return snapshot_write(snapshots.SnapshotRequest(state='absent', keep=keep, prefix=prefix, pattern=pattern,
                                                        force=force, timeout=timeout),
                              name, vmid, cluster, confirm, 'snapshot_retention')

    @tool(ADDITIVE, 'Grow a disk')
    def disk_resize(disk: Annotated[str, Field(description="The disk's config key: scsi0, virtio1, rootfs, mp0...")],
                    size: Annotated[str, Field(description="The size it should have, e.g. '40G' or '512M' (never "
                                                           "smaller than it is).")],
                    name: NameArg = None, vmid: VmidArg = None, cluster: ClusterArg = None,
                    timeout: TimeoutArg = DEFAULT_TIMEOUT) -> GuestWrite:
        """Grow a disk, root file system or mount point to `size`. Already that size: nothing changes; a smaller
        size is refused (Proxmox VE cannot shrink a disk). Returns the plan and the task."""
        if size_bytes(size) is None:
            raise GuestConflictError("size '%s' is not a size such as 40G or 512M; nothing was changed" % size)
        route, guest, dummy = _disk_of(pmx, name, vmid, cluster, disk)
        spec = GuestSpec(name=guest.get('name'), vmid=int(guest['vmid']), cluster=cluster, timeout=timeout,
                         config={disk: 'size=%s' % size.strip().upper()})
        return pmx.write_result(route, pmx.manager(guest['type']).ensure('present', spec, route=route))

    _disk_tools(pmx, tool)


def _disk_of(pmx: Pmx, name, vmid, cluster, disk: str) -> Tuple[Any, Dict, str]:
    """(route, entry, current value) of one disk of an existing guest, for a write (writes allowed there).

    :raises GuestConflictError: the guest has no such disk (the message lists its disks).
    """
    route, client, guest = pmx.locate(name, vmid, cluster)
    pmx.check_writable(route.cluster)
    kind = kind_of(guest['type'])
    config = client.get(guest_path(guest['type'], guest['node'], guest['vmid'], 'config')) or {}
    if not kind.is_disk(disk) or disk not in config:
        raise GuestConflictError("cluster '%s': %s '%s' has no disk '%s'; its disks: %s" % (
            route.cluster, kind.label, guest.get('name'), disk,
            ', '.join(k for k in sorted(config) if kind.is_disk(k)) or '(none)'), route.cluster)
    return route, guest, str(config[disk])


def _disk_tools(pmx: Pmx, tool) -> None:
    """Moving a disk to another storage and taking one out (destructive: behind the confirmation gate), over
    the core's planner and executor as pmx_vm's move_disks and detached / absent (only with writes enabled)."""
    preview = _previewer(pmx)

    def disk_change(tool_name: str, name, vmid, cluster, disk: str, value: str, would: str, confirm: bool,
                    timeout: int, **spec) -> Dict:
        route, guest, current = _disk_of(pmx, name, vmid, cluster, disk)
        spec = GuestSpec(name=guest.get('name'), vmid=int(guest['vmid']), cluster=cluster, timeout=timeout,
                         config={disk: value}, **spec)
        manager = pmx.manager(guest['type'])
        if confirm:
            return pmx.write_result(route, manager.ensure('present', spec, route=route))
        plan = manager.prepare('present', spec, route)[3]
        steps = [step.as_dict() for step in plan.steps]
        if not steps:
            return dict(pmx.write_result(route, manager.ensure('present', spec, route=route)), disk=disk,
                        current=current, would='nothing: %s' % (plan.warnings[0] if plan.warnings else 'already so'))
        return preview(route, guest, '%s of %s' % (would, _label(guest)), tool_name, plan=steps, disk=disk,
                       current=current, warnings=list(plan.warnings))

    @tool(DESTRUCTIVE, 'Move a disk to another storage')
    def disk_move(disk: Annotated[str, Field(description="The disk's config key: scsi0, virtio1, rootfs, mp0...")],
                  storage: Annotated[str, Field(description='The storage to move it to.')],
                  name: NameArg = None, vmid: VmidArg = None, cluster: ClusterArg = None,
                  delete_source: Annotated[bool, Field(
                      description='Delete the source volume once copied (default: keep it as an unused disk).')]
                  = False,
                  confirm: ConfirmArg = False, timeout: TimeoutArg = DEFAULT_TIMEOUT) -> GuestWrite:
        """Copy a disk (root file system, mount point) to another storage and use the copy (qm move_disk /
        pct move_volume); the source volume stays as an unused disk unless delete_source. Already there:
        nothing changes. Behind the confirmation gate: the first call previews."""
        return disk_change('disk_move', name, vmid, cluster, disk, '%s:0' % storage.strip(),
                           'move disk %s to storage %s%s' % (disk, storage, ', deleting the source volume'
                                                             if delete_source else ' (the source volume is kept)'),
                           confirm, timeout, move_disks=True, delete_moved_source=delete_source)

    @tool(DESTRUCTIVE, 'Detach or remove a disk')
    def disk_detach(disk: Annotated[str, Field(description="The disk's config key: scsi1, virtio2, mp0...")],
                    name: NameArg = None, vmid: VmidArg = None, cluster: ClusterArg = None,
                    remove: Annotated[bool, Field(
                        description='Destroy its volume too (default: keep it, as an unused disk of the guest).')]
                    = False,
                    confirm: ConfirmArg = False, timeout: TimeoutArg = DEFAULT_TIMEOUT) -> GuestWrite:
        """Take a disk out of a guest's configuration: detached (the volume stays, as unusedN) or, with
        remove=true, destroyed. Behind the confirmation gate: the first call previews."""
        return disk_change('disk_detach', name, vmid, cluster, disk, 'absent' if remove else 'detached',
                           ('remove disk %s and destroy its volume; this cannot be undone' % disk) if remove
                           else 'detach disk %s (its volume is kept as an unused disk)' % disk,
                           confirm, timeout)


# ------------------------------------------------------------------ resources and prompts

ROUTING_PROMPT = """You work with several Proxmox VE clusters through the pmx-multicluster tools. Clusters: {clusters}.
The default cluster is {default}.

How a guest finds its cluster (the same rules as the Ansible modules):
1. An explicit `cluster` argument wins.
2. Else the guest name's pattern: {patterns}. A name matching the patterns of two clusters is refused as
   ambiguous: give `cluster`.
3. Else the cluster where a guest of that name (or vmid) already exists ("located"). Vmids repeat across
   clusters: with a bare vmid, give `cluster`.
4. Else the default cluster.
Ask `route_guest` when unsure; it says which cluster and why, and whether a write there would be refused.

Reading: list tools answer at most `limit` rows (default {limit}) with `total` and `next_cursor`; pass
`fields` for the columns you need and `summary: true` for counts by cluster, status, type and tag. A cluster
that is down or slower than {deadline:g}s is named under `errors` / `unreachable`, with the others' results;
it is not asked again for a short while, so say which clusters the answer leaves out.
{writes}"""


def _resources_and_prompts(pmx: Pmx, server: MCPServer) -> None:
    """pmx://clusters (every cluster's health row), pmx://clusters/{name} (one, with storages) and the prompt
    'routing_rules' (how this server routes guests, with the configured patterns)."""

    def health(names=None, storages=False) -> str:
        try:
            rows = clusters_health(pmx.reg(), names, storages=storages, deadline=pmx.deadline)
        except ClusterError as exc:
            raise ResourceError(pmx.scrub(str(exc))) from None
        return json.dumps(pmx.scrub.deep(rows if names is None else rows[0]), separators=(',', ':'), default=str)

    @server.resource('pmx://clusters', name='clusters', title='Clusters and their health',
                     description='Every configured cluster: reachability, version, quorum, nodes and guest counts '
                                 '(the rows of list_clusters), as JSON.', mime_type='application/json')
    @answers.in_thread
    def clusters_resource() -> str:
        return health()

    @server.resource('pmx://clusters/{name}', name='cluster', title='One cluster and its health',
                     description='One cluster: its health row with its nodes and storages, as JSON.',
                     mime_type='application/json')
    @answers.in_thread
    def cluster_resource(name: str) -> str:
        try:
            resolved = pmx.reg().router.resolve_cluster(name)
        except ClusterError as exc:
            raise ResourceError(pmx.scrub(str(exc))) from None
        return health([resolved], storages=True)

    @server.prompt(name='routing_rules', title='How guests are routed to clusters',
                   description='Explains to the assistant how this server routes a guest to a cluster and how to '
                               'read large lists; with the configured clusters and patterns.')
    def routing_rules() -> str:
        if pmx.config_error is not None:
            return 'The server configuration is broken: %s' % pmx.scrub(str(pmx.config_error))
        config = pmx.registry.config
        patterns = ['%s -> %s' % (', '.join(c.patterns), n) for n, c in config.clusters.items() if c.patterns]
        patterns += ["names starting '%s' -> %s" % (p, c) for p, c in config.prefix_patterns]
        writes = pmx.writes()
        return ROUTING_PROMPT.format(
            clusters=', '.join(config.names), default=config.default_cluster,
            patterns='; '.join(patterns) or 'none configured', limit=DEFAULT_LIMIT, deadline=pmx.deadline,
            writes=('Writes are allowed on: %s. Destructive ones preview first.' % (
                writes['clusters'] if isinstance(writes['clusters'], str) else ', '.join(writes['clusters']))
                if writes['enabled'] else 'This server is read-only.'))


# ------------------------------------------------------------------ start

class _Scrub(logging.Filter):
    """Last line of defence: a token secret never reaches stderr, in any form, whatever logs it."""

    def __init__(self, scrub: Scrubber):
        super().__init__()
        self.scrub = scrub

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if self.scrub.found(text):
            record.msg, record.args = self.scrub(text), None
        return True


def setup_logging(scrub: Scrubber) -> None:
    """Log to stderr (stdout is the protocol) at WARNING, scrubbed; proxmoxer's request logging stays off."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter('pmx_mcp: %(levelname)s %(name)s: %(message)s'))
    handler.addFilter(_Scrub(scrub))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    # proxmoxer logs every request with its body (a password, a cloud-init secret) at INFO/DEBUG.
    for name in ('proxmoxer', 'urllib3', 'requests', 'mcp', 'httpx'):
        logging.getLogger(name).setLevel(logging.WARNING)


DEFAULT_HTTP_PORT = 8765


def http_options(args, environ: Dict[str, str], scrub: Scrubber) -> Dict[str, Any]:
    """MCPServer and transport options for --transport http: bearer auth when a token is set, DNS-rebinding
    protection always.

    :raises ConfigError: a non-loopback address without a token, an unreadable or short token.
    """
    token = pmx_gate.http_token(environ, args.token_file)
    if token:
        scrub.add([token])
    pmx_gate.check_bind(args.host, token)
    url = 'http://%s:%d' % ('[%s]' % args.host if ':' in args.host else args.host, args.port)
    server = pmx_gate.bearer_auth(token, url) if token else {}
    transport = {'host': args.host, 'port': args.port, 'streamable_http_path': '/mcp',
                 'transport_security': pmx_gate.transport_security(args.host, args.port, args.allowed_host or [])}
    return {'server': server, 'transport': transport, 'url': url + '/mcp', 'token': bool(token)}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description='pmx.multicluster MCP server (stdio or streamable HTTP): several '
                                                 'Proxmox VE clusters.')
    parser.add_argument('--env-file', help='.env file with the PROXMOX_* settings (default: PROXMOX_ENV_FILE)')
    parser.add_argument('--transport', choices=('stdio', 'http'), default='stdio',
                        help='stdio (default) or streamable HTTP')
    parser.add_argument('--host', default='127.0.0.1',
                        help='HTTP: address to listen on (default 127.0.0.1; any other needs a bearer token)')
    parser.add_argument('--port', type=int, default=DEFAULT_HTTP_PORT, help='HTTP: port (default %(default)s)')
    parser.add_argument('--token-file', help='HTTP: file holding the bearer token (default: PMX_MCP_HTTP_TOKEN_FILE, '
                                             'else PMX_MCP_HTTP_TOKEN)')
    parser.add_argument('--allowed-host', action='append', metavar='NAME[:PORT]',
                        help='HTTP: a further Host header to accept (the name clients use, behind a proxy); '
                             'repeatable')
    args = parser.parse_args(argv)
    # One scrubber for the log and the answers; the secrets are added to it as soon as they are read.
    scrub = Scrubber()
    setup_logging(scrub)
    environ = dict(os.environ)
    if args.transport == 'stdio':
        build_server(Pmx(environ, env_file=args.env_file, scrub=scrub)).run('stdio')
        # A call abandoned on a hanging cluster still holds a worker thread: exit without waiting for its timeout.
        answers.leave(0)
    try:
        options = http_options(args, environ, scrub)
    except ClusterError as exc:
        sys.stderr.write('pmx_mcp: %s\n' % scrub(str(exc)))
        return 2
    server = build_server(Pmx(environ, env_file=args.env_file, scrub=scrub), **options['server'])
    LOG.warning('listening on %s (streamable HTTP, %s)', options['url'],
                'bearer token required' if options['token'] else 'loopback only, no token')
    server.run('streamable-http', **options['transport'])
    answers.leave(0)
    return 0


if __name__ == '__main__':
    sys.exit(main())
