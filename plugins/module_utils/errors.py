# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Typed errors of the pmx.multicluster core.

Every foreseeable failure is a ClusterError subclass whose message says what
is wrong and what to do. Front ends turn them into ``fail_json`` (modules),
inventory errors/warnings or MCP tool errors; nothing in the core formats an
error twice. Messages never contain a token secret.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
from typing import Any, Dict, Iterable, Mapping, Optional

# The one place that classifies PVE's message texts (the functions at the end of this file read them).
# A vmid taken between GET /cluster/nextid and the create or clone:
# "VM 106 already exists on node 'x'", "CT 106 already exists", "unable to create VM 106: config file already exists".
VMID_TAKEN = re.compile(r"\b(?:VM|CT) \d+ already exists|config file already exists", re.I)
# A guest locked by a task, or its config lock held: "VM is locked (backup)", "can't lock file '...' - got timeout".
LOCKED = re.compile(r"(?:VM|CT) is locked \((?P<lock>[\w-]+)\)|can't lock file '[^']*' - got timeout")
# A shutdown that did not finish in time: qemu says "got timeout", pct "container did not stop".
SHUTDOWN_TIMEOUT = re.compile(r'timeout|timed out|did not stop', re.I)
# A power action PVE refuses because the guest is already where the action would take it.
ALREADY_DONE = {'start': re.compile(r'already running', re.I), 'shutdown': re.compile(r'not running', re.I),
                'stop': re.compile(r'not running', re.I)}
# A privilege PVE checks inside a task.
PERMISSION_CHECK = re.compile(r'Permission check failed|permission denied', re.I)
# An object that does not exist (PVE answers 500 with this text for a missing guest config, not 404).
NOT_FOUND = re.compile(r'does not exist|not found', re.I)


# The attributes an error may carry besides its type, in the order ``details()`` lists them.
DETAIL_FIELDS = ('cluster', 'status', 'upid', 'exitstatus', 'log')


class ClusterError(Exception):
    """Base class: a problem with the configuration or a cluster, with an actionable message."""

    def __init__(self, message: str, cluster: Optional[str] = None):
        super(ClusterError, self).__init__(message)
        self.message = message
        self.cluster = cluster

    def __str__(self) -> str:
        return self.message

    def details(self) -> Dict[str, Any]:
        """The error as data, for a play to ``rescue`` on and an MCP client to read: ``type``, the class name
        (``GuestLockedError``, ``TaskError``...), and where known ``cluster``, ``status`` (the HTTP status),
        ``upid``, ``exitstatus`` and ``log`` (the last lines of the task's log).

        Every front end returns this one form beside the message; each masks secrets in it as in the message.
        """
        out: Dict[str, Any] = {'type': type(self).__name__}
        for name in DETAIL_FIELDS:
            value = getattr(self, name, None)
            if value is not None and value != []:
                out[name] = list(value) if name == 'log' else value
        return out


class ConfigError(ClusterError):
    """The configuration (environment, .env file or explicit values) is invalid."""


class ClusterNotFoundError(ClusterError):
    """A cluster name that is not configured; lists the known ones and suggests a close match."""

    def __init__(self, name: str, known: Iterable[str], suggestion: Optional[str] = None):
        message = "unknown cluster '%s'; configured clusters: %s" % (name, ', '.join(known) or '(none)')
        if suggestion:
            message += ". Did you mean '%s'?" % suggestion
        super(ClusterNotFoundError, self).__init__(message)
        self.name = name
        self.known = list(known)
        self.suggestion = suggestion


class AmbiguousClusterSelectionError(ClusterError):
    """A guest name or lookup points at more than one cluster."""

    def __init__(self, message: str, candidates: Iterable[str]):
        super(AmbiguousClusterSelectionError, self).__init__(message)
        self.candidates = list(candidates)


class UnreadableClustersError(ClusterError):
    """An answer depends on clusters that could not be read (a lookup, a check before a create); nothing was changed.

    ``clusters`` maps each unread cluster to why it could not be read.
    """

    def __init__(self, message: str, clusters: Mapping[str, str]):
        super(UnreadableClustersError, self).__init__(message)
        self.clusters = dict(clusters)


class ClusterConnectionError(ClusterError):
    """The cluster cannot be reached (refused, timed out, TLS failure, every API URL down)."""


class AuthenticationError(ClusterError):
    """The API rejected the token (HTTP 401)."""


class PermissionDeniedError(ClusterError):
    """The token lacks a privilege (HTTP 403)."""


class ApiError(ClusterError):
    """The API answered with an error (400 parameter errors, 404, 5xx...)."""

    def __init__(self, message: str, cluster: Optional[str] = None, status: Optional[int] = None,
                 errors: Optional[Dict[str, Any]] = None):
        super(ApiError, self).__init__(message, cluster)
        self.status = status
        self.errors = errors or {}


class ResourceNotFoundError(ApiError):
    """The API answered 404 / 'does not exist' for an object."""


class TaskError(ClusterError):
    """A Proxmox task (UPID) ended other than OK, or did not end in time."""

    def __init__(self, message: str, cluster: Optional[str] = None, upid: Optional[str] = None,
                 exitstatus: Optional[str] = None, log: Optional[Iterable[str]] = None):
        super(TaskError, self).__init__(message, cluster)
        self.upid = upid
        self.exitstatus = exitstatus
        self.log = list(log or [])


class TaskTimeoutError(TaskError):
    """A task still ran when its timeout was over."""


class GuestLockedError(ClusterError):
    """A guest stayed locked by another task (backup, migrate, config...) past the timeout."""


class GuestNotFoundError(ResourceNotFoundError):
    """No guest with this name / vmid (or the clone source) in the cluster."""


class DuplicateGuestError(ClusterError):
    """Several guests of the cluster carry the name; names must be unique per cluster."""


class GuestConflictError(ClusterError):
    """The request contradicts the cluster's state: name and vmid disagree, wrong guest type, a template to start..."""


class MigrationError(ClusterError):
    """A guest cannot move as asked (a precondition PVE checks, HA, a move left midway), said before any write."""


class BackupNotFoundError(ResourceNotFoundError):
    """No such backup archive, or no backup of the guest on the storages searched (the message lists them)."""


class BackupError(ClusterError):
    """A backup or restore request that cannot be right: a storage without backups, a running guest to replace..."""


class NodeOfflineError(ClusterError):
    """The node a guest lives on (or the one asked for) is offline."""


class SnapshotError(ClusterError):
    """A snapshot request that cannot be right: a bad or reserved name, an existing name."""


class SnapshotNotFoundError(ResourceNotFoundError):
    """No snapshot with this name; the message lists the guest's snapshots."""


# ------------------------------------------------------------------ PVE's texts, read in one place

def _texts(exc):
    """An error's message and, for a failed task, its log lines."""
    return [str(exc)] + [str(line) for line in getattr(exc, 'log', None) or []]


def vmid_taken(exc):
    """Whether a failed create or clone failed only because its vmid was taken meanwhile."""
    return any(VMID_TAKEN.search(text) for text in _texts(exc))


def lock_of(exc):
    """The lock an error says the guest holds ('backup', ..., or 'config lock held by another task'), else None."""
    found = LOCKED.search(' '.join(_texts(exc)))
    if found is None:
        return None
    return found.group('lock') or 'config lock held by another task'


def shutdown_timed_out(exc):
    """Whether a failed shutdown (or reboot) failed because the guest did not go down in time."""
    return isinstance(exc, TaskTimeoutError) or SHUTDOWN_TIMEOUT.search(str(exc)) is not None


def already_done(action, exc):
    """Whether PVE refused a power action because the guest is already in the state it leads to."""
    pattern = ALREADY_DONE.get(action)
    return pattern is not None and not isinstance(exc, TaskTimeoutError) and pattern.search(str(exc)) is not None


def permission_failure(text):
    """Whether a task's exit status is a privilege check that failed."""
    return PERMISSION_CHECK.search(str(text or '')) is not None


def says_not_found(text):
    """Whether PVE's message says the object does not exist (it answers 500, not 404, for a missing guest)."""
    return NOT_FOUND.search(str(text or '')) is not None
