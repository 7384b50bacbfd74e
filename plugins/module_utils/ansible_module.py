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


def vm_argument_spec() -> Dict[str, Any]:
    """pmx_vm's options (and those of a VM entry of pmx_guests): the shared guest options and the VM's own."""
    spec = pmx_guest_argument_spec()
    spec.update(
        name=dict(type='str'),
        cores=dict(type='int'),
        sockets=dict(type='int'),
        memory=dict(type='int'),
        cpu=dict(type='str'),
        ostype=dict(type='str'),
        scsihw=dict(type='str'),
        disks=dict(type='dict'),
        nets=dict(type='dict'),
        ciuser=dict(type='str'),
        cipassword=dict(type='str', no_log=True),
        sshkeys=dict(type='str', no_log=False),
        ipconfig=dict(type='dict'),
        tags=dict(type='list', elements='str'),
        description=dict(type='str'),
        onboot=dict(type='bool'),
        agent=dict(type='bool'),
        boot=dict(type='str'),
    )
    return spec


def lxc_argument_spec() -> Dict[str, Any]:
    """pmx_lxc's options (and those of a container entry of pmx_guests)."""
    spec = pmx_guest_argument_spec()
    spec.update(
        hostname=dict(type='str', aliases=['name']),
        ostemplate=dict(type='str'), rootfs=dict(type='str'), mounts=dict(type='dict'), nets=dict(type='dict'),
        cores=dict(type='int'), memory=dict(type='int'), swap=dict(type='int'), unprivileged=dict(type='bool'),
        features=dict(type='raw'), nameserver=dict(type='str'), searchdomain=dict(type='str'),
        tags=dict(type='list', elements='str'), description=dict(type='str'), onboot=dict(type='bool'),
        password=dict(type='str', no_log=True), ssh_public_keys=dict(type='str', no_log=True),
    )
    return spec


def fleet_argument_spec() -> Dict[str, Any]:
    """The bounds of the many-guest modules (pmx_guests, pmx_guest_action); documented in the pmx.fleet fragment."""
    from ansible_collections.pmx.multicluster.plugins.module_utils.fleet import DEFAULT_PER_CLUSTER, DEFAULT_PER_NODE
    return dict(per_cluster=dict(type='int', default=DEFAULT_PER_CLUSTER),
                per_node=dict(type='int', default=DEFAULT_PER_NODE))


def guest_entries(pmx: 'PmxModule', guests: Any, state: str, timeout: int) -> list:
    """The ``guests`` option of pmx_guests as fleet entries, each validated as a pmx_vm (``type: vm``, the default)
    or pmx_lxc (``type: lxc``) task's options would be.

    Every problem of every entry is reported at once, before any request. A secret in an entry (cipassword,
    password) is masked as the guest module's no_log option would be.

    :raises ConfigError: naming each entry (by index and name) and what is wrong with it.
    """
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

    from ansible_collections.pmx.multicluster.plugins.module_utils.errors import ConfigError
    from ansible_collections.pmx.multicluster.plugins.module_utils.fleet import Entry, listed_twice
    from ansible_collections.pmx.multicluster.plugins.module_utils.guests.spec import guest_spec
    from ansible_collections.pmx.multicluster.plugins.module_utils.pve.kinds import LXC, QEMU

    validators = {'vm': (QEMU, ArgumentSpecValidator(vm_argument_spec())),
                  'lxc': (LXC, ArgumentSpecValidator(lxc_argument_spec()))}
    problems, entries = [], []
    for index, raw in enumerate(guests or []):
        where = 'guests[%d]' % index
        if not isinstance(raw, dict):
            problems.append('%s is not a dict' % where)
            continue
        params = dict(raw)
        kind_name = params.pop('type', None) or 'vm'
        name = params.get('name') if 'name' in params else params.get('hostname')
        where = '%s (%s)' % (where, name) if name else where
        if kind_name not in validators:
            problems.append("%s: type must be vm or lxc, got %r" % (where, kind_name))
            continue
        if not name:
            problems.append('%s: name is required' % where)
            continue
        params.setdefault('state', state)
        params.setdefault('timeout', timeout)
        kind, validator = validators[kind_name]
        result = validator.validate(params)
        pmx.module.no_log_values.update(result._no_log_values)  # pylint: disable=protected-access
        if result.error_messages:
            problems.extend('%s: %s' % (where, error) for error in result.error_messages)
            continue
        checked = result.validated_parameters
        entries.append(Entry(index, kind, checked['state'], guest_spec(kind, checked)))
    problems += listed_twice(entries)
    if problems:
        raise ConfigError('guests: %s. Nothing was changed.' % '; '.join(problems))
    return entries


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
        # An error may carry a result to return beside it (a many-guest task: every guest's outcome).
        result = dict(getattr(error, 'result', None) or {})
        for warning in result.pop('warnings', None) or []:
            self.module.warn(self.scrub(warning))
        self.fail(error, **self.scrub.deep(result))
