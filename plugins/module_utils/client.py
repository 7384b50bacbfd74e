# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""PveClient: one cluster's API over proxmoxer.

What it adds to proxmoxer, and why:

* token auth from ``user@realm!tokenname`` and TLS verification on by
  default (optionally against a CA bundle), passed per request so that
  ``REQUESTS_CA_BUNDLE`` cannot silently override it;
* failover to the next API URL of the same cluster when a connection cannot
  be opened (the request was never sent, so this is safe for writes too);
* retries only for GET, the one safe-to-repeat method; a write whose
  connection broke after it was sent is reported, never blindly repeated;
* HTTP status codes mapped to typed errors in one place (401, 403, 400, 404);
* waiting for a task (UPID) with a timeout, reporting a failed task's exit
  status and the tail of its log.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import html
import re
import time
from typing import Any, Dict, List, Optional

from ansible_collections.pmx.multicluster.plugins.module_utils.config import ClusterConfig
from ansible_collections.pmx.multicluster.plugins.module_utils.errors import (
    ApiError, AuthenticationError, ClusterConnectionError, PermissionDeniedError, ResourceNotFoundError,
    TaskError, TaskTimeoutError)

try:
    import requests
    from proxmoxer import ProxmoxAPI
    from proxmoxer.core import ResourceException
    HAS_DEPS = True
    IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - reported by the front ends
    HAS_DEPS = False
    IMPORT_ERROR = exc
    ResourceException = None

# Statuses after which a GET is worth repeating: the server or a proxy was busy.
RETRY_STATUSES = (502, 503, 504)
TASK_LOG_TAIL = 20
TASK_OK_PREFIXES = ('OK', 'WARNINGS')
DEFAULT_TASK_TIMEOUT = 300
PERMISSION_CHECK = re.compile(r'Permission check failed|permission denied', re.I)


def _clean_message(text: Any, limit: int = 300) -> str:
    """PVE's message as one readable line; HTML error pages reduced to their text."""
    if isinstance(text, bytes):
        text = text.decode('utf-8', 'replace')
    text = str(text or '')
    if '<' in text and '>' in text:
        text = re.sub(r'(?is)<(script|style).*?</\1>', ' ', text)
        text = html.unescape(re.sub(r'<[^>]+>', ' ', text))
    text = ' '.join(text.split())
    return text[:limit] + ('...' if len(text) > limit else '')


def _never_sent(exc: Exception) -> bool:
    """True when the connection could not be opened, so the request did not reach the server."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.SSLError):
        return False
    if isinstance(exc, requests.exceptions.ConnectionError):
        reason = exc.args[0] if exc.args else None
        reason = getattr(reason, 'reason', reason)
        name = type(reason).__name__
        return name in ('NewConnectionError', 'ConnectTimeoutError', 'NameResolutionError')
    return False


# requests' exception texts are long and nested; these turn them into a few words.
CONNECTION_REASONS = (
    (r'Connection refused', 'connection refused'),
    (r'Name or service not known|NameResolutionError|nodename nor servname', 'host name not found'),
    (r'timed out|Timeout', 'timed out'),
    (r'Connection reset|Connection aborted|RemoteDisconnected', 'connection reset'),
    (r'No route to host', 'no route to host'),
    (r'Network is unreachable', 'network unreachable'),
)
TLS_REASONS = (
    (r'self[- ]signed', 'self-signed certificate not trusted'),
    (r'unable to get local issuer', 'certificate issuer not trusted'),
    (r"[Hh]ostname mismatch|doesn't match|not valid for", 'certificate does not match the host'),
    (r'expired', 'certificate expired'),
    (r'CERTIFICATE_VERIFY_FAILED', 'certificate verify failed'),
)


def _reason(exc: Exception, table=CONNECTION_REASONS, limit: int = 200) -> str:
    """The first reason of ``table`` whose pattern the exception's text matches, else the text itself."""
    text = str(exc)
    for pattern, reason in table:
        if re.search(pattern, text):
            return reason
    return _clean_message(text, limit)


class PveClient:
    """The API of one cluster. Thread-safe for concurrent reads (one requests session per URL)."""

    def __init__(self, cluster: ClusterConfig, retries: int = 2, backoff: float = 0.5):
        if not HAS_DEPS:
            raise ImportError('pmx.multicluster needs proxmoxer and requests: pip install proxmoxer requests '
                              '(%s)' % IMPORT_ERROR)
        self.cluster = cluster
        self.retries = retries
        self.backoff = backoff
        self._apis: Dict[str, Any] = {}
        # Index of the URL that answered last; later requests start there.
        self._active = 0

    # ------------------------------------------------------------ plumbing

    def _api(self, url: str):
        api = self._apis.get(url)
        if api is None:
            host = url[len('https://'):]
            api = ProxmoxAPI(host, user=self.cluster.token_user, token_name=self.cluster.token_name,
                             token_value=self.cluster.token_secret, verify_ssl=self.cluster.verify,
                             timeout=self.cluster.timeout)
            self._apis[url] = api
        return api

    def _where(self, method: str, path: str) -> str:
        return "cluster '%s': %s /%s" % (self.cluster.name, method, path.lstrip('/'))

    def _grant_hint(self) -> str:
        """How to give the token a missing privilege (PVE checks some inside tasks, some before)."""
        return ("Grant the missing privilege to the token (pveum acl modify <path> --tokens '%s' --roles <role>) "
                "or to its user if the token is privilege-separated" % self.cluster.token_id)

    def _map_resource_error(self, exc, method: str, path: str, url: str):
        status = exc.status_code
        reason = _clean_message(exc.content)
        errors = getattr(exc, 'errors', None)
        if isinstance(errors, dict) and set(errors) == {'errors'} and isinstance(errors['errors'], (bytes, str)):
            # An HTML or text body instead of PVE's JSON.
            details = _clean_message(errors['errors'], 200)
            errors = {}
            if details and details not in reason:
                reason = '%s (%s)' % (reason, details) if reason else details
        where = self._where(method, path)
        if status == 401:
            return AuthenticationError(
                "cluster '%s': the API at %s rejected the token %s (401 %s). Check the token secret "
                "(PROXMOX_CLUSTER_%s_TOKEN_SECRET) and that the token exists and has not expired."
                % (self.cluster.name, url, self.cluster.token_id, reason or 'authentication failure',
                   self.cluster.name), self.cluster.name)
        if status == 403:
            message = "%s: permission denied for token %s: %s. %s." % (
                where, self.cluster.token_id, reason or 'forbidden', self._grant_hint())
            return PermissionDeniedError(message, self.cluster.name)
        detail = ''
        if isinstance(errors, dict) and errors:
            detail = ': ' + '; '.join('%s: %s' % (k, _clean_message(v, 200)) for k, v in sorted(errors.items()))
        message = '%s failed (HTTP %s %s)%s' % (where, status, reason, detail)
        if status == 404 or re.search(r'does not exist|not found', reason, re.I):
            return ResourceNotFoundError(message, self.cluster.name, status, errors)
        return ApiError(message, self.cluster.name, status, errors if isinstance(errors, dict) else {})

    def request(self, method: str, path: str, **params) -> Any:
        """One API call with failover and (GET only) retries; returns PVE's ``data``.

        :raises ClusterConnectionError: no URL of the cluster could be reached, or a
            write's connection broke after it was sent (its outcome is unknown).
        :raises ApiError: (and subclasses) PVE answered with an error status.
        """
        method = method.upper()
        path = path.strip('/')
        urls = self.cluster.api_urls
        attempts = self.retries + 1 if method == 'GET' else 1
        failures: List[str] = []
        for attempt in range(attempts):
            if attempt:
                time.sleep(self.backoff * (2 ** (attempt - 1)))
            failures = []
            for offset in range(len(urls)):
                index = (self._active + offset) % len(urls)
                url = urls[index]
                try:
                    result = getattr(self._api(url)(path), method.lower())(**params)
                    self._active = index
                    return result
                except ResourceException as exc:
                    if method == 'GET' and exc.status_code in RETRY_STATUSES and attempt + 1 < attempts:
                        failures.append('%s: HTTP %s' % (url, exc.status_code))
                        break
                    raise self._map_resource_error(exc, method, path, url)
                except requests.exceptions.SSLError as exc:
                    name = self.cluster.name
                    raise ClusterConnectionError(
                        "cluster '%s': TLS certificate verification failed for %s (%s). Set "
                        "PROXMOX_CLUSTER_%s_CA_BUNDLE to the CA certificate that signed the cluster's "
                        "certificate, or PROXMOX_CLUSTER_%s_VERIFY_SSL=false to turn verification off for "
                        "this cluster only." % (name, url, _reason(exc, TLS_REASONS, 160), name, name), name)
                except requests.exceptions.RequestException as exc:
                    reason = _reason(exc)
                    if isinstance(exc, requests.exceptions.ReadTimeout):
                        # A hanging server: say how long was waited and which setting changes it.
                        reason = 'no answer within %gs, PROXMOX_CLUSTER_%s_TIMEOUT' % (
                            self.cluster.timeout, self.cluster.name)
                    if _never_sent(exc):
                        failures.append('%s: %s' % (url, reason))
                        continue  # next URL of the same cluster
                    if method != 'GET':
                        raise ClusterConnectionError(
                            "%s: the connection to %s broke after the request was sent (%s); it may or may "
                            "not have been applied. Nothing was retried: check the state and run again."
                            % (self._where(method, path), url, reason), self.cluster.name)
                    failures.append('%s: %s' % (url, reason))
                    break  # retry this GET after a pause
                except ValueError as exc:  # a 2xx body that is not PVE's JSON
                    raise ApiError('%s: the answer from %s was not valid JSON (%s); is this a Proxmox VE API?'
                                   % (self._where(method, path), url, _clean_message(exc, 120)), self.cluster.name)
            else:
                # Every URL failed before sending: retrying soon rarely helps, report now.
                break
        name = self.cluster.name
        raise ClusterConnectionError(
            "cluster '%s' is unreachable: %s. Check that the API URL is right and the cluster is up "
            "(PROXMOX_CLUSTER_%s_API_URL)." % (name, '; '.join(failures) or 'no answer', name), name)

    def get(self, path: str, **params) -> Any:
        return self.request('GET', path, **params)

    def post(self, path: str, **data) -> Any:
        return self.request('POST', path, **data)

    def put(self, path: str, **data) -> Any:
        return self.request('PUT', path, **data)

    def delete(self, path: str, **params) -> Any:
        return self.request('DELETE', path, **params)

    # --------------------------------------------------------------- tasks

    @staticmethod
    def task_node(upid: str) -> str:
        """The node a UPID ran on (``UPID:node:pid:pstart:start:type:id:user:``)."""
        parts = str(upid).split(':')
        if len(parts) < 3 or parts[0] != 'UPID':
            raise ApiError('not a Proxmox task id: %r' % upid)
        return parts[1]

    def task_log_tail(self, upid: str, lines: int = TASK_LOG_TAIL) -> List[str]:
        """The last lines of a task's log (best effort: an empty list if it cannot be read)."""
        node = self.task_node(upid)
        try:
            total = self.get('nodes/%s/tasks/%s/status' % (node, upid)).get('log_lines')
            start = max(0, int(total) - lines) if total else 0
        except (ApiError, ClusterConnectionError, TypeError, ValueError, AttributeError):
            start = 0
        try:
            entries = self.get('nodes/%s/tasks/%s/log' % (node, upid), start=start, limit=10000) or []
        except (ApiError, ClusterConnectionError):
            return []
        return [str(entry.get('t', '')) for entry in entries][-lines:]

    def wait_task(self, upid: str, timeout: float = DEFAULT_TASK_TIMEOUT, poll: float = 0.2) -> Dict:
        """Wait for a task to stop; returns its status.

        :raises TaskError: the task ended other than OK (exit status and log tail in the message).
        :raises TaskTimeoutError: it still ran after ``timeout`` seconds (it is not stopped).
        """
        node = self.task_node(upid)
        deadline = time.monotonic() + timeout
        interval = poll
        while True:
            status = self.get('nodes/%s/tasks/%s/status' % (node, upid)) or {}
            if status.get('status') == 'stopped':
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TaskTimeoutError(
                    "cluster '%s': task %s on node %s was still running after %ss; it goes on in the "
                    "background. Raise timeout, or check the task in the Proxmox UI."
                    % (self.cluster.name, status.get('type') or upid, node, timeout), self.cluster.name, upid)
            time.sleep(min(interval, remaining))
            interval = min(interval * 1.5, 2.0)
        exitstatus = str(status.get('exitstatus') or '')
        if not exitstatus.startswith(TASK_OK_PREFIXES):
            log = self.task_log_tail(upid)
            tail = ' | '.join(line for line in log if line)
            hint = ''
            if PERMISSION_CHECK.search(exitstatus):
                # PVE checks some privileges inside the task: say which token lacks it and how to grant it.
                hint = '. The token %s lacks this privilege. %s' % (self.cluster.token_id, self._grant_hint())
            raise TaskError(
                "cluster '%s': task %s on node %s failed: %s%s%s"
                % (self.cluster.name, status.get('type') or '', node, exitstatus or 'unknown status', hint,
                   ('. Last log lines: ' + tail) if tail else ''),
                self.cluster.name, upid, exitstatus, log)
        return status

    def run_task(self, method: str, path: str, params: Optional[Dict] = None,
                 timeout: float = DEFAULT_TASK_TIMEOUT) -> Dict:
        """Call an endpoint that starts a task and wait for it; returns the task status (with ``upid``).

        The API parameters are a dict, so that PVE's own ``timeout`` parameter (of a shutdown, say)
        never collides with how long to wait for the task.
        """
        upid = self.request(method, path, **(params or {}))
        if not (isinstance(upid, str) and upid.startswith('UPID:')):
            return {'upid': None, 'status': 'stopped', 'exitstatus': 'OK', 'data': upid}
        status = dict(self.wait_task(upid, timeout))
        status['upid'] = upid
        return status
