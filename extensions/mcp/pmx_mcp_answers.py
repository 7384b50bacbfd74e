# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the MCP server's answers are made of, in one place for every tool of pmx_mcp.py.

- Typed answers: the rows of the core (``health.NodeRow``, ``StorageRow``, ``GuestRow``, ``ClusterHealth``) as
  the output schemas of the tools, so the server publishes the field names the modules return.
- Pages: every list tool takes ``limit``, ``cursor``, ``fields`` and ``summary`` and answers through ``paged``.
  Rows are in a fixed order (a key per list: cluster then vmid for guests); the cursor holds the key of the last
  row given, not an offset, so a guest created or deleted meanwhile never shifts the next page: walking the pages
  yields every row that exists throughout exactly once.
- Strict arguments: an unknown argument or a value of the wrong JSON type is a tool error (``strict_arguments``).
- Compact JSON text and structured content, both from the same value (``answer``).
- Calls run in a worker thread that a cancellation (or the end of the connection) abandons at once.
"""

import base64
import binascii
import functools
import hashlib
import inspect
import json
import logging
import os
import re
import sys
from typing import (
    Annotated,
    Any,
    Callable,
    Dict,
    List,
    Literal,
    Optional,
    Sequence,
    Tuple,
    Union,
    get_args,
    get_origin,
    get_type_hints,
)

import anyio.to_thread
import typing_extensions
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase
from mcp.types import CallToolResult, TextContent
from pydantic import ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from ansible_collections.pmx.multicluster.plugins.module_utils import health
from ansible_collections.pmx.multicluster.plugins.module_utils.errors import ClusterError

# Rows a list tool returns when `limit` is not given, and the most it returns at once. 40 guest rows are about
# 8 KB of compact JSON; the whole tools/call answer (the text and the same as structured content) stays under 20 KB.
DEFAULT_LIMIT = 40
MAX_LIMIT = 500


# ------------------------------------------------------------------ typed answers

def wire(row_type: Any, name: Optional[str] = None, extra: Optional[Dict[str, Any]] = None,
         total: Optional[bool] = None) -> Any:
    """``row_type`` (a typing.TypedDict of the core) as a typing_extensions.TypedDict pydantic reads on every Python.

    Nested TypedDicts are converted too. ``extra``: keys added in front (``cluster``); ``total=False``: every
    key optional (rows trimmed by ``fields``); None keeps the row's own required keys.
    """
    hints = get_type_hints(row_type)
    items: Dict[str, Any] = dict(extra or {})
    for key, hint in hints.items():
        hint = _wire_hint(hint)
        required = key in getattr(row_type, '__required_keys__', hints) if total is None else total
        items[key] = hint if required else typing_extensions.NotRequired[hint]
    out = typing_extensions.TypedDict(name or row_type.__name__, items)
    out.__doc__ = row_type.__doc__
    return out


def _wire_hint(hint: Any) -> Any:
    if typing_extensions.is_typeddict(hint):
        return wire(hint)
    args = get_args(hint)
    if not args:
        return hint
    origin = get_origin(hint)
    converted = tuple(_wire_hint(a) for a in args)
    if origin is Union:
        return Union[converted]
    if origin is list:
        return List[converted[0]]
    if origin is dict:
        return Dict[converted[0], converted[1]]
    return hint


class ClusterErrorRow(typing_extensions.TypedDict):
    """A cluster left out of the answer: it failed, or did not answer within the deadline."""
    cluster: str
    error: str


class Page(typing_extensions.TypedDict):
    """How a list answer relates to the whole list."""
    total: Annotated[int, Field(description='Rows matching the filters, in all clusters that answered.')]
    count: Annotated[int, Field(description='Rows in this answer.')]
    truncated: Annotated[bool, Field(description='More rows follow: call again with cursor=next_cursor.')]
    next_cursor: Annotated[Optional[str], Field(description='Cursor of the next page; null on the last one.')]
    summary: Annotated[Optional[Dict[str, Dict[str, int]]], Field(
        description='summary=true: rows counted by each column named (e.g. cluster, status, type, tag); '
                    'else null.')]


# ------------------------------------------------------------------ list arguments

LimitArg = Annotated[int, Field(
    description='At most this many rows (default %d, at most %d). The answer gives total (how many match in all) '
                'and next_cursor for the rest.' % (DEFAULT_LIMIT, MAX_LIMIT), ge=1, le=MAX_LIMIT)]
CursorArg = Annotated[Optional[str], Field(
    description='next_cursor of the previous answer, to get the next page (same tool, same filters).')]
SummaryArg = Annotated[bool, Field(
    description='Counts instead of rows: how many rows match, by each grouping column.')]


def fields_arg(row_type: Any) -> Any:
    """The ``fields`` parameter of a list of ``row_type`` rows: a subset of its columns, unknown names refused."""
    names = tuple(get_type_hints(row_type))
    return Annotated[Optional[List[Literal[names]]], Field(  # type: ignore[valid-type]
        description='Only these columns of each row (default: all): %s.' % ', '.join(names))]


# ------------------------------------------------------------------ pages

def _encode(scope: str, key: Sequence[Any]) -> str:
    text = json.dumps({'s': scope, 'k': list(key)}, separators=(',', ':'))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip('=')


def _decode(cursor: str, scope: str) -> Tuple:
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + '=' * (-len(cursor) % 4)).decode())
        key, his = tuple(data['k']), data['s']
    except (ValueError, TypeError, KeyError, binascii.Error, UnicodeDecodeError):
        raise ClusterError("cursor '%s' is not a next_cursor of this server; call again without cursor for the "
                           "first page" % cursor[:40]) from None
    if his != scope:
        raise ClusterError('this cursor belongs to another call (another tool or other filters); give the same '
                           'filters as the call that returned it, or no cursor for the first page')
    return key


def paged(tool_name: str, rows: Sequence[Dict], key: Callable[[Dict], Tuple], groups: Sequence[str],
          filters: Dict[str, Any], limit: int, cursor: Optional[str], fields: Optional[Sequence[str]], summary: bool
          ) -> Tuple[List[Dict], Dict[str, Any]]:
    """One page of ``rows``: (the rows to answer, the ``Page`` fields), the one paging code of every list tool.

    ``key(row)``: the row's place in the list (a tuple of str and int, unique); the rows are ordered by it and
    the cursor holds the key of the last row answered. A cursor is only taken back by the same tool with the
    same ``filters``. ``summary``: no rows, but counts of every matching row by each column of ``groups`` (a
    list column counts each of its values; ``tag`` counts the ``tags`` column).
    """
    scope = dict(filters, tool=tool_name)
    digest = hashlib.sha256(json.dumps(scope, sort_keys=True, default=str).encode()).hexdigest()[:16]
    ordered = sorted(rows, key=key)
    if summary:
        return [], {'total': len(ordered), 'count': 0, 'truncated': False, 'next_cursor': None,
                    'summary': dict((g, _counts(ordered, g)) for g in groups)}
    if cursor:
        after = _decode(cursor, digest)
        ordered = [r for r in ordered if tuple(key(r)) > after]
    chosen = ordered[:limit]
    more = len(ordered) > len(chosen)
    if fields:
        chosen = [dict((f, r[f]) for f in fields if f in r) for r in chosen]
    return chosen, {'total': len(rows), 'count': len(chosen), 'truncated': more,
                    'next_cursor': _encode(digest, key(ordered[len(chosen) - 1])) if more else None,
                    'summary': None}


def _counts(rows: Sequence[Dict], group: str) -> Dict[str, int]:
    column = 'tags' if group == 'tag' else group
    out: Dict[str, int] = {}
    for row in rows:
        value = row.get(column)
        for one in value if isinstance(value, list) else [value]:
            label = '(none)' if one is None else json.dumps(one) if isinstance(one, bool) else str(one)
            out[label] = out.get(label, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


# ------------------------------------------------------------------ registration: strict arguments, compact JSON

class _KnownArguments(ArgModelBase):
    """The base of every tool's argument model: unknown names and values of the wrong JSON type are refused.

    ``strict``: JSON has its types, so "5" is not an integer and "yes" not a boolean. ``hide_input_in_errors``:
    the message names the argument, not the value given.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra='forbid', strict=True, hide_input_in_errors=True)

    @model_validator(mode='before')
    @classmethod
    def _only_known(cls, data: Any) -> Any:
        if isinstance(data, dict):
            known = [f.alias or n for n, f in cls.model_fields.items()]
            unknown = sorted(k for k in data if k not in known)
            if unknown:
                raise PydanticCustomError('unknown_argument', 'unknown argument(s) {unknown}; it takes: {known}',
                                          {'unknown': ', '.join(unknown), 'known': ', '.join(known) or 'none'})
        return data


def strict_arguments(server: MCPServer, name: str) -> None:
    """Make the registered tool ``name`` refuse unknown arguments and wrong types (MCPServer 2.3 has no such
    option: its argument models ignore unknown names and coerce "5" to 5). Its input schema says so too
    (``additionalProperties: false``)."""
    tool = server._tool_manager.get_tool(name)  # pylint: disable=protected-access
    loose = tool.fn_metadata.arg_model
    strict = type(loose.__name__, (_KnownArguments, loose), {'__module__': loose.__module__})
    tool.fn_metadata.arg_model = strict
    tool.parameters = strict.model_json_schema(by_alias=True)


def answer(result: Any) -> CallToolResult:
    """A tool's result as compact JSON text and the same value as structured content (an error as it is)."""
    if isinstance(result, CallToolResult):
        return result
    text = json.dumps(result, separators=(',', ':'), ensure_ascii=False, default=str)
    return CallToolResult(content=[TextContent(type='text', text=text)], structured_content=json.loads(text))


def add_tool(server: MCPServer, call: Callable, **options: Any) -> None:
    """Register ``call`` (a sync function wrapping a tool, with its signature) as an MCP tool.

    It runs in a worker thread that the call abandons when it is cancelled (notifications/cancelled, or the
    client going away): the server answers the next request at once and can exit, whatever a hanging cluster
    still holds. Its result is sent through ``answer``; its arguments are checked by ``strict_arguments``.
    """
    @functools.wraps(call)
    async def run(**kwargs):
        return answer(await anyio.to_thread.run_sync(functools.partial(call, **kwargs), abandon_on_cancel=True))

    run.__signature__ = inspect.signature(call)  # type: ignore[attr-defined]
    server.add_tool(run, **options)
    strict_arguments(server, options.get('name') or call.__name__)


def in_thread(func: Callable) -> Callable:
    """An async function running sync ``func`` in a worker thread abandoned on cancellation (resources)."""
    @functools.wraps(func)
    async def run(*args, **kwargs):
        return await anyio.to_thread.run_sync(functools.partial(func, *args, **kwargs), abandon_on_cancel=True)
    return run


def leave(code: int = 0) -> None:
    """End the process now: the connection is closed, and threads of abandoned calls (a request to a hanging
    cluster waiting for its timeout) must not hold the exit; their results have no one to go to."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)  # pylint: disable=protected-access


# ------------------------------------------------------------------ the collection's version

def collection_version(path: str = __file__) -> str:
    """The version of the collection this file belongs to: MANIFEST.json of an installed collection, else
    galaxy.yml of a source tree; '' when neither can be read."""
    top = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(path))))
    try:
        with open(os.path.join(top, 'MANIFEST.json'), encoding='utf-8') as handle:
            return str(json.load(handle)['collection_info']['version'])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        with open(os.path.join(top, 'galaxy.yml'), encoding='utf-8') as handle:
            found = re.search(r'^version:\s*[\'"]?([^\s\'"#]+)', handle.read(), re.M)
    except OSError:
        return ''
    return found.group(1) if found else ''


# ------------------------------------------------------------------ the answers of the read tools

ClusterGuestRow = wire(health.GuestRow, 'ClusterGuestRow', {'cluster': str}, total=False)
ClusterNodeRow = wire(health.NodeRow, 'ClusterNodeRow', {'cluster': str}, total=False)
ClusterStorageRow = wire(health.StorageRow, 'ClusterStorageRow', {'cluster': str}, total=False)
HealthRow = wire(health.ClusterHealth, 'HealthRow', total=False)
HealthDetail = wire(health.ClusterHealth, 'HealthDetail', {'is_default': bool, 'writable': bool})


class _Spans(typing_extensions.TypedDict):
    clusters: Annotated[List[str], Field(description='The clusters asked, in configuration order.')]
    errors: Annotated[List[ClusterErrorRow], Field(description='The clusters left out, and why.')]


class GuestList(Page, _Spans):
    """Guests of the clusters asked, ordered by cluster (configuration order), then vmid."""
    guests: List[ClusterGuestRow]


class NodeList(Page, _Spans):
    """Nodes, ordered by cluster, then name."""
    nodes: List[ClusterNodeRow]


class StorageList(Page, _Spans):
    """Storages of every node, ordered by cluster, node, storage."""
    storages: List[ClusterStorageRow]


class TaskRow(typing_extensions.TypedDict, total=False):
    """A Proxmox task: times in seconds since the epoch; status 'OK', an error text, or 'running'."""
    cluster: str
    upid: Optional[str]
    type: Optional[str]
    id: Optional[str]
    node: Optional[str]
    user: Optional[str]
    starttime: Optional[int]
    endtime: Optional[int]
    status: str


class TaskList(Page, _Spans):
    """Tasks, newest first."""
    tasks: List[TaskRow]


class PatternRow(typing_extensions.TypedDict):
    prefix: str
    cluster: str


class Writes(typing_extensions.TypedDict):
    """Whether this server may write, and where."""
    enabled: bool
    clusters: Union[List[str], str]
    error: Optional[str]
    PMX_MCP_WRITE_CLUSTERS: Optional[str]
    how_to_enable: Optional[str]


class ClusterList(Page):
    """Every configured cluster with its health, in configuration order."""
    clusters: List[HealthRow]
    default_cluster: str
    reachable: List[str]
    unreachable: List[ClusterErrorRow]
    prefix_patterns: List[PatternRow]
    writes: Writes


class GuestSummary(typing_extensions.TypedDict):
    name: Optional[str]
    vmid: int
    type: Optional[str]
    node: Optional[str]
    status: Optional[str]
    template: bool


class SnapshotRow(typing_extensions.TypedDict, total=False):
    """A snapshot: ``current`` marks the one the guest runs from; snaptime in seconds since the epoch."""
    name: Optional[str]
    description: str
    snaptime: Optional[int]
    parent: Optional[str]
    vmstate: bool
    current: bool
    state: Optional[str]


class BackupRow(typing_extensions.TypedDict, total=False):
    """A backup archive: ctime in seconds since the epoch, time the same in UTC, size in bytes."""
    volid: Optional[str]
    storage: str
    vmid: Optional[int]
    type: Optional[str]
    ctime: int
    time: str
    size: int
    format: Optional[str]
    notes: str
    protected: bool


class _Routed(typing_extensions.TypedDict):
    cluster: str
    route_reason: str
    unreadable: Annotated[List[ClusterErrorRow], Field(
        description='Clusters the lookup could not read (the guest may also be there).')]


class SnapshotList(Page, _Routed):
    """The snapshots of one guest, oldest first."""
    guest: GuestSummary
    snapshots: List[SnapshotRow]


class BackupList(Page, _Routed):
    """The backups of one guest, newest first."""
    backups: List[BackupRow]


class StorageError(typing_extensions.TypedDict):
    storage: Optional[str]
    error: str


class GuestBackups(typing_extensions.TypedDict):
    backups: List[BackupRow]
    errors: List[StorageError]


class GuestDetails(_Routed):
    """One guest: its summary, current status, configuration (PVE's keys), snapshots and backups."""
    guest: GuestSummary
    status: Dict[str, Any]
    config: Dict[str, Any]
    snapshots: List[SnapshotRow]
    backups: GuestBackups


class Route(typing_extensions.TypedDict):
    """Where a guest of this name goes, and why."""
    name: str
    cluster: str
    reason: str
    located: List[str]
    pattern_matches: Dict[str, List[str]]
    writable: bool
    unreadable: List[ClusterErrorRow]
    write_refused: Optional[str]
