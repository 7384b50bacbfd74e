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
      - Its values override the process environment; values given in O(clusters) override both.
      - If not set, the environment variable E(PROXMOX_ENV_FILE) is used; with neither, only the
        process environment and O(clusters) are read.
      - The variables are C(PROXMOX_CLUSTERS), C(PROXMOX_CLUSTER_<name>_API_URL), C(_TOKEN_ID),
        C(_TOKEN_SECRET), C(_VERIFY_SSL), C(_CA_BUNDLE), C(_TIMEOUT), C(_REGION), C(_TIER), C(_PATTERNS),
        C(PROXMOX_DEFAULT_CLUSTER) and more; see C(.env.example.multi) in the collection.
      - A file that other users can read gives a warning, since it holds token secrets.
    type: path
  clusters:
    description:
      - Cluster definitions given in the task, as a dictionary of cluster name to settings.
      - They add clusters, or override single settings of clusters defined by variables.
      - "Settings: V(api_url) (one URL or a comma-separated list for failover), V(token_id)
        (C(user@realm!tokenname)), V(token_secret), V(verify_ssl) (default V(true)), V(ca_bundle),
        V(timeout) (seconds, default V(10)), V(region), V(tier), V(patterns) (list of globs such as
        V(prod-*)), V(default_node), V(default_storage), V(default_bridge)."
      - Use Ansible Vault for V(token_secret). The whole option is C(no_log).
    type: dict
  default_cluster:
    description:
      - The cluster used when no other routing rule applies.
      - Overrides E(PROXMOX_DEFAULT_CLUSTER); the default is the first configured cluster.
    type: str
notes:
  - The modules talk to the Proxmox VE API from the controller; run them on C(localhost) and set
    C(ansible_python_interpreter) to the value of C(ansible_playbook_python) so they run in the
    Python that has proxmoxer installed.
  - TLS certificates are verified unless a cluster sets C(VERIFY_SSL=false).
  - Token secrets are never returned, logged or shown in error messages.
requirements:
  - proxmoxer >= 2.0
  - requests
  - python-dotenv
'''
