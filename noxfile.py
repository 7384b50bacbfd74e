"""The version matrix: every supported ansible-core on its Python, each in a virtualenv of its own.

    nox -s matrix                  # every leg, two at a time (MATRIX_JOBS), then the time each took
    nox -s ansible-core-2.19       # one leg
    nox -l                         # the legs

A leg installs its ansible-core with the collection's requirements, builds the collection with
``ansible-galaxy collection build`` and installs the tarball, then runs ``ansible-test sanity`` and
``ansible-test units`` on the installed collection, and tests/smoke/smoke.yml (pmx_cluster_info, pmx_vm and
``ansible-inventory --graph`` with the inventory plugin) against a lab started by lab/pmxlab.py.

Environment: MATRIX_JOBS (legs at once, default 2), MATRIX_LAB_NET (the legs' labs use 127.0.<net>.x,
default 8), MATRIX_COVERED ("2.19/3.11": that leg runs sanity only, as `make test` runs pytest, all of the unit
and integration tests, with that ansible-core and Python anyway), OFFLINE (1 or 0; unset: probed, see
tests/tooling/seed_get_pip.py), PYTHON_3_11 / PYTHON_3_12 / PYTHON_3_13 (an interpreter to use instead of the one
found under pyenv or on PATH).
"""

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
# ansible-core minor version -> (the release tested, its Python). README.md "Supported versions" lists the same.
LEGS = {
    '2.16': ('2.16.19', '3.11'),
    '2.17': ('2.17.14', '3.11'),
    '2.18': ('2.18.19', '3.11'),
    '2.19': ('2.19.14', '3.11'),
    '2.20': ('2.20.10', '3.12'),
    '2.21': ('2.21.5', '3.13'),
}
# What a leg installs besides ansible-core: the collection's runtime requirements and the lab.
LEG_REQUIREMENTS = ['-r', 'requirements.txt', 'fakepve[crypto]==0.5.0']
SMOKE = ROOT / 'tests' / 'smoke' / 'smoke.yml'

nox.options.sessions = ['matrix']
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True


def interpreter(version):
    """The Python ``version`` ("3.12"): $PYTHON_3_12, else pyenv's own build (its bare shims refuse to run a
    version that is not selected), else ``python3.12`` as nox finds it on PATH."""
    chosen = os.environ.get('PYTHON_' + version.replace('.', '_'))
    if chosen:
        return chosen
    pyenv = Path(os.environ.get('PYENV_ROOT', Path.home() / '.pyenv')) / 'versions'
    for build in sorted(pyenv.glob(version + '.*'), reverse=True):
        if (build / 'bin' / ('python' + version)).is_file():
            return str(build / 'bin' / ('python' + version))
    return version


def leg_name(minor):
    return 'ansible-core-' + minor


def make_leg(minor, index):
    release, python = LEGS[minor]

    @nox.session(name=leg_name(minor), python=interpreter(python))
    def leg(session):
        """ansible-core {release} on Python {python}: build, install, sanity, units, smoke test."""
        session.install('ansible-core==' + release, *LEG_REQUIREMENTS)
        work = Path(session.create_tmp()).resolve()
        build, collections = work / 'build', work / 'collections'
        installed = collections / 'ansible_collections' / 'pmx' / 'multicluster'
        shutil.rmtree(build, ignore_errors=True)
        shutil.rmtree(collections, ignore_errors=True)
        session.run('ansible-galaxy', 'collection', 'build', '--force', '--output-path', str(build), str(ROOT))
        tarball = next(build.glob('pmx-multicluster-*.tar.gz'))
        session.run('ansible-galaxy', 'collection', 'install', '--force', '-p', str(collections), str(tarball))
        # ansible-test keeps its virtualenvs (and the get-pip cache) under ~/.ansible/test: legs that run at once
        # would share, and build at the same moment, the ones whose requirements match (2.16 and 2.17 on 3.11),
        # and break them. Each leg has a home of its own, kept with its virtualenv between runs.
        home = Path(session.virtualenv.location).resolve() / 'home'
        home.mkdir(exist_ok=True)
        env = {'ANSIBLE_COLLECTIONS_PATH': str(collections), 'ANSIBLE_TEST_CONTENT_ROOT': str(installed),
               'HOME': str(home)}

        session.run('python', str(ROOT / 'tests' / 'tooling' / 'seed_get_pip.py'), python, env=env)
        with session.chdir(installed):
            session.run('ansible-test', 'sanity', '--requirements', '--python', python, env=env)
        if '%s/%s' % (minor, python) in os.environ.get('MATRIX_COVERED', '').split():
            session.log('units and smoke test left out: the pytest run of `make test` runs every unit test and the '
                        'whole integration suite with ansible-core %s on Python %s (MATRIX_COVERED)', minor, python)
            return
        # The tarball leaves the tests out; ansible-test units runs them from the installed tree's tests/unit.
        shutil.copytree(ROOT / 'tests' / 'unit', installed / 'tests' / 'unit', dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns('__pycache__'))
        with session.chdir(installed):
            # One pytest worker: two legs share two cores, and the timing tests (a .env of 10,000 lines loads in
            # under 100 ms) must not compete with their own leg.
            session.run('ansible-test', 'units', '--requirements', '--python', python, '--num-workers', '1', env=env)

        net = os.environ.get('MATRIX_LAB_NET', '8')
        first_host = '127.0.%s.%d' % (net, 10 + 10 * index)
        session.run('python', str(ROOT / 'lab' / 'pmxlab.py'), 'run', '--dir', str(work / 'lab'),
                    '--first-host', first_host, '--', 'ansible-playbook', str(SMOKE), env=env)

    leg.__doc__ = leg.__doc__.format(release=release, python=python)
    return leg


for _index, _minor in enumerate(LEGS):
    globals()['leg_' + _minor.replace('.', '_')] = make_leg(_minor, _index)


class Leg:
    """One leg run as ``nox -s <leg>`` in the background, its output kept in a log file."""

    def __init__(self, minor, logs):
        self.minor, self.name = minor, leg_name(minor)
        self.release, self.python = LEGS[minor]
        self.log = logs / (self.name + '.log')
        self.rc, self.secs = None, None

    def run(self):
        started = time.monotonic()
        with open(self.log, 'w') as out:
            self.rc = subprocess.call([sys.executable, '-m', 'nox', '-f', str(ROOT / 'noxfile.py'), '-s', self.name],
                                      stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=str(ROOT))
        self.secs = time.monotonic() - started

    @property
    def summary(self):
        return '[leg %s (ansible-core %s, Python %s): %s in %ds]' % (
            self.name, self.release, self.python, 'passed' if self.rc == 0 else 'FAILED', self.secs)


@nox.session(python=False)
def matrix(session):
    """Every leg, MATRIX_JOBS (default 2) at a time; each leg's output in one piece as it ends, then the times."""
    jobs = int(os.environ.get('MATRIX_JOBS', '2'))
    logs = Path(session.create_tmp()).resolve()
    unknown = [minor for minor in session.posargs if minor not in LEGS]
    if unknown:
        session.error('no leg %s; the legs: %s' % (', '.join(unknown), ' '.join(LEGS)))
    queue = [Leg(minor, logs) for minor in session.posargs or LEGS]
    legs, lock = list(queue), threading.Lock()
    started = time.monotonic()

    def worker():
        while True:
            with lock:
                if not queue:
                    return
                leg = queue.pop(0)
            leg.run()
            with lock:
                session.log('---------------- %s: output (%s)', leg.name, leg.log)
                print(leg.log.read_text(), flush=True)
                session.log(leg.summary)

    threads = [threading.Thread(target=worker) for _ in range(max(1, jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = time.monotonic() - started
    session.log('---------------- the matrix (%d at a time)', jobs)
    for leg in legs:
        session.log(leg.summary)
    session.log('[matrix: %ds wall time]', total)
    failed = [leg.name for leg in legs if leg.rc != 0]
    if failed:
        session.error('failed: %s (their output above, and in %s)' % (', '.join(failed), logs))
