# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The connection options shared by every module of the collection.
    DOCUMENTATION = r'''
options:
  env_file:
    description:
      - Path of a C(.env) file with the cluster configuration (python-dotenv syntax).
      - Setting by setting, the process environment overrides its values and values given in O(clusters)
        override both (the order of python-dotenv and docker compose). When the environment gives a setting
        another value than the file, a warning names the variable(s), never the values.
      - If not set, the environment variable E(PROXMOX_ENV_FILE) is used; with neither, only the
        process environment and O(clusters) are read.
      - The variables are C(PROXMOX_CLUSTERS), C(PROXMOX_CLUSTER_<name>_API_URL), C(_TOKEN_ID),
        C(_TOKEN_SECRET), C(_VERIFY_SSL), C(_CA_BUNDLE), C(_TIMEOUT), C(_REGION), C(_TIER), C(_PATTERNS),
        C(PROXMOX_DEFAULT_CLUSTER) and more; see C(.env.example.multi) in the collection.
      - A file that other users can read gives a warning, since it holds token secrets. A key set twice in it
        with different values is an error naming the lines.
    type: path
  clusters:
    description:
      - Cluster definitions given in the task (or the inventory file). Each entry adds a cluster, or overrides single
        settings of a cluster of the same name defined by variables.
      - Use Ansible Vault for O(clusters[].token_secret).
    type: list
    elements: dict
    suboptions:
      name:
        description: Cluster name.
        type: str
        required: true
      api_url:
        description: API URL(s) such as V(https://pve1.example.com:8006); several for failover. No credentials in a URL.
        type: list
        elements: str
      token_id:
        description: API token id, C(user@realm!tokenname).
        type: str
      token_secret:
        description:
          - API token secret. Never returned or logged.
          - Surrounding whitespace, such as the newline C(ansible-vault encrypt_string) keeps from piped input,
            is removed with a warning.
        type: str
      verify_ssl:
        description: Verify the TLS certificate (the default). Set V(false) for this cluster only if you must.
        type: bool
      ca_bundle:
        description:
          - CA certificate(s) to verify the cluster's certificate with, a PEM file (on a Proxmox VE node,
            C(/etc/pve/pve-root-ca.pem)).
        type: path
      timeout:
        description: Seconds to wait for an API answer (default V(10)).
        type: float
      region:
        description: Region metadata.
        type: str
      tier:
        description: Tier metadata.
        type: str
      patterns:
        description: Guest name globs routed to this cluster, such as V(prod-*).
        type: list
        elements: str
      default_node:
        description: Node for new guests when none is given.
        type: str
      default_storage:
        description: Storage for new guests' disks when none is given.
        type: str
      default_bridge:
        description: Bridge for new guests' networks when none is given.
        type: str
      fingerprint:
        description:
          - SHA-256 fingerprint of the cluster's API certificate (V(AA:BB:...), 32 bytes; 64 hex digits without
            C(:) are accepted too).
          - Given to Proxmox VE when a guest moves to this cluster from another one (M(pmx.multicluster.pmx_migrate)).
            Without it the fingerprint is read from the API's certificate over a verified TLS connection, so it is
            needed only when the certificate cannot be verified here.
        type: str
  default_cluster:
    description:
      - The cluster used when no other routing rule applies.
      - Overrides E(PROXMOX_DEFAULT_CLUSTER); the default is the first configured cluster.
    type: str
notes:
  - TLS certificates are verified unless a cluster sets O(clusters[].verify_ssl=false)
    (C(PROXMOX_CLUSTER_<name>_VERIFY_SSL=false)).
  - Token secrets are never returned, logged or shown in error messages.
requirements:
  - proxmoxer >= 2.0
  - requests
  - python-dotenv
'''

    # For the guest modules (pmx_vm, pmx_lxc): partial outages, overlapping runs, interrupted runs, defaults.
    GUESTS = r'''
options: {}
notes:
  - "Routing never falls back when it could not look: when the cluster of a guest depends on finding it (no
    O(cluster), no matching name pattern, or a vmid without a cluster) and a cluster cannot be read, the task
    fails before changing anything, naming that cluster. Give O(cluster) to go on."
  - A guest about to be created where its name pattern points is first looked for in the other clusters (it
    may have been moved or restored there). If another cluster has it, or cannot be read, the task fails and
    says where it is and how to go on. O(cluster) given explicitly skips this check.
  - Guest names are compared case-insensitively everywhere (they are DNS names), in routing and lookups alike.
  - Two runs that create the same new guest at the same moment end with one. A vmid taken meanwhile is retried
    with a fresh one; a run whose new guest has a higher vmid than another guest of that name removes its own
    new, never started guest and manages the other one (RV(adopted)).
  - A rerun after an interrupted or timed-out run waits for what that run left running in Proxmox VE (a create
    or clone, a start, shutdown, reboot or destroy; see RV(waited_for)) instead of doing it a second time.
  - A new disk given as a bare size and a new network device without C(bridge=) use the cluster's default
    storage and bridge (O(clusters[].default_storage) and O(clusters[].default_bridge), or
    C(PROXMOX_CLUSTER_<name>_DEFAULT_STORAGE) and C(_DEFAULT_BRIDGE)). A new container without a root file
    system gets one of 4 GiB (Proxmox VE's default size) on the default storage. Without a default storage,
    a VM disk that names no storage is refused before any change.
  - Malformed property strings (a net such as V(virtio,vmbr1)) and names with surrounding whitespace are
    refused before any request.
'''

    # The options every guest module (pmx_vm, pmx_lxc) shares: module_utils/ansible_module.py's pmx_guest_argument_spec.
    GUEST = r'''
options:
  cluster:
    description:
      - The cluster to use, overriding routing by name pattern. An unknown name is an error that lists the
        configured clusters.
    type: str
  vmid:
    description:
      - ID of the guest. A new guest created without one gets the cluster's next free id.
      - It must be between 100 and 999999999.
    type: int
  state:
    description:
      - V(present) creates the guest if it is missing (from the task's settings, or as a clone of O(clone)),
        and otherwise brings its configuration in line with the settings given (see O(update)).
      - V(started), V(stopped) and V(restarted) do the same as V(present), then set the power state.
        V(stopped) asks the guest to shut down and waits up to O(timeout) seconds; with O(force) it then
        stops the guest hard. V(restarted) reboots a running guest and starts a stopped one.
      - V(template) does the same as V(present), then shuts the guest down and converts it to a template.
      - With a state other than V(present), a missing guest is created only when the task says what to create
        it from (O(clone) or a setting); otherwise the module fails, so that a mistyped name creates nothing.
      - V(absent) stops the guest if it is running and destroys it with its disks.
    type: str
    choices: [present, absent, started, stopped, restarted, template]
    default: present
  node:
    description:
      - Node to create a new guest on (or to clone it to).
      - When not given, a new guest goes to the cluster's default node (C(PROXMOX_CLUSTER_<name>_DEFAULT_NODE))
        or else to the online node with the most free memory; a clone stays on the node of its source.
        RV(node_reason) says which rule chose it.
      - An existing guest is never moved.
    type: str
  clone:
    description:
      - Name or vmid of the template (or guest of the same type) in the same cluster to clone a new guest from.
      - The settings of the task are applied to the clone afterwards.
      - Only used when the guest does not exist yet. An unknown source is an error that lists the cluster's
        templates of that type.
    type: str
  full:
    description:
      - Make a full clone (V(true)) or a linked clone (V(false)), which needs a template as its source.
      - Proxmox's default is a linked clone of a template and a full clone of any other guest.
    type: bool
  target_storage:
    description:
      - Storage for the disks of a full clone. Not allowed for a linked clone.
    type: str
  pool:
    description: Resource pool to put a new guest in (at creation or clone only).
    type: str
  config:
    description:
      - "Any other Proxmox configuration keys of the guest and their values, as the API takes them, for example
        C({balloon: 1024, numa: 1, serial0: socket}) for a VM or C({cpulimit: 2, timezone: Europe/Berlin})
        for a container."
      - A key may not be given both here and as an option.
    type: dict
  purge:
    description:
      - With O(state=absent), also remove the guest from backup jobs, replication jobs, HA resources and ACLs,
        and destroy disks that are not referenced in its configuration.
    type: bool
    default: false
  force:
    description:
      - With O(state=stopped), O(state=restarted) or O(state=template), stop the guest hard when it has not shut
        down within O(timeout) seconds.
    type: bool
    default: false
  timeout:
    description:
      - Seconds to wait for each Proxmox task, for a graceful shutdown, and for a locked guest to be unlocked.
    type: int
    default: 300
  restart_on_change:
    description:
      - Reboot a running guest when configuration changes wait for its next start (RV(pending)), so that they
        take effect.
    type: bool
    default: false
  update:
    description:
      - Whether the configuration of an existing guest is brought in line with the settings given.
      - With V(false) the settings only serve to create a missing guest.
    type: bool
    default: true
  move_disks:
    description:
      - Move an existing disk (or root file system / mount point) to the storage its value names, when it is on
        another one (Proxmox VE's move_disk / move_volume, which copies it). Without it such a difference is
        only a warning.
      - A container is moved only when stopped; Proxmox VE refuses to move the volumes of a running one.
    type: bool
    default: false
  delete_moved_source:
    description:
      - After a move (O(move_disks)), delete the source volume. Without it Proxmox VE keeps the source as an
        C(unusedN) entry of the guest's configuration, so that nothing is lost by mistake.
    type: bool
    default: false
'''

    # For the modules of the action group pmx (meta/runtime.yml).
    ACTIONGROUP_PMX = r'''
options: {}
attributes:
  action_group:
    description: Use C(group/pmx.multicluster.pmx) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - pmx.multicluster.pmx
'''

    # For modules only: where they run.
    MODULES = r'''
options: {}
notes:
  - The modules talk to the Proxmox VE API from the controller; run them on C(localhost) and set
    C(ansible_python_interpreter) to the value of C(ansible_playbook_python) so they run in the
    Python that has proxmoxer installed.
'''

    # The bounds of the many-guest modules (pmx_guests, pmx_guest_action): ansible_module.py's fleet_argument_spec.
    FLEET = r'''
options:
  per_cluster:
    description:
      - At most this many guests of one cluster are worked on at once (their Proxmox tasks running), so that a
        storage the cluster's nodes share (Ceph, NFS) copies at most this many disks at a time.
      - Reads and guests with nothing to do take no slot.
    type: int
    default: 8
  per_node:
    description:
      - At most this many guests whose tasks run on one node are worked on at once. A clone counts on the node
        of its source and on its target node.
      - Proxmox VE's own bulk actions start at most C(max_workers) (C(datacenter.cfg)) tasks per node, 8 at most
        when it is not set; a clone copies disks, so the default is half that, 4.
    type: int
    default: 4
notes:
  - The guests are worked on by threads of the one module process, each guest exactly as the single-guest
    modules would (routing, locks waited out, tasks waited for, two runs creating one name leaving one guest).
'''
