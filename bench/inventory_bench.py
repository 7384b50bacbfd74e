#!/usr/bin/env python3
"""Benchmark of the pmx.multicluster.pmx inventory against community.proxmox's, on the fakepve lab.

Starts a lab of 3 clusters x 500 guests with 20 ms of simulated latency per response, then runs the real
``ansible-inventory --list`` for each scenario and prints wall time, HTTP requests (counted by the fakes)
and hosts listed, side by side:

* the floor: ansible-inventory holding the very same hosts, groups and variables from a script inventory that
  prints the plugin's own ``--list`` output, taken in the same run (what Ansible itself spends on them,
  whichever source lists them); for want_config, its own script floor plus the latency of its requests at the
  plugin's concurrency (``max_workers`` per cluster, all clusters at once);
* pmx.multicluster.pmx with default options, and with want_config;
* community.proxmox.proxmox (one source per cluster, as it spans one cluster) with want_facts false and true;
* for reference (not a target): ansible-inventory on the same number of bare hosts (a script inventory, no
  variables, no groups): what ansible-inventory itself spends per host, whichever plugin lists them.

The fast scenarios run in rounds (each scenario once per round, ``--repeat`` rounds) and the median counts,
so that a load burst on a shared machine hits all of them alike rather than one scenario's runs.

Usage (``make bench`` does all of this)::

    python bench/inventory_bench.py --ansible-bin .cache/bench-venv/bin

``--ansible-bin`` is the bin directory of a virtualenv with the ``ansible`` package (it bundles
community.proxmox), proxmoxer, requests and python-dotenv; pmx.multicluster must be installed in
``--collections`` (``make collection``; default: the first path of ANSIBLE_COLLECTIONS_PATH, else .collections).
It is a script, not a test: the figures depend on the machine.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / 'lab'))

import pmxlab  # noqa: E402  (lab/ is not a package)

# Targets: issue 6, restated by the fleet issue against the script-inventory floor.
FLOOR_FACTOR = 1.1
CONFIG_FLOOR_FACTOR = 1.5
# The plugin's default max_workers: per-guest requests in flight at once per cluster.
PLUGIN_CONCURRENCY = 10


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--ansible-bin', default=str(REPO / '.cache' / 'bench-venv' / 'bin'),
                        help='bin directory with ansible-inventory and community.proxmox '
                             '(default .cache/bench-venv/bin)')
    default_collections = ((os.environ.get('ANSIBLE_COLLECTIONS_PATH') or '').split(os.pathsep)[0]
                           or str(REPO / '.collections'))
    parser.add_argument('--collections', default=default_collections,
                        help='where pmx.multicluster is installed '
                             '(default: ANSIBLE_COLLECTIONS_PATH, else .collections)')
    parser.add_argument('--clusters', type=int, default=3)
    parser.add_argument('--guests', type=int, default=500, help='bulk guests per cluster (default 500)')
    parser.add_argument('--latency', type=float, default=0.02, help='seconds added to every response (default 0.02)')
    parser.add_argument('--first-host', default='127.0.5.2',
                        help='address of the first lab cluster (default 127.0.5.2)')
    parser.add_argument('--repeat', type=int, default=5,
                        help='rounds of the fast scenarios (each once per round); the median counts (default 5)')
    parser.add_argument('--skip-facts', action='store_true', help='skip community.proxmox with want_facts (minutes)')
    return parser.parse_args()


class Bench:
    def __init__(self, args, lab, workdir):
        self.args = args
        self.lab = lab
        self.workdir = workdir
        self.bin = Path(args.ansible_bin).absolute()
        if not (self.bin / 'ansible-inventory').exists():
            sys.exit('no ansible-inventory in %s: run `make bench`, which installs the ansible package there'
                     % self.bin)

    def env(self, extra=None):
        env = dict((k, v) for k, v in os.environ.items() if not k.startswith(('PROXMOX_', 'ANSIBLE_')))
        env.update({
            'PATH': str(self.bin) + os.pathsep + env.get('PATH', ''),
            'ANSIBLE_COLLECTIONS_PATH': os.path.abspath(self.args.collections),
            'ANSIBLE_NOCOLOR': '1',
            'ANSIBLE_INVENTORY_UNPARSED_FAILED': 'true',
            # no_proxy for the lab's loopback addresses, whatever proxy the environment sets.
            'NO_PROXY': ','.join(self.lab.hosts), 'no_proxy': ','.join(self.lab.hosts),
        })
        env.update(extra or {})
        return env

    def requests_seen(self):
        return sum(len(c.pve.requests) for c in self.lab.clusters.values())

    def inventory(self, sources, env=None, mode='--list', keep=None):
        """Run ansible-inventory --list (or --graph) on the sources: (wall seconds, HTTP requests, hosts).

        ``keep``: a path to copy the output to (the script floor's data)."""
        out = self.workdir / 'out.txt'
        cmd = [str(self.bin / 'ansible-inventory'), mode, '--output', str(out)]
        for source in sources:
            cmd += ['-i', str(source)]
        before = self.requests_seen()
        started = time.perf_counter()
        proc = subprocess.run(cmd, env=self.env(env), capture_output=True, text=True, cwd=str(self.workdir),
                              stdin=subprocess.DEVNULL, check=False)
        wall = time.perf_counter() - started
        requests = self.requests_seen() - before
        if proc.returncode != 0:
            sys.exit('%s failed (%d):\n%s%s' % (' '.join(cmd), proc.returncode, proc.stdout, proc.stderr))
        if 'WARNING' in proc.stderr:
            print(proc.stderr.strip(), file=sys.stderr)
        text = out.read_text()
        if keep is not None:
            Path(keep).write_text(text)
        if mode == '--list':
            data = json.loads(text)
            # Hosts without variables are only in their groups' host lists, not in _meta.hostvars.
            hosts = len(set(data.get('_meta', {}).get('hostvars', {})).union(
                *(entry.get('hosts', []) for name, entry in data.items()
                  if name != '_meta' and isinstance(entry, dict))))
        else:
            hosts = len(set(line.split('|--')[-1] for line in text.splitlines()
                            if '|--' in line and '|--@' not in line))
        return wall, requests, hosts

    @staticmethod
    def rounds(scenarios, times):
        """Run every scenario once per round, ``times`` rounds: {key: (median wall, requests, hosts)}.

        Interleaved rather than one scenario's runs in a row, so that a load burst on a shared machine
        hits every scenario alike. Requests and hosts are those of the last run.
        """
        runs = dict((scenario[0], []) for scenario in scenarios)
        for number in range(times):
            for key, label, func in scenarios:
                print('  round %d/%d: %s ...' % (number + 1, times, label), flush=True)
                runs[key].append(func())
        return dict((key, (statistics.median(r[0] for r in found), found[-1][1], found[-1][2]))
                    for key, found in runs.items())

    def script_of(self, name, data_file):
        """A script inventory that prints ``data_file`` (an ``ansible-inventory --list`` output)."""
        script = self.workdir / name
        script.write_text('#!/bin/sh\nexec cat %s\n' % data_file)
        script.chmod(0o755)
        return script

    def write(self, name, data):
        import yaml
        path = self.workdir / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def community_sources(self, want_facts):
        sources = []
        for cluster in self.lab.clusters.values():
            user, token_name = cluster.token_id.split('!')
            sources.append(self.write('%s-%s.proxmox.yml' % (cluster.name, 'facts' if want_facts else 'plain'), {
                'plugin': 'community.proxmox.proxmox', 'url': cluster.url, 'user': user,
                'token_id': token_name, 'token_secret': cluster.token_secret, 'validate_certs': True,
                'want_facts': want_facts, 'exclude_nodes': True}))
        return sources


def community_version(bin_dir):
    try:
        out = subprocess.run([str(Path(bin_dir) / 'ansible-galaxy'), 'collection', 'list', 'community.proxmox',
                              '--format', 'json'], capture_output=True, text=True, check=False,
                             env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH='/nonexistent')).stdout
        for collections in json.loads(out).values():
            if 'community.proxmox' in collections:
                return collections['community.proxmox']['version']
    except (OSError, ValueError):
        pass
    return '?'


def main():
    args = parse_args()
    workdir = Path(tempfile.mkdtemp(prefix='pmx-bench-'))
    print('Lab: %d clusters x %d bulk guests (+7 samples each), %.0f ms latency per response; starting...'
          % (args.clusters, args.guests, args.latency * 1000), flush=True)
    with pmxlab.Lab(str(workdir / 'lab'), clusters=args.clusters, guests_per_cluster=args.guests,
                    first_host=args.first_host, time_scale=1, latency=args.latency) as lab:
        for cluster in lab.clusters.values():
            cluster.pve.max_requests = 10 ** 7
        guests = sum(1 for c in lab.clusters.values() for g in c.guests() if not getattr(g, 'template', False))
        bench = Bench(args, lab, workdir)
        ours_env = {'PROXMOX_ENV_FILE': lab.env_file}
        community_env = {'REQUESTS_CA_BUNDLE': lab.ca_bundle}
        plain = bench.write('default.pmx.yml', {'plugin': 'pmx.multicluster.pmx'})
        config = bench.write('config.pmx.yml', {'plugin': 'pmx.multicluster.pmx', 'want_config': True})
        version = community_version(args.ansible_bin)

        # Bare hosts for the reference row: as many as the lab's guests, listed by a script, without variables.
        bare = workdir / 'bare-hosts.json'
        bare.write_text(json.dumps({'all': {'hosts': ['guest%05d' % n for n in range(guests)]},
                                    '_meta': {'hostvars': {}}}))
        bare_script = bench.script_of('bare-hosts.sh', bare)

        # The floors: the plugin's own --list output (default options, and want_config), as script inventories.
        print('  once: the plugin\'s --list output for the script floors ...', flush=True)
        bench.inventory([plain], ours_env, keep=workdir / 'plugin-list.json')
        config_once = bench.inventory([config], ours_env, keep=workdir / 'config-list.json')
        script = bench.script_of('plugin-list.sh', workdir / 'plugin-list.json')
        config_script = bench.script_of('config-list.sh', workdir / 'config-list.json')

        scenarios = []
        for mode in ('--list', '--graph'):
            scenarios += [
                ((mode, 'script'), '%s script inventory of the plugin\'s own output' % mode,
                 lambda m=mode: bench.inventory([script], mode=m)),
                ((mode, 'ours'), '%s pmx.multicluster.pmx, default options' % mode,
                 lambda m=mode: bench.inventory([plain], ours_env, m)),
                ((mode, 'theirs'), '%s community.proxmox, want_facts: false' % mode,
                 lambda m=mode: bench.inventory(bench.community_sources(False), community_env, m)),
                ((mode, 'bare'), '%s bare hosts' % mode, lambda m=mode: bench.inventory([bare_script], mode=m)),
            ]
        scenarios += [
            (('--list', 'config'), '--list pmx.multicluster.pmx, want_config: true',
             lambda: bench.inventory([config], ours_env)),
            (('--list', 'config-script'), '--list script inventory of want_config\'s own output',
             lambda: bench.inventory([config_script])),
        ]

        # A first run warms the page cache (Python bytecode) so the first scenario is not penalised.
        bench.inventory([script])
        measured = bench.rounds(scenarios, args.repeat)
        theirs_facts = None
        if not args.skip_facts:
            print('  once: --list community.proxmox, want_facts: true ...', flush=True)
            theirs_facts = bench.inventory(bench.community_sources(True), community_env)

    rows = []
    results = {}
    for mode in ('--list', '--graph'):
        floor = measured[(mode, 'script')]
        ours, theirs = measured[(mode, 'ours')], measured[(mode, 'theirs')]
        results[mode] = (floor[0], ours, theirs)
        rows += [
            ('ansible-inventory %s' % mode, None, None, None),
            ('  floor: script inventory printing the plugin\'s own output', ) + floor,
            ('  pmx.multicluster.pmx, default options', ) + ours,
            ('  community.proxmox %s, want_facts: false' % version, ) + theirs,
            ('  (reference: %d bare hosts, no variables)' % guests, ) + measured[(mode, 'bare')],
        ]
    ours_config = measured[('--list', 'config')]
    config_script_floor = measured[('--list', 'config-script')]
    # want_config's own requests, at max_workers per cluster, all clusters at once.
    per_cluster = config_once[1] / float(args.clusters)
    config_latency = args.latency * -(-per_cluster // PLUGIN_CONCURRENCY)
    config_floor = config_script_floor[0] + config_latency
    rows += [
        ('ansible-inventory --list', None, None, None),
        ('  script inventory printing want_config\'s own output', ) + config_script_floor,
        ('  + %d requests at %d per cluster at once, %.0f ms each'
         % (config_once[1], PLUGIN_CONCURRENCY, args.latency * 1000), config_latency, config_once[1], 0),
        ('  = floor for want_config', config_floor, config_once[1], 0),
        ('  pmx.multicluster.pmx, want_config: true', ) + ours_config,
    ]
    if theirs_facts:
        rows.append(('  community.proxmox %s, want_facts: true' % version, ) + theirs_facts)

    width = max(len(r[0]) for r in rows)
    print()
    print('%-*s  %9s  %9s  %6s' % (width, 'scenario', 'wall s', 'requests', 'hosts'))
    print('-' * (width + 32))
    for label, wall, requests, hosts in rows:
        if wall is None:
            print(label)
        else:
            print('%-*s  %9.2f  %9d  %6s' % (width, label, wall, requests, hosts or '-'))
    print('(guests in the lab, templates excluded: %d; median of %d interleaved rounds, want_facts: true run once)'
          % (guests, args.repeat))
    print()
    checks = []
    for mode, (floor, ours, theirs) in results.items():
        checks += [
            ('%s: default within %.1fx of the script floor' % (mode, FLOOR_FACTOR), ours[0] <= FLOOR_FACTOR * floor,
             '%.2fx the floor' % (ours[0] / floor)),
            ('%s: against community.proxmox without facts' % mode, None, '%.2fx faster' % (theirs[0] / ours[0])),
            ('%s: no guest lost (default lists %d of %d)' % (mode, ours[2], guests), ours[2] == guests, ''),
        ]
    checks.append(('want_config within %.1fx of its floor' % CONFIG_FLOOR_FACTOR,
                   ours_config[0] <= CONFIG_FLOOR_FACTOR * config_floor, '%.2fx' % (ours_config[0] / config_floor)))
    checks.append(('want_config lists every guest (%d of %d)' % (ours_config[2], guests), ours_config[2] == guests, ''))
    if theirs_facts:
        checks.append(('want_config against community.proxmox with facts', None,
                       '%.1fx faster' % (theirs_facts[0] / ours_config[0])))
    failed = 0
    for label, ok, detail in checks:
        failed += ok is False
        # None: a figure for the record, no target (the community.proxmox ratios of issue 6, which the fleet issue
        # replaced with the script floor).
        print('%-4s %s%s' % ({True: 'ok', False: 'MISS', None: 'info'}[ok], label, (': ' + detail) if detail else ''))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
