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
* retries only for GET, the one safe-to-repeat method, with jittered
  exponential backoff within a time budget (``RetryPolicy``); a write whose
  connection broke after it was sent is reported, never blindly repeated;
* a memory of clusters that just failed to answer (refused, timed out, TLS
  failure: ``FailureMemory``), so that a process making many requests pays
  for a hanging cluster once, not once per request;
* a token secret that cannot go into an HTTP header refused before any
  request, with a message that does not show it;
* HTTP status codes mapped to typed errors in one place (401, 403, 400, 404);
* waiting for a task (UPID) with a timeout, reporting a failed task's exit
  status and the tail of its log.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import html
import random
import re
import threading
import time
from typing import Any, Callable, Dict, List, Optional

from ansible_collections.pmx.multicluster.plugins.module_utils.config import ClusterConfig
from ansible_collections.pmx.multicluster.plugins.module_utils.errors import (
    ApiError,
    AuthenticationError,
    ClusterConnectionError,
    ConfigError,
    PermissionDeniedError,
    ResourceNotFoundError,
    says_not_found,
)
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.kinds import DEFAULT_TIMEOUT
from ansible_collections.pmx.multicluster.plugins.module_utils.tasks import (
    TASK_LOG_TAIL,
    TASK_POLL,
    run_task,
    task_log_tail,
    task_node,
    wait_task,
)

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
DEFAULT_TASK_TIMEOUT = DEFAULT_TIMEOUT
# How long a cluster that failed to answer is not asked again (seconds).
FAILURE_MEMORY_SECS = 30.0
# What a token secret cannot hold to be sent in a header: requests refuses control characters (quoting the header,
# secret and all, in its error); PVE's secrets are printable ASCII.
NOT_HEADER_SAFE = re.compile(r'[^\x20-\x7e]')


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


# OpenSSL's words for bytes that are not TLS at all: a plain HTTP server or another service on the port.
NOT_TLS = re.compile(r'WRONG_VERSION_NUMBER|wrong version number|record layer failure|packet length too long|'
                     r'unknown protocol|HTTP_REQUEST', re.I)


def _secs(value: float) -> str:
    return '%gs' % round(max(value, 0), 1)


class RetryPolicy:
    """When a GET is repeated: "full jitter" exponential backoff within a time budget.

    The pause before attempt n + 1 is a random time between 0 and ``min(cap, base * 2 ** (n - 1))``
    seconds. There is no further attempt after ``max_attempts``, nor when the pause would end more than
    ``budget`` seconds after the first attempt started. Defaults: base 0.2 s, cap 2 s, budget 10 s,
    6 attempts (at most 5 s of pauses in all). ``sleep``, ``clock`` and ``rand`` are injectable for tests.

    Only what is worth repeating is: a broken connection or a busy answer (502, 503, 504) to a GET. A
    refused connection, a timeout and a TLS failure are not (see PveClient.request); a write never is.
    """

    def __init__(self, base: float = 0.2, cap: float = 2.0, budget: float = 10.0, max_attempts: int = 6,
                 sleep: Callable[[float], Any] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 rand: Callable[[], float] = random.random):
        self.base = base
        self.cap = cap
        self.budget = budget
        self.max_attempts = max_attempts
        self.sleep = sleep
        self.clock = clock
        self.rand = rand

    def pause(self, attempt: int) -> float:
        """The pause after failed attempt ``attempt`` (1 for the first)."""
        return self.rand() * min(self.cap, self.base * 2 ** (attempt - 1))

    def again(self, attempt: int, started: float) -> bool:
        """After failed attempt ``attempt`` of a request that started at ``started`` (``clock()``): pause
        and return True if another attempt fits the policy, else return False at once."""
        if attempt >= self.max_attempts:
            return False
        pause = self.pause(attempt)
        if self.clock() + pause - started > self.budget:
            return False
        self.sleep(pause)
        return True


class FailureMemory:
    """Clusters that just failed to answer (connection refused, timed out, TLS failure), for ``hold`` seconds.

    While a cluster is remembered, ``check`` raises at once instead of letting a request wait for another
    timeout: a long-running front end (the MCP server, the inventory's per-guest requests) pays for a
    hanging cluster once. A cluster that answers is forgotten. Thread-safe; ``clock`` is injectable.
    """

    def __init__(self, hold: float = FAILURE_MEMORY_SECS, clock: Callable[[], float] = time.monotonic):
        self.hold = hold
        self._clock = clock
        self._failed: Dict[str, tuple] = {}
        self._lock = threading.Lock()

    def remember(self, cluster: str, reason: str, advice: str = '') -> None:
        """``cluster`` failed just now because of ``reason``; ``advice`` says what to check."""
        if self.hold > 0:
            with self._lock:
                self._failed[cluster] = (self._clock(), reason, advice)

    def forget(self, cluster: str) -> None:
        if self._failed:
            with self._lock:
                self._failed.pop(cluster, None)

    def check(self, cluster: str) -> None:
        """:raises ClusterConnectionError: ``cluster`` failed less than ``hold`` seconds ago (saying when and why)."""
        if not self._failed:
            return
        with self._lock:
            entry = self._failed.get(cluster)
            if entry is None:
                return
            ago = self._clock() - entry[0]
            if ago >= self.hold:
                del self._failed[cluster]
                return
        dummy, reason, advice = entry
        raise ClusterConnectionError("cluster '%s' did not answer %s ago (%s); not retried for another %s%s"
                                     % (cluster, _secs(ago), reason, _secs(self.hold - ago),
                                        '. ' + advice if advice else ''), cluster)


class PveClient:
    """The API of one cluster. Thread-safe for concurrent reads (one requests session per URL)."""

    def __init__(self, cluster: ClusterConfig, retries: Optional[int] = None, backoff: Optional[float] = None,
                 policy: Optional[RetryPolicy] = None, failures: Optional[FailureMemory] = None):
        """``policy``: when GETs are repeated (by default ``RetryPolicy()``; without a policy, ``retries`` and
        ``backoff`` set its ``max_attempts - 1`` and ``base``). ``failures``: the memory of clusters that
        failed (a registry shares one among its clients); by default the client's own."""
        if not HAS_DEPS:
            raise ImportError('pmx.multicluster needs proxmoxer and requests: pip install proxmoxer requests '
                              '(%s)' % IMPORT_ERROR)
        self.cluster = cluster
        if policy is None:
            policy = RetryPolicy()
            if retries is not None:
                policy.max_attempts = retries + 1
            if backoff is not None:
                policy.base = backoff
        self.policy = policy
        self.failures = failures if failures is not None else FailureMemory()
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

    def grant_hint(self) -> str:
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
                where, self.cluster.token_id, reason or 'forbidden', self.grant_hint())
            return PermissionDeniedError(message, self.cluster.name)
        detail = ''
        if isinstance(errors, dict) and errors:
            detail = ': ' + '; '.join('%s: %s' % (k, _clean_message(v, 200)) for k, v in sorted(errors.items()))
        message = '%s failed (HTTP %s %s)%s' % (where, status, reason, detail)
        if status == 404 or says_not_found(reason):
            return ResourceNotFoundError(message, self.cluster.name, status, errors)
        return ApiError(message, self.cluster.name, status, errors if isinstance(errors, dict) else {})

    def _unreachable(self, failures: List[str]) -> ClusterConnectionError:
        """No URL answered (refused, timed out...): the error, and the cluster remembered as failed."""
        name = self.cluster.name
        reason = '; '.join(failures) or 'no answer'
        advice = ('Check that the API URL is right and the cluster is up (PROXMOX_CLUSTER_%s_API_URL).' % name)
        self.failures.remember(name, reason, advice)
        return ClusterConnectionError("cluster '%s' is unreachable: %s. %s" % (name, reason, advice), name)

    def _tls_error(self, exc: Exception, url: str) -> ClusterConnectionError:
        """A TLS failure: not TLS at all on the port, or a certificate not trusted; remembered as failed."""
        name = self.cluster.name
        not_tls = NOT_TLS.search(str(exc))
        if not_tls:
            # Turning verification off would not help: say what is wrong with the URL instead.
            reason = '%s answered, but not with TLS (%s)' % (url, not_tls.group(0).lower().replace('_', ' '))
            advice = ('Check that PROXMOX_CLUSTER_%s_API_URL is the Proxmox VE API: https:// and its port, 8006 '
                      '(another service, or a plain HTTP server, answers on this one).' % name)
        else:
            reason = 'TLS certificate verification failed for %s (%s)' % (url, _reason(exc, TLS_REASONS, 160))
            advice = ("Set PROXMOX_CLUSTER_%s_CA_BUNDLE to the CA certificate that signed the cluster's "
                      "certificate, or PROXMOX_CLUSTER_%s_VERIFY_SSL=false to turn verification off for this "
                      "cluster only." % (name, name))
        self.failures.remember(name, reason, advice)
        return ClusterConnectionError("cluster '%s': %s. %s" % (name, reason, advice), name)

    def request(self, method: str, path: str, **params) -> Any:
        """One API call with failover and (GET only) retries; returns PVE's ``data``.

        A GET whose connection broke, or that got a busy answer (502, 503, 504), is repeated as
        ``self.policy`` allows. A refused connection moves on to the next API URL; when none can be
        opened, a timeout or a TLS failure: no repeat, and the cluster is remembered as failed
        (``self.failures``), so that the next requests fail at once for a while.

        :raises ClusterConnectionError: no URL of the cluster could be reached, a write's connection
            broke after it was sent (its outcome is unknown), or the cluster failed a moment ago.
        :raises ConfigError: the token secret cannot be sent in an HTTP header.
        :raises ApiError: (and subclasses) PVE answered with an error status.
        """
        method = method.upper()
        path = path.strip('/')
        name = self.cluster.name
        if NOT_HEADER_SAFE.search(self.cluster.token_secret or ''):
            # requests would refuse it, quoting the whole Authorization header (the secret) in its message.
            raise ConfigError("the token secret of cluster '%s' contains characters that cannot be sent in an HTTP "
                              "header (a line break, a tab or another control character, or a non-ASCII "
                              "character); check PROXMOX_CLUSTER_%s_TOKEN_SECRET" % (name, name), name)
        self.failures.check(name)
        urls = self.cluster.api_urls
        started = self.policy.clock()
        attempt = 0
        while True:
            attempt += 1
            failures: List[str] = []
            busy = None  # (error, url) of a busy answer to a GET
            for offset in range(len(urls)):
                index = (self._active + offset) % len(urls)
                url = urls[index]
                try:
                    result = getattr(self._api(url)(path), method.lower())(**params)
                except ResourceException as exc:
                    if method == 'GET' and exc.status_code in RETRY_STATUSES:
                        busy = (exc, url)
                        break
                    raise self._map_resource_error(exc, method, path, url)
                except requests.exceptions.SSLError as exc:
                    raise self._tls_error(exc, url)
                except requests.exceptions.RequestException as exc:
                    reason = _reason(exc)
                    timed_out = isinstance(exc, requests.exceptions.ReadTimeout)
                    if timed_out:
                        # A hanging server: say how long was waited and which setting changes it.
                        reason = 'no answer within %gs, PROXMOX_CLUSTER_%s_TIMEOUT' % (self.cluster.timeout, name)
                    if _never_sent(exc):
                        failures.append('%s: %s' % (url, reason))
                        continue  # next URL of the same cluster
                    if method != 'GET':
                        raise ClusterConnectionError(
                            "%s: the connection to %s broke after the request was sent (%s); it may or may "
                            "not have been applied. Nothing was retried: check the state and run again."
                            % (self._where(method, path), url, reason), name)
                    failures.append('%s: %s' % (url, reason))
                    if timed_out:
                        # A hanging cluster costs one timeout, not one per attempt (nor per request).
                        raise self._unreachable(failures)
                    break  # repeat this GET after a pause
                except ValueError as exc:  # a 2xx body that is not PVE's JSON
                    raise ApiError('%s: the answer from %s was not valid JSON (%s); is this a Proxmox VE API?'
                                   % (self._where(method, path), url, _clean_message(exc, 120)), name)
                else:
                    self._active = index
                    self.failures.forget(name)
                    return result
            else:
                # Every URL failed before sending: retrying soon rarely helps, report now.
                raise self._unreachable(failures)
            if not self.policy.again(attempt, started):
                break
        if busy is not None:
            raise self._map_resource_error(busy[0], method, path, busy[1])
        # Connections that broke are not remembered: the cluster answers, if not every time.
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

    # --------------------------------------------------------------- tasks (tasks.py)

    task_node = staticmethod(task_node)

    def task_log_tail(self, upid: str, lines: int = TASK_LOG_TAIL) -> List[str]:
        """The last lines of a task's log (best effort): see ``tasks.task_log_tail``."""
        return task_log_tail(self, upid, lines)

    def wait_task(self, upid: str, timeout: float = DEFAULT_TASK_TIMEOUT, poll: float = TASK_POLL) -> Dict:
        """Wait for a task to stop; returns its status. See ``tasks.wait_task`` (TaskError, TaskTimeoutError)."""
        return wait_task(self, upid, timeout, poll)

    def run_task(self, method: str, path: str, params: Optional[Dict] = None,
                 timeout: float = DEFAULT_TASK_TIMEOUT) -> Dict:
        """Call an endpoint that starts a task and wait for it; returns the task status (with ``upid``)."""
        return run_task(self, method, path, params, timeout)
