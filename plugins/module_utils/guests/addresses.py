# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A guest's IP addresses: a container's interfaces, or a VM's guest agent.

Its own small module because the inventory imports it on every ``ansible-inventory`` run, and Ansible's
collection loader compiles every collection module it imports from source on each run (it does not use
``__pycache__``): the inventory should not pay for ``guests.facts`` and what that imports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
from typing import Any, Dict, List, Optional

from ansible_collections.pmx.multicluster.plugins.module_utils.errors import ApiError
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.kinds import guest_path
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.values import as_bool


def addresses(interfaces: Any) -> List[str]:
    """The IP addresses of a guest's interfaces (QEMU agent or LXC format): IPv4 first, no loopback or link-local."""
    found: List[Any] = []
    for iface in interfaces or []:
        if not isinstance(iface, dict) or iface.get('name') == 'lo':
            continue
        for entry in iface.get('ip-addresses') or []:
            try:
                address = ipaddress.ip_address(str(entry.get('ip-address', '')).split('%', maxsplit=1)[0])
            except ValueError:
                continue
            if address.is_loopback or address.is_link_local or address.is_unspecified:
                continue
            if str(address) not in [str(a) for a in found]:
                found.append(address)
    return [str(a) for a in sorted(found, key=lambda a: a.version)]


def agent_enabled(config: Optional[Dict[str, Any]]) -> bool:
    """Whether a QEMU config turns the guest agent on (``agent: 1`` or ``agent: enabled=1,...``)."""
    value = str((config or {}).get('agent', '0'))
    first = value.split(',', maxsplit=1)[0]
    return as_bool(first.split('=')[-1]) is True


def guest_addresses(client: Any, guest: Dict, config: Optional[Dict[str, Any]] = None) -> List[str]:
    """A running guest's addresses: a container's interfaces, or a VM's guest agent (none when its agent is off,
    not installed or not running: common, and not an error)."""
    if guest.get('status') != 'running':
        return []
    base = guest_path(guest['type'], guest['node'], guest['vmid'])
    if guest['type'] == 'lxc':
        return addresses(client.get(base + '/interfaces'))
    if config is not None and not agent_enabled(config):
        return []
    try:
        answer = client.get(base + '/agent/network-get-interfaces') or {}
    except ApiError:
        return []
    return addresses(answer.get('result') if isinstance(answer, dict) else answer)
