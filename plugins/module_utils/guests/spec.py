# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a task asks of a guest: the states, the spec, and how a module's parameters become one.

No I/O and no Ansible import: the modules and the MCP server build the same GuestSpec.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from ansible_collections.pmx.multicluster.plugins.module_utils.pve.diff import desired_config
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.kinds import DEFAULT_TIMEOUT, GuestKind
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.values import property_string

STATES = ('present', 'absent', 'started', 'stopped', 'restarted', 'template')

# The guest modules' options that are PVE config keys (module option -> PVE key); the dict options hold several
# keys each. pmx_vm, pmx_lxc and each entry of pmx_guests read them from here.
VM_OPTIONS = dict((option, option) for option in (
    'cores', 'sockets', 'memory', 'cpu', 'ostype', 'scsihw', 'ciuser', 'cipassword', 'sshkeys',
    'tags', 'description', 'onboot', 'agent', 'boot', 'disks', 'nets', 'ipconfig'))
VM_DICTS = ('disks', 'nets', 'ipconfig')
LXC_OPTIONS = dict([(option, option) for option in (
    'ostemplate', 'rootfs', 'mounts', 'nets', 'cores', 'memory', 'swap', 'unprivileged', 'features', 'nameserver',
    'searchdomain', 'tags', 'description', 'onboot', 'password')] + [('ssh_public_keys', 'ssh-public-keys')])
LXC_DICTS = ('mounts', 'nets')


@dataclass
class GuestSpec:
    """What a task asks for. ``config`` holds PVE config keys (see ``desired_config``)."""

    name: Optional[str] = None
    vmid: Optional[int] = None
    cluster: Optional[str] = None
    node: Optional[str] = None
    config: Dict[str, Any] = field(default_factory=dict)
    pool: Optional[str] = None
    clone: Optional[str] = None          # source name or vmid
    full: Optional[bool] = None
    target_storage: Optional[str] = None
    # Storage and bridge for a new disk or net that names none, when the cluster has no DEFAULT_STORAGE /
    # DEFAULT_BRIDGE (the MCP server's documented local-lvm / vmbr0); None: leave it to the task and PVE.
    fallback_storage: Optional[str] = None
    fallback_bridge: Optional[str] = None
    timeout: float = DEFAULT_TIMEOUT
    force: bool = False
    # state=stopped powers the guest off at once, without a shutdown (the MCP server's stop_guest).
    hard_stop: bool = False
    purge: bool = False
    restart_on_change: bool = False
    update: bool = True
    # A disk asked for on another storage than it is on is moved there (else that is a warning); the source
    # volume is then deleted only with delete_moved_source (else PVE keeps it as unusedN).
    move_disks: bool = False
    delete_moved_source: bool = False


def spec_from_params(kind: GuestKind, params: Dict[str, Any], name: Optional[str],
                     options: Dict[str, str], dict_options: Tuple[str, ...] = ()) -> GuestSpec:
    """A GuestSpec from a module's parameters; ``options`` maps option names to PVE config keys."""
    typed = dict((key, params[option]) for option, key in options.items())
    return GuestSpec(
        name=name, vmid=params['vmid'], cluster=params['cluster'], node=params['node'],
        config=desired_config(kind, typed, dict_options, params['config']),
        pool=params['pool'], clone=params['clone'], full=params['full'], target_storage=params['target_storage'],
        timeout=params['timeout'], force=params['force'], purge=params['purge'],
        restart_on_change=params['restart_on_change'], update=params['update'],
        move_disks=bool(params.get('move_disks')), delete_moved_source=bool(params.get('delete_moved_source')))


def guest_spec(kind: GuestKind, params: Dict[str, Any]) -> GuestSpec:
    """The GuestSpec of a pmx_vm (``kind`` QEMU, name in ``name``) or pmx_lxc (LXC, name in ``hostname``) task's
    validated parameters: the one conversion every guest front end shares."""
    if kind.type == 'lxc':
        params = dict(params, features=property_string(params.get('features')))
        return spec_from_params(kind, params, params.get('hostname'), LXC_OPTIONS, LXC_DICTS)
    return spec_from_params(kind, params, params.get('name'), VM_OPTIONS, VM_DICTS)


def simple_vm_config(cores: int, memory: int, disk_gb: int = 0, storage: Optional[str] = None,
                     bridge: Optional[str] = None, tags: Optional[List[str]] = None) -> Dict[str, Any]:
    """The config of a plain VM from a few numbers (the MCP server's create_vm): a virtio NIC, one SCSI disk.

    A disk without ``storage`` and a NIC without ``bridge`` get the cluster's DEFAULT_STORAGE /
    DEFAULT_BRIDGE (or the spec's fallbacks) when the guest is created, as any new device does.
    """
    config: Dict[str, Any] = {'cores': cores, 'memory': memory,
                              'net0': 'virtio,bridge=%s' % bridge if bridge else 'virtio'}
    if disk_gb:
        config['scsi0'] = '%s:%d' % (storage, disk_gb) if storage else str(disk_gb)
        config['scsihw'] = 'virtio-scsi-single'
    if tags:
        config['tags'] = tags
    return config


def simple_lxc_config(ostemplate: Optional[str], cores: Optional[int], memory: Optional[int], disk_gb: int = 0,
                      storage: Optional[str] = None, bridge: Optional[str] = None,
                      tags: Optional[List[str]] = None) -> Dict[str, Any]:
    """The config of a plain container from a few values (the MCP server's deploy_guests): one NIC on DHCP.

    A rootfs without ``storage`` and a NIC without ``bridge`` get the cluster's defaults when it is created
    (``with_cluster_defaults``); no ``disk_gb``: the default rootfs size there.
    """
    config: Dict[str, Any] = {'net0': 'name=eth0,ip=dhcp' + (',bridge=%s' % bridge if bridge else '')}
    for key, value in (('ostemplate', ostemplate), ('cores', cores), ('memory', memory), ('tags', tags)):
        if value:
            config[key] = value
    if disk_gb:
        config['rootfs'] = '%s:%d' % (storage, disk_gb) if storage else str(disk_gb)
    return config
