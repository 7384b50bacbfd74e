#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: pmx_guests
short_description: Converge many VMs and containers over several Proxmox VE clusters in one task, concurrently
version_added: 0.2.0
description:
  - Brings every guest of O(guests) to its state, each routed, compared and changed exactly as
    M(pmx.multicluster.pmx_vm) (C(type=vm)) or M(pmx.multicluster.pmx_lxc) (C(type=lxc))
    would, but all in one task and concurrently, within O(per_cluster) and O(per_node).
  - A loop of M(pmx.multicluster.pmx_vm) runs one guest after the other; here the clones, starts and updates of
    different guests overlap, so twelve guests take about as long as the slowest few.
  - One guest failing does not stop the others. Its error is in its entry of RV(guests); the task fails at the
    end, naming the failed guests, unless none failed. O(stop_on_failure) begins no further guest after the first
    failure instead.
  - Check mode plans every guest and writes nothing; diff mode shows before and after per guest.
author:
  - pmx.multicluster contributors (@pmx-multicluster)
extends_documentation_fragment:
  - pmx.multicluster.pmx
  - pmx.multicluster.pmx.modules
  - pmx.multicluster.pmx.fleet
  - pmx.multicluster.pmx.actiongroup_pmx
attributes:
  check_mode:
    support: full
    description: Reads the clusters, plans every guest and reports what would change; writes nothing.
  diff_mode:
    support: full
    description: One before/after per guest that changes, headed by its name.
options:
  guests:
    description:
      - The guests, one entry each, in the form of the C(guests) role's C(guests_list).
      - An entry takes the options of M(pmx.multicluster.pmx_vm) (with C(type=vm), the default) or of
        M(pmx.multicluster.pmx_lxc) (with C(type=lxc)), C(name) being required for both. It is checked as that
        module checks its options; every problem of every entry is reported at once, before any request.
      - A name listed twice for the same cluster is refused.
    type: list
    elements: dict
    required: true
  state:
    description: State of an entry that sets none (see the C(state) option of M(pmx.multicluster.pmx_vm)).
    type: str
    choices: [present, absent, started, stopped, restarted, template]
    default: present
  timeout:
    description: Seconds to wait for each task, shutdown or locked guest, for an entry that sets none.
    type: int
    default: 300
  stop_on_failure:
    description:
      - Begin no further guest once one has failed; those are returned with C(skipped=true). Guests already
        being worked on finish.
      - By default every guest is tried, and the task fails at the end if any failed.
    type: bool
    default: false
notes:
  - Every guest follows the rules the notes of M(pmx.multicluster.pmx_vm) give (routing that never falls back
    when a cluster could not be read, the check that a new guest is in no other cluster, locks waited out, an
    interrupted run's tasks waited for). The lookups across clusters read each cluster's guest list once per task.
  - Two pmx_guests tasks (or a pmx_guests task and a pmx_vm task) that create the same guest at the same moment
    leave one guest, as two pmx_vm runs do; the guests of one task never wait for or race with each other's
    creates.
seealso:
  - module: pmx.multicluster.pmx_vm
  - module: pmx.multicluster.pmx_lxc
  - module: pmx.multicluster.pmx_guest_action
'''

EXAMPLES = r'''
- name: Twelve web VMs over three clusters, cloned and started in one task
  pmx.multicluster.pmx_guests:
    state: started
    guests: >-
      {%- set out = [] -%}
      {%- for prefix in ['prod', 'stg', 'dr'] -%}{%- for n in range(1, 5) -%}
      {%- set _ = out.append({'name': prefix ~ '-web0' ~ n, 'clone': 'tpl-debian12', 'memory': 4096}) -%}
      {%- endfor -%}{%- endfor -%}
      {{ out }}

- name: A few VMs and a container, each routed by its name
  pmx.multicluster.pmx_guests:
    guests:
      - name: prod-web03
        clone: tpl-debian12
        memory: 4096
        state: started
      - name: stg-db02
        cluster: staging
        cores: 4
        memory: 8192
        disks:
          scsi0: local-lvm:64
      - name: prod-cache02
        type: lxc
        ostemplate: local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst
        memory: 1024
        state: started
  register: fleet

- name: Show what failed
  ansible.builtin.debug:
    msg: "{{ fleet.guests | selectattr('failed') | map(attribute='name') | list }}"

- name: At most two clones per cluster at a time, stop at the first failure
  pmx.multicluster.pmx_guests:
    per_cluster: 2
    per_node: 1
    stop_on_failure: true
    guests: "{{ my_guests }}"
'''

RETURN = r'''
error:
  description:
    - Why the module failed, as data beside C(msg), so that a play can C(rescue) on RV(error.type)
      instead of matching the text of the message. The same fields as the MCP server's tool errors.
    - Never contains a token secret.
  returned: failure
  type: dict
  sample: {type: GuestLockedError, cluster: production}
  contains:
    type:
      description:
        - The kind of failure, the name of the error class, for example V(GuestLockedError) (a guest stayed
          locked by another task), V(TaskError) (a Proxmox task did not end V(OK)), V(TaskTimeoutError),
          V(ClusterNotFoundError) (an unknown cluster name), V(ClusterConnectionError), V(AuthenticationError),
          V(PermissionDeniedError), V(ApiError), V(GuestNotFoundError), V(GuestConflictError),
          V(MigrationError) (a move PVE would refuse, or one left midway), V(SnapshotError),
          V(SnapshotNotFoundError), V(BackupError), V(BackupNotFoundError), V(NodeOfflineError),
          V(UnreadableClustersError) or V(ConfigError).
      type: str
      returned: always
      sample: TaskError
    cluster:
      description: The cluster it happened on.
      type: str
      returned: when known
      sample: production
    status:
      description: The HTTP status of the API's answer, when the API refused a request.
      type: int
      returned: when known
      sample: 500
    upid:
      description: The id of the Proxmox task that failed.
      type: str
      returned: when a task failed
    exitstatus:
      description: How that task ended.
      type: str
      returned: when a task failed
      sample: "command 'qm start 100' failed: exit code 1"
    log:
      description: The last lines of that task's log.
      type: list
      elements: str
      returned: when a task failed
guests:
  description:
    - One entry per guest of O(guests), in their order. Besides the keys below, an entry that was worked on
      carries what M(pmx.multicluster.pmx_vm) returns (C(vmid), C(node), C(status), C(tasks), C(diff),
      C(pending), C(warnings)...).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The guest's name.
      type: str
    type:
      description: V(vm) or V(lxc).
      type: str
    cluster:
      description: The cluster it was routed to (V(null) when it failed before it was routed).
      type: str
    route_reason:
      description: Why that cluster (V(explicit), V(pattern 'prod-*'), V(located), V(default)).
      type: str
    changed:
      description: Whether this guest was (in check mode, would be) changed.
      type: bool
    plan:
      description: The steps decided on for it, as M(pmx.multicluster.pmx_vm) returns them.
      type: list
      elements: dict
    failed:
      description: Whether this guest failed.
      type: bool
    skipped:
      description: True when it was not begun because O(stop_on_failure) stopped the run.
      type: bool
    error:
      description:
        - V(null), or why it failed, C(msg) and the fields of the C(error) that M(pmx.multicluster.pmx_vm)
          returns (C(type), C(cluster), C(status), C(upid), C(exitstatus), C(log)).
      type: dict
  sample:
    - {name: prod-web01, type: vm, cluster: production, route_reason: "pattern 'prod-*'", changed: true,
       vmid: 106, node: prod-pve1, status: running, plan: [{action: clone}, {action: update}, {action: start}],
       failed: false, skipped: false, error: null}
summary:
  description: Counts over RV(guests), and the bounds used.
  returned: always
  type: dict
  sample: {total: 12, changed: 12, ok: 12, failed: 0, skipped: 0, per_cluster: 8, per_node: 4,
           clusters: {production: {total: 4, changed: 4, failed: 0, skipped: 0}}}
'''

from ansible_collections.pmx.multicluster.plugins.module_utils.ansible_module import (
    PmxModule,
    fleet_argument_spec,
    guest_entries,
)
from ansible_collections.pmx.multicluster.plugins.module_utils.fleet import (
    Bounds,
    GuestsFailed,
    converge,
    failure_message,
    summarize,
)
from ansible_collections.pmx.multicluster.plugins.module_utils.guests.spec import STATES
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.kinds import DEFAULT_TIMEOUT


def argument_spec():
    spec = fleet_argument_spec()
    spec.update(
        guests=dict(type='list', elements='dict', required=True),
        state=dict(type='str', default='present', choices=list(STATES)),
        timeout=dict(type='int', default=DEFAULT_TIMEOUT),
        stop_on_failure=dict(type='bool', default=False),
    )
    return spec


def converge_guests(pmx):
    """Converge every guest of the list; the task's result (a failure naming the failed guests if any)."""
    params = pmx.params
    entries = guest_entries(pmx, params['guests'], params['state'], params['timeout'])
    bounds = Bounds(params['per_cluster'], params['per_node'])
    results = converge(pmx.registry, entries, check_mode=pmx.check_mode, bounds=bounds,
                       stop_on_failure=params['stop_on_failure'], scrub=pmx.scrub)
    warnings = ['%s: %s' % (r['name'], w) for r in results for w in r.pop('warnings', None) or []]
    out = {'changed': any(r['changed'] for r in results), 'guests': results, 'summary': summarize(results, bounds),
           'warnings': warnings}
    if pmx.module._diff:  # pylint: disable=protected-access
        out['diff'] = [dict(r['diff'], before_header=r['name'], after_header=r['name'])
                       for r in results if r.get('changed') and r.get('diff')]
    if out['summary']['failed']:
        raise GuestsFailed(failure_message('guests', results), out)
    return out


def main():
    PmxModule(argument_spec=argument_spec(), supports_check_mode=True).run(converge_guests)


if __name__ == '__main__':
    main()
