# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the MCP server's write tools answer, as TypedDicts: their return annotations, so each tool's output
schema lists its real fields (the preview and confirmation fields included).

Every field may be missing (``total=False``: a preview has no tasks, an action no token) and further fields
are allowed (``extra='allow'``): the core's results grow, and a client must not lose what it adds.
"""

from typing import Annotated, Any, Dict, List, Literal, Optional

from pydantic import ConfigDict, Field, with_config
from typing_extensions import Required, TypedDict

ALLOW = ConfigDict(extra='allow')


@with_config(ALLOW)
class Preview(TypedDict, total=False):
    """The fields of an answer that previews (destructive tools without a valid confirmation)."""

    preview: Annotated[bool, Field(description='true: nothing was changed, this is what the call would do.')]
    changed: Annotated[bool, Field(description='Whether anything was changed.')]
    would: Annotated[Optional[str], Field(description='What the call would do, in words.')]
    to_confirm: Annotated[Optional[str], Field(description='How to confirm it.')]
    confirmation_token: Annotated[Optional[str], Field(
        description='Echo it with confirm=true in the same call to act (valid once, token_expires_in seconds).')]
    token_id: Annotated[Optional[str], Field(description="The token's id, as the audit log records it.")]
    token_expires_in: Annotated[Optional[int], Field(description='Seconds the token is valid for.')]
    token_expires_at: Annotated[Optional[str], Field(description='When the token expires (ISO 8601, UTC).')]
    confirmed_token_id: Annotated[Optional[str], Field(
        description='After an action: the id of the token that confirmed it.')]
    note: Annotated[Optional[str], Field(description='Why a call with confirm or a token only previewed.')]
    confirmed_by: Annotated[Optional[str], Field(
        description="'elicitation' when the person approved it through the client (PMX_MCP_ELICIT=1).")]


@with_config(ALLOW)
class GuestWrite(Preview, total=False):
    """A write on one guest."""

    cluster: Annotated[Optional[str], Field(description='The cluster it was routed to.')]
    route_reason: Annotated[Optional[str], Field(
        description="Why: explicit, pattern 'stg-*', located or default.")]
    name: Optional[str]
    vmid: Optional[int]
    node: Optional[str]
    node_reason: Optional[str]
    status: Annotated[Optional[str], Field(description='Its status after the call (absent once deleted).')]
    current_status: Annotated[Optional[str], Field(description='Its status now (previews).')]
    template: Optional[bool]
    guest: Annotated[Optional[Dict[str, Any]], Field(description='name, vmid, type, node, status, template.')]
    plan: Annotated[Optional[List[Dict[str, Any]]], Field(description='The steps, as the modules plan them.')]
    tasks: Annotated[Optional[List[Dict[str, Any]]], Field(
        description='The Proxmox tasks run: action, upid, exitstatus...')]
    pending: Optional[List[Any]]
    warnings: Optional[List[Any]]
    waited_for: Optional[List[Any]]
    clone_source: Optional[Any]


@with_config(ALLOW)
class SnapshotWrite(GuestWrite, total=False):
    """A snapshot taken, rolled back or deleted."""

    snapname: Optional[str]
    snapshot: Optional[Dict[str, Any]]
    snapshots: Optional[List[Dict[str, Any]]]
    deleted: Annotated[Optional[List[str]], Field(description='Snapshots deleted (or that would be).')]
    kept: Optional[List[Any]]


@with_config(ALLOW)
class BackupWrite(GuestWrite, total=False):
    """A backup run or pruned."""

    archive: Annotated[Optional[Dict[str, Any]], Field(description='The new backup: volid, size, ctime...')]
    removed: Annotated[Optional[List[str]], Field(description='Backups removed (or that would be).')]


@with_config(ALLOW)
class RestoreWrite(GuestWrite, total=False):
    """A restore: the plan, then the task."""

    archive: Annotated[Optional[str], Field(description='The backup volume restored.')]
    type: Optional[str]
    exists: Optional[bool]
    replaced: Annotated[Optional[Dict[str, Any]], Field(description='The guest it replaces (force).')]
    target_storage: Optional[str]
    bridge: Optional[str]
    config: Optional[Any]


@with_config(ALLOW)
class MigrateWrite(GuestWrite, total=False):
    """A move to another node or cluster."""

    type: Optional[str]
    was: Annotated[Optional[Dict[str, Any]], Field(description='Where it was: cluster, node, vmid.')]
    now: Annotated[Optional[Dict[str, Any]], Field(description='Where it is (or would be): cluster, node, vmid.')]
    ha: Optional[bool]


@with_config(ALLOW)
class BulkWrite(Preview, total=False):
    """An action on a selection of guests."""

    action: Optional[str]
    selection: Optional[Any]
    guests: Annotated[Optional[List[Dict[str, Any]]], Field(
        description='Every selected guest: cluster, name, vmid, type, node, status_before, changed, plan, tasks, '
                    'error, failed, skipped.')]
    summary: Optional[Dict[str, Any]]


@with_config(ConfigDict(extra='forbid'))
class GuestItem(TypedDict, total=False):
    """One guest of deploy_guests' list: the few settings an assistant needs; pmx_guests takes them all."""

    name: Required[Annotated[str, Field(description="Guest name; it decides the cluster (e.g. 'stg-*').")]]
    type: Annotated[Literal['vm', 'lxc'], Field(description="'vm' (the default) or 'lxc' (a container).")]
    cluster: Annotated[Optional[str], Field(description='Cluster; default: routed by the name.')]
    node: Annotated[Optional[str], Field(description='Node; default: the clone source node, else the cluster '
                                                     'default node, else the online node with most free memory.')]
    vmid: Annotated[Optional[int], Field(description='Guest id; default: a free one.', ge=1)]
    clone: Annotated[Optional[str], Field(description="Template or guest to clone (name or vmid), on the guest's "
                                                      "cluster.")]
    full: Annotated[Optional[bool], Field(description='Full clone (true) or linked clone (false).')]
    ostemplate: Annotated[Optional[str], Field(description="A new container's template "
                                                           "('local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst').")]
    cores: Annotated[Optional[int], Field(description='CPU cores (a new VM: 2).', ge=1, le=512)]
    memory: Annotated[Optional[int], Field(description='Memory in MiB (a new VM: 2048).', ge=16)]
    disk_gb: Annotated[Optional[int], Field(description='First disk (scsi0 / rootfs) in GiB (a new VM: 16).', ge=0)]
    storage: Annotated[Optional[str], Field(description="Storage of that disk; default: the cluster's "
                                                        "DEFAULT_STORAGE, else local-lvm.")]
    bridge: Annotated[Optional[str], Field(description="Bridge of the NIC; default: the cluster's DEFAULT_BRIDGE, "
                                                       "else vmbr0.")]
    tags: Annotated[Optional[List[str]], Field(description='Tags.')]


@with_config(ALLOW)
class EvacuationWrite(Preview, total=False):
    """A node emptied: the plan, then each move."""

    cluster: Optional[str]
    node: Optional[str]
    targets: Annotated[Optional[List[str]], Field(description='The nodes guests go to.')]
    moves: Annotated[Optional[List[Dict[str, Any]]], Field(
        description='Each guest to move: vmid, name, type, status, memory, target_node.')]
    results: Annotated[Optional[List[Dict[str, Any]]], Field(description='Each move done (pmx_migrate results).')]
    failed: Optional[List[Dict[str, Any]]]


@with_config(ALLOW)
class AuditEntries(TypedDict, total=False):
    """Records of the audit log, newest first."""

    path: Optional[str]
    entries: Annotated[List[Dict[str, Any]], Field(
        description='time, event (preview, refused, write), tool, arguments, cluster, clusters, route_reason, '
                    'would, plan, tasks (UPIDs), outcome, changed, error, token_id, client, client_version, '
                    'seconds.')]
    count: int
    matched: Annotated[int, Field(description='Records matching the filters in all.')]
    truncated: bool
    unreadable_lines: int
