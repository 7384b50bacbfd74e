#!/usr/bin/env python3
"""Benchmark of many guests deployed at once: pmx_guests against loops of pmx_vm and community.proxmox, on the lab.

Starts a lab of 3 clusters with 20 ms of simulated latency per response, where a clone takes 3 s and a start
1 s (``--task-secs``), then deploys N VMs (N/3 per cluster, each cloned from its cluster's template and
started) four ways, each on names of its own, and prints wall time and HTTP requests (counted by the fakes):

* (a) pmx.multicluster.pmx_vm in a loop (one task, ``loop:`` over the names);
* (b) pmx.multicluster.pmx_guests, one task, default bounds;
* (c) community.proxmox.proxmox_kvm in a loop (a clone loop, then a start loop, as its documentation does);
* (d) the floor: one cluster's guests all at once, clone then start, by raw API calls (no Ansible).

Usage (``make bench`` runs it after the inventory benchmark)::

    python bench/fleet_bench.py --ansible-bin .cache/bench-venv/bin

``--ansible-bin`` is the bin directory of a virtualenv with the ``ansible`` package (community.proxmox),
proxmoxer, requests and python-dotenv; pmx.multicluster must be installed in ``--collections``. It is a script,
not a test: the figures depend on the machine.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / 'lab'))

import pmxlab  # noqa: E402  (lab/ is not a package)

# Targets of the fleet issue.
VS_COMMUNITY_FACTOR = 10.0
FLOOR_FACTOR = 2.0


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--ansible-bin', default=str(REPO / '.cache' / 'bench-venv' / 'bin'))
    default_collections = ((os.environ.get('ANSIBLE_COLLECTIONS_PATH') or '').split(os.pathsep)[0]
                           or str(REPO / '.collections'))
    parser.add_argument('--collections', default=default_collections)
    parser.add_argument('--sizes', default='12,48', help='VM counts to deploy, a multiple of 3 each (default 12,48)')
    parser.add_argument('--latency', type=float, default=0.02)
    parser.add_argument('--task-secs', type=pmxlab.task_secs_arg, default={'qmclone': 3.0, 'qmstart': 1.0})
    parser.add_argument('--first-host', default='127.0.6.2')
    parser.add_argument('--skip-loops-above', type=int, default=0,
                        help='skip (a) and (c) for sizes above this (they take minutes; 0: never skip)')
    return parser.parse_args()


class Bench:
    def __init__(self, args, lab, workdir):
        self.args, self.lab, self.workdir = args, lab, workdir
        self.bin = Path(args.ansible_bin).absolute()
        if not (self.bin / 'ansible-playbook').exists():
            sys.exit('no ansible-playbook in %s: run `make bench`, which installs the ansible package there' % self.bin)
        self.plays = 0

    def requests_seen(self):
        return sum(len(c.pve.requests) for c in self.lab.clusters.values())

    def template(self, cluster):
        return next(vm for vm in cluster.pve.vms if vm.template)

    def names(self, size, tag):
        return dict((c.name, ['%s-%s%d-%02d' % (c.prefix, tag, size, n) for n in range(1, size // 3 + 1)])
                    for c in self.lab.clusters.values())

    def play(self, tasks, secrets=None):
        """Run one play on localhost with the bench venv's ansible-playbook; (wall seconds, requests).

        ``secrets``: variables kept in a vars file of their own (token secrets), so that an error never shows
        them in the task's context."""
        import yaml
        self.plays += 1
        path = self.workdir / ('play-%d.yml' % self.plays)
        play = {'hosts': 'localhost', 'gather_facts': False,
                'vars': {'ansible_python_interpreter': '{{ ansible_playbook_python }}'}, 'tasks': tasks}
        if secrets:
            vars_file = self.workdir / ('secrets-%d.yml' % self.plays)
            vars_file.write_text(yaml.safe_dump(secrets))
            vars_file.chmod(0o600)
            play['vars_files'] = [str(vars_file)]
        path.write_text(yaml.safe_dump([play], sort_keys=False))
        env = dict((k, v) for k, v in os.environ.items() if not k.startswith(('PROXMOX_', 'ANSIBLE_')))
        env.update({'PATH': str(self.bin) + os.pathsep + env.get('PATH', ''), 'ANSIBLE_NOCOLOR': '1',
                    'ANSIBLE_COLLECTIONS_PATH': os.path.abspath(self.args.collections),
                    'PROXMOX_ENV_FILE': self.lab.env_file, 'REQUESTS_CA_BUNDLE': self.lab.ca_bundle,
                    'NO_PROXY': ','.join(self.lab.hosts), 'no_proxy': ','.join(self.lab.hosts)})
        before = self.requests_seen()
        started = time.perf_counter()
        proc = subprocess.run([str(self.bin / 'ansible-playbook'), '-i', 'localhost,', '-c', 'local', str(path)],
                              env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            sys.exit('%s failed (%d):\n%s%s' % (path, proc.returncode, proc.stdout[-4000:], proc.stderr[-2000:]))
        return wall, self.requests_seen() - before

    def check(self, names):
        """Every VM exists once and runs."""
        for cluster, wanted in names.items():
            vms = [vm for vm in self.lab.clusters[cluster].pve.vms if vm.name in wanted]
            if sorted(vm.name for vm in vms) != sorted(wanted) or any(vm.status != 'running' for vm in vms):
                sys.exit('cluster %s: not every VM of %s was made once and started' % (cluster, wanted))

    # ------------------------------------------------------------ the scenarios

    def pmx_vm_loop(self, size):
        names = self.names(size, 'a')
        items = [{'name': n, 'clone': self.template(self.lab.clusters[c]).name} for c, ns in names.items() for n in ns]
        result = self.play([{'name': 'pmx_vm loop', 'pmx.multicluster.pmx_vm': {
            'name': '{{ item.name }}', 'clone': '{{ item.clone }}', 'state': 'started'}, 'loop': items}])
        self.check(names)
        return result

    def pmx_guests(self, size):
        names = self.names(size, 'b')
        guests = [{'name': n, 'clone': self.template(self.lab.clusters[c]).name} for c, ns in names.items() for n in ns]
        result = self.play([{'name': 'pmx_guests', 'pmx.multicluster.pmx_guests': {
            'guests': guests, 'state': 'started'}}])
        self.check(names)
        return result

    def startup(self, size):
        """pmx_guests with an empty list: what ansible-playbook and the module's start cost before any guest."""
        return self.play([{'name': 'pmx_guests, nothing to do', 'pmx.multicluster.pmx_guests': {'guests': []}}])

    def community_loop(self, size):
        names = self.names(size, 'c')
        items = []
        for cluster, ns in names.items():
            lab_cluster = self.lab.clusters[cluster]
            user, token = lab_cluster.token_id.split('!')
            tpl = self.template(lab_cluster)
            items += [{'name': n, 'clone': tpl.name, 'node': tpl.node, 'api_host': lab_cluster.host, 'user': user,
                       'token': token, 'cluster': cluster} for n in ns]
        secrets = {'bench_secrets': dict((c.name, c.token_secret) for c in self.lab.clusters.values())}
        auth = {'api_host': '{{ item.api_host }}', 'api_user': '{{ item.user }}', 'api_token_id': '{{ item.token }}',
                'api_token_secret': '{{ bench_secrets[item.cluster] }}', 'validate_certs': True}
        result = self.play([
            {'name': 'clone', 'community.proxmox.proxmox_kvm': dict(auth, name='{{ item.name }}', timeout=300,
                                                                  clone='{{ item.clone }}', node='{{ item.node }}'),
             'loop': items, 'no_log': True},
            {'name': 'start', 'community.proxmox.proxmox_kvm': dict(auth, name='{{ item.name }}', state='started',
                                                                  timeout=300),
             'loop': items, 'no_log': True}], secrets)
        self.check(names)
        return result

    def floor(self, size):
        """One cluster's N/3 guests all at once: POST clone, wait, POST start, wait; raw requests, one session
        per guest. (wall seconds, requests)."""
        import requests
        cluster = next(iter(self.lab.clusters.values()))
        tpl = self.template(cluster)
        base = cluster.url + '/api2/json'
        errors = []

        def wait(session, upid):
            while True:
                status = session.get(base + '/nodes/%s/tasks/%s/status' % (tpl.node, upid), headers=cluster.headers,
                                     verify=self.lab.ca_bundle, timeout=30).json()['data']
                if status.get('status') == 'stopped':
                    return status.get('exitstatus')
                time.sleep(0.1)

        def one(vmid):
            session = requests.Session()
            session.trust_env = False
            try:
                upid = session.post(base + '/nodes/%s/qemu/%d/clone' % (tpl.node, tpl.vmid), headers=cluster.headers,
                                    data={'newid': vmid, 'name': '%s-d%d' % (cluster.prefix, vmid)},
                                    verify=self.lab.ca_bundle, timeout=30).json()['data']
                if wait(session, upid) != 'OK':
                    errors.append('clone %d failed' % vmid)
                    return
                upid = session.post(base + '/nodes/%s/qemu/%d/status/start' % (tpl.node, vmid),
                                    headers=cluster.headers, verify=self.lab.ca_bundle, timeout=30).json()['data']
                if wait(session, upid) != 'OK':
                    errors.append('start %d failed' % vmid)
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append('%d: %s' % (vmid, exc))
            finally:
                session.close()

        first = 50000 + size * 10
        before = self.requests_seen()
        started = time.perf_counter()
        threads = [threading.Thread(target=one, args=(first + n,)) for n in range(size // 3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - started
        if errors:
            sys.exit('the floor failed: ' + '; '.join(errors))
        return wall, self.requests_seen() - before


def main():
    args = parse_args()
    sizes = [int(s) for s in args.sizes.split(',') if s.strip()]
    if any(s % 3 for s in sizes):
        sys.exit('--sizes: each a multiple of 3 (one third per cluster)')
    workdir = Path(tempfile.mkdtemp(prefix='pmx-fleet-bench-'))
    print('Lab: 3 clusters, %.0f ms latency per response, task seconds %s; starting...'
          % (args.latency * 1000, ','.join('%s:%g' % kv for kv in sorted(args.task_secs.items()))), flush=True)
    measured = {}
    with pmxlab.Lab(str(workdir / 'lab'), clusters=3, first_host=args.first_host, time_scale=1,
                    latency=args.latency, task_secs=args.task_secs) as lab:
        for cluster in lab.clusters.values():
            cluster.pve.max_requests = 10 ** 7
        bench = Bench(args, lab, workdir)
        for size in sizes:
            loops = not args.skip_loops_above or size <= args.skip_loops_above
            scenarios = [('d', 'the floor: %d guests of one cluster at once, raw API' % (size // 3), bench.floor),
                         ('b', 'pmx_guests, one task, default bounds', bench.pmx_guests),
                         ('e', 'pmx_guests with an empty list (start-up cost)', bench.startup)]
            if loops:
                scenarios += [('a', 'pmx_vm in a loop', bench.pmx_vm_loop),
                              ('c', 'community.proxmox proxmox_kvm in a loop', bench.community_loop)]
            for key, label, func in scenarios:
                print('  %d VMs: (%s) %s ...' % (size, key, label), flush=True)
                measured[(size, key)] = (label, ) + func(size)

    labels = {'a': 'pmx_vm in a loop', 'b': 'pmx_guests (one task)', 'c': 'community.proxmox proxmox_kvm in a loop',
              'd': 'floor: one cluster at once, raw API', 'e': '(start-up: pmx_guests, empty list)'}
    print()
    print('%-44s %s' % ('', '  '.join('%20s' % ('%d VMs: wall s / requests' % s) for s in sizes)))
    for key in 'abcde':
        cells = []
        for size in sizes:
            found = measured.get((size, key))
            cells.append('%20s' % ('%8.1f / %7d' % found[1:] if found else 'skipped'))
        print('%-44s %s' % ('(%s) %s' % (key, labels[key]), '  '.join(cells)))
    print()
    checks = []
    for size in sizes:
        a, b, c, d, e = (measured.get((size, k)) for k in 'abcde')
        target = size == sizes[0]  # the targets are set for the first size (12); the others are for the record
        checks.append(('%d VMs: (b) within %.0fx of the floor' % (size, FLOOR_FACTOR),
                       b[1] <= FLOOR_FACTOR * d[1] or not target, '%.2fx the floor%s; without the start-up (e), '
                       '%.2fx' % (b[1] / d[1], '' if target else ' (no target at this size)', (b[1] - e[1]) / d[1])))
        if c:
            checks.append(('%d VMs: (b) >= %.0fx faster than (c)' % (size, VS_COMMUNITY_FACTOR),
                           c[1] >= VS_COMMUNITY_FACTOR * b[1], '%.1fx faster' % (c[1] / b[1])))
        if a:
            checks.append(('%d VMs: requests (b) <= (a)' % size, b[2] <= a[2], '%d vs %d' % (b[2], a[2])))
    failed = 0
    for label, ok, detail in checks:
        failed += not ok
        print('%-4s %s: %s' % ('ok' if ok else 'MISS', label, detail))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
