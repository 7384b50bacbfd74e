# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The MCP server's safety rails: the confirmation gate, the audit log and the HTTP transport's checks.

- ``Gate``: a destructive tool called without confirmation answers with a preview and a token bound to
  exactly that action (the tool, its arguments as validated, and what the preview names: cluster, guest,
  archive, what would be deleted). Only a call with that token and ``confirm: true`` (a JSON boolean) acts;
  a token that expired, was used, or was issued for another action is refused with a fresh preview.
  Tokens are HMAC-SHA256 over the binding with a key made at start (never written anywhere), valid for
  PMX_MCP_CONFIRM_TTL seconds (default 300) and good for one action.
- ``Audit``: every preview, refusal and write as one JSON line in PMX_MCP_AUDIT_LOG (off by default),
  appended with O_APPEND in one write() per line, so several servers may share one file.
- ``bearer_auth`` / ``transport_security``: the streamable HTTP transport's bearer token (the SDK's
  TokenVerifier) and DNS-rebinding protection (the SDK's TransportSecuritySettings).

Imported by pmx_mcp.py, after it has put the collection on sys.path.
"""

import base64
import contextvars
import hashlib
import hmac
import inspect
import ipaddress
import json
import os
import secrets
import threading
import time
from datetime import datetime, timezone
from typing import Annotated, Any, Callable, Dict, List, Optional, Tuple

from pydantic import BaseModel, Field

from ansible_collections.pmx.multicluster.plugins.module_utils.errors import ClusterError, ConfigError

DEFAULT_CONFIRM_TTL = 300.0
TOKEN_PARAM = 'confirmation_token'
# Keys of a preview that name what the action would touch: the token is bound to them too.
TARGET_KEYS = ('cluster', 'archive', 'removed', 'deleted', 'was', 'now', 'replaced')

# strict: a JSON boolean only; "yes", "true" or 1 are refused by the argument validation.
ConfirmArg = Annotated[bool, Field(
    strict=True,
    description='true (a JSON boolean) together with confirmation_token acts. Without both, nothing is changed '
                'and the answer is a preview (guest, cluster, current status, what would happen) with a '
                'confirmation_token bound to exactly that action.')]
TokenArg = Annotated[Optional[str], Field(
    description='The confirmation_token of the preview of exactly this call (same tool, same arguments); '
                'valid once, for a few minutes (token_expires_in in the preview).')]

# The MCP client of the call in progress (its initialize request's clientInfo), set by ClientInfo.
CLIENT: contextvars.ContextVar = contextvars.ContextVar('pmx_mcp_client', default=None)
# The name of the gated wrapper's Context parameter (the SDK injects it; it is not a tool argument).
CONTEXT_PARAM = 'mcp_context'


class Approval(BaseModel):
    """What the person is asked (MCP elicitation, PMX_MCP_ELICIT=1)."""

    approve: bool = Field(description='true: do it now; false: do nothing.')


def ask_person(context: Any, message: str) -> Optional[bool]:
    """Ask the person through the client (MCP elicitation) from the tool's worker thread: True (approved),
    False (declined, cancelled), None (the client cannot be asked: no elicitation capability)."""
    import anyio.from_thread
    from mcp.types import ClientCapabilities, ElicitationCapability

    try:
        session = context.request_context.session
        if not session.check_client_capability(ClientCapabilities(elicitation=ElicitationCapability())):
            return None
    except (AttributeError, ValueError):
        return None
    answer = anyio.from_thread.run(context.elicit, message, Approval)
    return answer.action == 'accept' and getattr(answer, 'data', None) is not None and answer.data.approve is True


def seconds_setting(environ: Dict[str, str], name: str, default: float, most: float = float('inf')) -> float:
    """The environment variable ``name`` as a number of seconds, more than 0 and at most ``most``
    (``default`` when unset); anything else is a configuration error naming it."""
    text = environ.get(name, '').strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= most or value == float('inf'):
        limit = ' up to %g' % most if most != float('inf') else ''
        raise ConfigError('%s must be a positive number of seconds%s, got %r' % (name, limit, text))
    return value


def confirm_ttl(environ: Dict[str, str]) -> float:
    """PMX_MCP_CONFIRM_TTL in seconds (DEFAULT_CONFIRM_TTL when unset, at most a day)."""
    return seconds_setting(environ, 'PMX_MCP_CONFIRM_TTL', DEFAULT_CONFIRM_TTL, 86400)


class ConfirmationRefused(ClusterError):
    """A confirmation that does not match: the answer carries a fresh preview (with a new token)."""

    def __init__(self, message: str, preview: Dict):
        super().__init__(message)
        self.preview = preview

    def details(self) -> Dict[str, Any]:
        return dict(super().details(), preview=self.preview)


def creating(guest: Dict) -> bool:
    """Whether a bulk preview's guest row is a guest its plan would create or clone."""
    plan = guest.get('plan') or []
    return bool(plan) and isinstance(plan[0], dict) and plan[0].get('action') in ('create', 'clone')


def target_of(preview: Dict) -> Dict:
    """What a preview says the action would touch: its cluster, guest(s), archive, the backups or snapshots it
    would delete, where a guest is and would go. Bulk previews: every selected guest."""
    target = {}
    for key in TARGET_KEYS:
        value = preview.get(key)
        if isinstance(value, dict):
            # Where a guest is and would go, not its passing state (status, uptime).
            value = dict((k, value.get(k)) for k in ('cluster', 'node', 'vmid', 'name'))
        if value is not None:
            target[key] = value
    guest = preview.get('guest')
    if isinstance(guest, dict):
        target['guest'] = [guest.get('vmid'), guest.get('name')]
    elif preview.get('vmid') is not None:
        target['guest'] = [preview.get('vmid'), preview.get('name')]
    if isinstance(preview.get('guests'), list):
        # A guest to be made is bound by its cluster, name and steps: the vmid a preview shows for it is the free
        # one it would take at that moment (guests planned at once take them in any order), not what was approved.
        target['guests'] = [[g.get('cluster'), None if creating(g) else g.get('vmid'), g.get('name')] +
                            ([[step.get('action') for step in g.get('plan') or []]] if creating(g) else [])
                            for g in preview['guests']]
    if isinstance(preview.get('moves'), list):
        target['moves'] = [[m.get('vmid'), m.get('target_node')] for m in preview['moves']]
    return target


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode('ascii').rstrip('=')


def describe(tool: str, target: Dict) -> str:
    """A short text of what a token was issued for (for the refusal message)."""
    where = target.get('cluster') or (target.get('was') or {}).get('cluster')
    guest = target.get('guest')
    text = tool
    if guest:
        text += " of %s (vmid %s)" % (guest[1], guest[0])
    elif target.get('guests') is not None:
        text += ' of %d guest(s)' % len(target['guests'])
    return text + (" on cluster '%s'" % where if where else '')


class Gate:
    """Issues and checks confirmation tokens; ``wrap`` puts a destructive tool behind it."""

    def __init__(self, ttl: float = DEFAULT_CONFIRM_TTL, clock: Callable[[], float] = time.time,
                 elicit: bool = False):
        self.ttl = ttl
        self.clock = clock
        # PMX_MCP_ELICIT=1: a client that supports elicitation is asked to have the person approve, instead of
        # the token round trip (an agent may answer elicitations itself: off by default).
        self.elicit = elicit
        # Per process, never stored: a restart invalidates every token.
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._issued: Dict[str, Tuple[float, str]] = {}   # token id -> (expiry, what it is for)
        self._used: Dict[str, float] = {}                 # token id -> when it was used

    @staticmethod
    def binding(tool: str, arguments: Dict, target: Dict) -> str:
        return json.dumps([tool, arguments, target], sort_keys=True, separators=(',', ':'), default=str)

    def _mac(self, expires: int, token_id: str, binding: str) -> str:
        return _b64(hmac.new(self._key, ('%d.%s.%s' % (expires, token_id, binding)).encode('utf-8'),
                             hashlib.sha256).digest())

    def issue(self, tool: str, binding: str, target: Dict) -> Dict:
        """A new token for ``binding``: {confirmation_token, token_id, token_expires_in, token_expires_at}."""
        now = self.clock()
        expires = int(now + self.ttl + 0.999)
        token_id = _b64(secrets.token_bytes(9))
        with self._lock:
            for old in [k for k, (exp, dummy) in self._issued.items() if exp < now - self.ttl]:
                self._issued.pop(old, None)
                self._used.pop(old, None)
            self._issued[token_id] = (expires, describe(tool, target))
        return {'confirmation_token': '%d.%s.%s' % (expires, token_id, self._mac(expires, token_id, binding)),
                'token_id': token_id, 'token_expires_in': int(self.ttl),
                'token_expires_at': datetime.fromtimestamp(expires, timezone.utc).isoformat()}

    def redeem(self, token: str, binding: str) -> Tuple[Optional[str], Optional[str]]:
        """(None, token id) when ``token`` confirms ``binding`` (it is then used up), else (why not, token id)."""
        parts = str(token).strip().split('.')
        if len(parts) != 3 or not parts[0].isdigit():
            return 'confirmation_token is not a token this server issued', None
        expires, token_id, mac = int(parts[0]), parts[1], parts[2]
        with self._lock:
            issued = self._issued.get(token_id)
            if not hmac.compare_digest(mac, self._mac(expires, token_id, binding)):
                if issued is None:
                    return ('confirmation_token was not issued by this server process (it may have restarted) or '
                            'is not for this action'), token_id
                return ('confirmation_token was issued for another action (%s), not for this call; a token confirms '
                        'only the exact call it was previewed for' % issued[1]), token_id
            if token_id in self._used:
                return ('confirmation_token was already used (%s); a token confirms one action only'
                        % datetime.fromtimestamp(self._used[token_id], timezone.utc).isoformat()), token_id
            now = self.clock()
            if now > expires:
                return ('confirmation_token expired %ds ago (tokens are valid for %ds)'
                        % (int(now - expires), int(self.ttl))), token_id
            self._used[token_id] = now
        return None, token_id

    def wrap(self, fn: Callable[..., Dict]) -> Callable[..., Dict]:
        """``fn`` (a tool taking ``confirm``, which previews with confirm=False) behind the gate.

        The wrapper takes ``confirm`` (strict boolean) and ``confirmation_token``; it always builds the preview
        first, so the token is checked against what the action would touch now.
        """
        tool = fn.__name__
        signature = inspect.signature(fn)
        if 'confirm' not in signature.parameters:
            raise TypeError('%s: a gated tool takes confirm' % tool)
        params = [p.replace(annotation=ConfirmArg) if p.name == 'confirm' else p
                  for p in signature.parameters.values()]
        params.append(inspect.Parameter(TOKEN_PARAM, inspect.Parameter.KEYWORD_ONLY, default=None,
                                        annotation=TokenArg))
        from mcp.server.mcpserver import Context
        params.append(inspect.Parameter(CONTEXT_PARAM, inspect.Parameter.KEYWORD_ONLY, default=None,
                                        annotation=Optional[Context]))

        def gated(**kwargs):
            confirm = kwargs.pop('confirm', False)
            token = kwargs.pop(TOKEN_PARAM, None)
            context = kwargs.pop(CONTEXT_PARAM, None)
            preview = fn(confirm=False, **kwargs)
            if not isinstance(preview, dict) or not preview.get('preview'):
                return preview  # nothing to confirm: nothing would be done
            target = target_of(preview)
            binding = self.binding(tool, kwargs, target)
            if confirm is True and token:
                reason, token_id = self.redeem(token, binding)
                if reason is None:
                    result = fn(confirm=True, **kwargs)
                    if isinstance(result, dict):
                        result = dict(result, confirmed_token_id=token_id)
                    return result
                fresh = dict(preview, **self.issue(tool, binding, target))
                fresh['to_confirm'] = self.how_to(tool)
                raise ConfirmationRefused('%s: %s; nothing was changed. A fresh preview with a new token is in this '
                                          'answer' % (tool, reason), fresh)
            if self.elicit and not token and context is not None:
                approved = ask_person(context, '%s: %s. Approve?' % (tool, preview.get('would') or 'a change'))
                if approved:
                    result = fn(confirm=True, **kwargs)
                    return dict(result, confirmed_by='elicitation') if isinstance(result, dict) else result
                if approved is False:
                    return dict(preview, **self.issue(tool, binding, target), to_confirm=self.how_to(tool),
                                note='the person declined (elicitation); nothing was changed')
            out = dict(preview, **self.issue(tool, binding, target))
            out['to_confirm'] = self.how_to(tool)
            if confirm is True:
                out['note'] = 'confirm=true alone does not act: echo the confirmation_token of this preview with it'
            elif token:
                out['note'] = 'a confirmation_token acts only with confirm=true (a JSON boolean)'
            return out

        gated.__name__ = tool
        gated.__qualname__ = fn.__qualname__
        gated.__doc__ = (fn.__doc__ or '') + (
            ' Two steps: call it without confirm to get a preview and a confirmation_token (valid %ds, once), then '
            'call it again with the same arguments, confirm=true and that confirmation_token.' % int(self.ttl))
        gated.__signature__ = signature.replace(parameters=params)
        gated.__annotations__ = dict(getattr(fn, '__annotations__', {}), confirm=ConfirmArg,
                                     **{TOKEN_PARAM: TokenArg, CONTEXT_PARAM: Optional[Context]})
        gated.__wrapped_gate__ = True
        return gated

    @staticmethod
    def how_to(tool: str) -> str:
        return ('call %s again with the same arguments, confirm=true and this confirmation_token' % tool)


# ------------------------------------------------------------------ audit log

def _upids(value: Any, found: List[str]) -> List[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == 'upid' and isinstance(item, str) and item not in found:
                found.append(item)
            else:
                _upids(item, found)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _upids(item, found)
    return found


def _clusters(result: Dict) -> List[str]:
    names = []
    for value in [result.get('cluster'), (result.get('was') or {}).get('cluster'),
                  (result.get('now') or {}).get('cluster')] + [g.get('cluster') for g in result.get('guests') or []
                                                               if isinstance(g, dict)]:
        if value and value not in names:
            names.append(value)
    return names


class Audit:
    """One JSON line per preview, refusal and write, appended to ``path`` (None: off)."""

    def __init__(self, path: Optional[str], scrub: Callable[[Any], Any]):
        self.path = path or None
        self.scrub = scrub

    def check(self) -> None:
        """:raises ConfigError: the file cannot be opened for appending (checked at start: no write may
        happen that the log would miss)."""
        if not self.path:
            return
        try:
            os.close(os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600))
        except OSError as exc:
            raise ConfigError('PMX_MCP_AUDIT_LOG=%s cannot be appended to: %s; no tool works until it is fixed'
                              % (self.path, exc.strerror)) from None

    @staticmethod
    def arguments(kwargs: Dict) -> Dict:
        """The call's arguments for the record: the confirmation token by its id only."""
        args = dict((k, v) for k, v in kwargs.items() if k != CONTEXT_PARAM)
        token = args.get(TOKEN_PARAM)
        if token:
            parts = str(token).split('.')
            args[TOKEN_PARAM] = {'token_id': parts[1] if len(parts) == 3 else None}
        return args

    def record(self, tool: str, kwargs: Dict, started: float, result: Optional[Dict] = None,
               error: Optional[ClusterError] = None) -> Optional[Dict]:
        """Append the record of one call (a preview, a refused confirmation, a write, a failed write)."""
        if not self.path:
            return None
        result = result if isinstance(result, dict) else {}
        if isinstance(error, ConfirmationRefused):
            event, outcome, result = 'refused', 'refused', error.preview
        elif error is not None:
            event, outcome = 'write', 'failed'
        elif result.get('preview'):
            event, outcome = 'preview', 'preview'
        else:
            event, outcome = 'write', 'changed' if result.get('changed') else 'unchanged'
        client = CLIENT.get() or {}
        plan = result.get('plan')
        if plan is None and isinstance(result.get('guests'), list):
            plan = [{'cluster': g.get('cluster'), 'name': g.get('name'), 'vmid': g.get('vmid'),
                     'changed': g.get('changed'), 'plan': g.get('plan'), 'failed': g.get('failed')}
                    for g in result['guests'] if isinstance(g, dict)]
        if plan is None and isinstance(result.get('moves'), list):
            plan = result['moves']
        entry = {
            'time': datetime.now(timezone.utc).isoformat(timespec='milliseconds'),
            'event': event, 'tool': tool, 'arguments': self.arguments(kwargs),
            'cluster': (_clusters(result) or [None])[0], 'clusters': _clusters(result),
            'route_reason': result.get('route_reason'), 'would': result.get('would'), 'plan': plan,
            'tasks': _upids(result, []), 'outcome': outcome, 'changed': bool(result.get('changed')),
            'error': str(error) if error is not None else None,
            'token_id': result.get('token_id') or result.get('confirmed_token_id'),
            'confirmed_by': result.get('confirmed_by') or ('token' if result.get('confirmed_token_id') else None),
            'client': client.get('name'), 'client_version': client.get('version'),
            'seconds': round(time.monotonic() - started, 3),
        }
        entry = self.scrub(entry)
        line = json.dumps(entry, sort_keys=True, default=str, separators=(',', ':')) + '\n'
        try:
            self.append(line)
        except OSError as exc:
            # The call has been made: its answer stands, and says the record is missing.
            return {'audit_error': 'the audit log %s could not be appended to: %s' % (self.path, exc.strerror)}
        return entry

    def append(self, line: str) -> None:
        """One write() with O_APPEND: lines of concurrent writers never interleave."""
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            data = line.encode('utf-8')
            while data:
                written = os.write(fd, data)
                data = data[written:]
        finally:
            os.close(fd)

    def read(self, limit: int = 50, tool: Optional[str] = None, cluster: Optional[str] = None,
             event: Optional[str] = None, outcome: Optional[str] = None, since: Optional[str] = None) -> Dict:
        """The newest ``limit`` records matching the filters, newest first, and how many matched in all."""
        if not self.path:
            raise ConfigError('the audit log is off: start the server with PMX_MCP_AUDIT_LOG=/path/to/audit.jsonl')
        try:
            with open(self.path, encoding='utf-8') as handle:
                lines = handle.readlines()
        except FileNotFoundError:
            lines = []
        except OSError as exc:
            raise ConfigError('PMX_MCP_AUDIT_LOG %s cannot be read: %s' % (self.path, exc.strerror)) from None
        rows, bad = [], 0
        for line in lines:
            try:
                row = json.loads(line)
            except ValueError:
                bad += 1
                continue
            if ((tool and row.get('tool') != tool) or (event and row.get('event') != event)
                    or (outcome and row.get('outcome') != outcome)
                    or (cluster and cluster not in (row.get('clusters') or []))
                    or (since and (row.get('time') or '') < since)):
                continue
            rows.append(row)
        rows.reverse()
        return {'path': self.path, 'entries': rows[:limit], 'count': len(rows[:limit]), 'matched': len(rows),
                'truncated': len(rows) > limit, 'unreadable_lines': bad}


class ClientInfo:
    """Server middleware: the calling client's name (initialize's clientInfo) for the audit log."""

    async def __call__(self, ctx, call_next):
        token = None
        if getattr(ctx, 'method', None) == 'tools/call':
            params = getattr(getattr(ctx, 'session', None), 'client_params', None)
            info = getattr(params, 'client_info', None)
            if info is not None:
                token = CLIENT.set({'name': getattr(info, 'name', None), 'version': getattr(info, 'version', None)})
        try:
            return await call_next(ctx)
        finally:
            if token is not None:
                CLIENT.reset(token)


# ------------------------------------------------------------------ HTTP transport

def is_loopback(host: str) -> bool:
    if host in ('localhost', 'localhost.'):
        return True
    try:
        return ipaddress.ip_address(host.strip('[]')).is_loopback
    except ValueError:
        return False


def http_token(environ: Dict[str, str], token_file: Optional[str]) -> Optional[str]:
    """The bearer token: --token-file (or PMX_MCP_HTTP_TOKEN_FILE), else PMX_MCP_HTTP_TOKEN; None when neither."""
    path = token_file or environ.get('PMX_MCP_HTTP_TOKEN_FILE', '').strip() or None
    if path:
        try:
            with open(path, encoding='utf-8') as handle:
                token = handle.read().strip()
        except OSError as exc:
            raise ConfigError('the HTTP token file %s cannot be read: %s' % (path, exc.strerror)) from None
        if not token:
            raise ConfigError('the HTTP token file %s is empty' % path)
    else:
        token = environ.get('PMX_MCP_HTTP_TOKEN', '').strip() or None
    if token is not None and len(token) < 16:
        raise ConfigError('the HTTP bearer token is too short (%d characters): use at least 16, for example '
                          '`openssl rand -hex 32`' % len(token))
    return token


def check_bind(host: str, token: Optional[str]) -> None:
    """:raises ConfigError: a non-loopback address without a bearer token."""
    if token is None and not is_loopback(host):
        raise ConfigError("refusing to listen on %s without a bearer token: set PMX_MCP_HTTP_TOKEN or "
                          "PMX_MCP_HTTP_TOKEN_FILE (or --token-file), or listen on 127.0.0.1 (the default)" % host)


def bearer_auth(token: str, url: str) -> Dict[str, Any]:
    """MCPServer options that make the streamable HTTP transport require ``Authorization: Bearer <token>``
    (the SDK's bearer middleware: 401 without it or with another token)."""
    from mcp.server.auth.provider import AccessToken
    from mcp.server.auth.settings import AuthSettings

    class StaticToken:
        """The SDK's TokenVerifier protocol for one shared token, compared in constant time."""

        async def verify_token(self, presented: str) -> Optional[AccessToken]:
            if hmac.compare_digest(presented.encode('utf-8'), token.encode('utf-8')):
                return AccessToken(token='bearer', client_id='pmx-mcp-http', scopes=[])
            return None

    return {'auth': AuthSettings(issuer_url=url, resource_server_url=None), 'token_verifier': StaticToken()}


def transport_security(host: str, port: int, allowed_hosts: List[str]):
    """DNS-rebinding protection (the SDK's TransportSecuritySettings): the Host header must be a loopback name,
    the address listened on, or one of ``allowed_hosts`` (``name`` for any port or none, as behind a TLS
    proxy on 443; ``name:port`` for that port only); a browser's Origin must name one of them too."""
    from mcp.server.transport_security import TransportSecuritySettings

    hosts = ['127.0.0.1:*', 'localhost:*', '[::1]:*']
    bind = '[%s]' % host if ':' in host and not host.startswith('[') else host
    if host not in ('0.0.0.0', '::'):
        hosts.append('%s:%d' % (bind, port))
    for name in allowed_hosts:
        name = name.strip()
        if not name:
            continue
        if ':' in name.rsplit(']', 1)[-1]:
            hosts.append(name)
        else:
            hosts.extend([name, name + ':*'])
    origins = []
    for value in hosts:
        origins.extend(['http://' + value, 'https://' + value])
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts,
                                     allowed_origins=origins)
