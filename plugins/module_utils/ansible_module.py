# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The only file that glues the core to AnsibleModule.

``PmxModule`` merges the shared connection options into a module's argument
spec, loads the configuration and the registry once, registers every form of
every token secret (raw, escaped, URL-encoded: redact.secret_forms) as a
no_log value (so Ansible masks it even if it came from the environment or a
.env file) and turns a ClusterError into ``fail_json``, its message scrubbed, with the
error as data beside it (``error``: ``ClusterError.details()``, scrubbed too).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import traceback
from typing import Any, Callable, Dict, Optional

from ansible.module_utils.basic import AnsibleModule, env_fallback, missing_required_lib

from ansible_collections.pmx.multicluster.plugins.module_utils.config import cluster_option_spec
from ansible_collections.pmx.multicluster.plugins.module_utils.errors import ClusterError
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.kinds import DEFAULT_TIMEOUT
from ansible_collections.pmx.multicluster.plugins.module_utils.redact import Scrubber, secret_forms

try:
    from ansible_collections.pmx.multicluster.plugins.module_utils.client import HAS_DEPS, IMPORT_ERROR
    from ansible_collections.pmx.multicluster.plugins.module_utils.config import load_config
    from ansible_collections.pmx.multicluster.plugins.module_utils.guests.spec import STATES
    from ansible_collections.pmx.multicluster.plugins.module_utils.registry import ClusterRegistry
    IMPORT_TRACEBACK = None if HAS_DEPS else str(IMPORT_ERROR)
except ImportError:  # pragma: no cover - only without the controller requirements
    HAS_DEPS = False
    IMPORT_TRACEBACK = traceback.format_exc()
    STATES = ()


def pmx_argument_spec() -> Dict[str, Any]:
    """Connection options every module shares (documented once in the pmx doc fragment)."""
    return dict(
        env_file=dict(type='path', fallback=(env_fallback, ['PROXMOX_ENV_FILE'])),
        # The per-cluster settings come from config.py's one table of them.
        clusters=dict(type='list', elements='dict', options=cluster_option_spec()),
        default_cluster=dict(type='str'),
    )


def pmx_guest_argument_spec() -> Dict[str, Any]:
    """Options every guest module (pmx_vm, pmx_lxc) shares beside the connection and config options (documented
    once in the pmx.guest doc fragment)."""
    return dict(
        cluster=dict(type='str'),
        vmid=dict(type='int'),
        state=dict(type='str', default='present', choices=list(STATES)),
        node=dict(type='str'),
        clone=dict(type='str'),
        full=dict(type='bool'),
        target_storage=dict(type='str'),
        pool=dict(type='str'),
        config=dict(type='dict'),
        purge=dict(type='bool', default=False),
        force=dict(type='bool', default=False),
        timeout=dict(type='int', default=DEFAULT_TIMEOUT),
        restart_on_change=dict(type='bool', default=False),
        update=dict(type='bool', default=True),
        move_disks=dict(type='bool', default=False),
        delete_moved_source=dict(type='bool', default=False),
    )


class PmxModule:
    """An AnsibleModule with the shared options, a lazily built registry and typed-error handling."""

    def __init__(self, argument_spec: Optional[Dict[str, Any]] = None, **kwargs: Any):
        spec = pmx_argument_spec()
        spec.update(argument_spec or {})
        self.module = AnsibleModule(argument_spec=spec, **kwargs)
        self._registry = None
        self.scrub = Scrubber()
        if not HAS_DEPS:
            self.module.fail_json(msg=missing_required_lib('proxmoxer, requests and python-dotenv'),
                                  exception=IMPORT_TRACEBACK)

    @property
    def params(self) -> Dict[str, Any]:
        return self.module.params

    @property
    def check_mode(self) -> bool:
        return self.module.check_mode

    @property
    def registry(self) -> 'ClusterRegistry':
        """The ClusterRegistry for the task's configuration (a ConfigError propagates)."""
        if self._registry is None:
            config = load_config(env_file=self.params.get('env_file'), clusters=self.params.get('clusters'),
                                 default_cluster=self.params.get('default_cluster'))
            # Secrets from the environment or a .env file are not module options, so Ansible
            # would not know to mask them; tell it, in every form they can take in a message.
            for secret in config.secrets:
                self.module.no_log_values.update(secret_forms(secret))
            self.scrub.add(config.secrets)
            for warning in config.warnings:
                self.module.warn(self.scrub(warning))
            self._registry = ClusterRegistry(config)
        return self._registry

    def fail(self, error: ClusterError, **result: Any) -> None:
        """``fail_json`` for a ClusterError: ``msg`` and ``error`` (its ``details()``), both scrubbed, and
        ``result``."""
        extra = {'cluster': error.cluster} if error.cluster else {}
        extra.update(result)
        self.module.fail_json(msg=self.scrub(str(error)), error=self.scrub.deep(error.details()), **extra)

    def run(self, func: Callable[['PmxModule'], Dict[str, Any]]) -> None:
        """``exit_json(**func(self))``; a ClusterError becomes ``fail_json`` with its message (see ``fail``).

        A ``warnings`` list in the result (the core's non-fatal findings) becomes Ansible warnings.
        """
        error = None
        try:
            result = func(self)
        except ClusterError as exc:
            error = exc
        if error is None:
            for warning in result.pop('warnings', None) or []:
                self.module.warn(self.scrub(warning))
            self.module.exit_json(**result)
        # Outside the except block: a foreseeable error is a message, not a traceback
        # (ansible-core 2.19 attaches the exception being handled to fail_json).
        self.fail(error)
