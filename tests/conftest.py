"""Shared fixtures: the collection on sys.path, the fakepve lab, and a real ansible-playbook runner.

Unit tests import the core from this working tree (through an ``ansible_collections``
symlink); integration tests run ``ansible-playbook`` against the collection as
``make test`` installed it with ``ansible-galaxy collection install``.
"""

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / 'lab'))

import pmxlab  # noqa: E402  (lab/ is not a package)

# Import the working tree as ansible_collections.pmx.multicluster.
_ROOT = Path(tempfile.mkdtemp(prefix='pmx-src-'))
(_ROOT / 'ansible_collections' / 'pmx').mkdir(parents=True)
(_ROOT / 'ansible_collections' / 'pmx' / 'multicluster').symlink_to(REPO)
sys.path.insert(0, str(_ROOT))

COLLECTIONS = Path(os.environ.get('ANSIBLE_COLLECTIONS_PATH', str(REPO / '.collections')).split(os.pathsep)[0])
INSTALLED = COLLECTIONS / 'ansible_collections' / 'pmx' / 'multicluster'
BIN = Path(sys.executable).parent
# Test labs use their own loopback range (127.N.1.x and 127.N.2.x, N from the process id, or
# PMX_TEST_NET=N), so a `make demo` lab (127.0.0.x) and parallel test runs never collide.
_NET = int(os.environ.get('PMX_TEST_NET') or 10 + os.getpid() % 240)
SHARED_LAB_HOST = '127.%d.1.2' % _NET
FRESH_LAB_HOST = '127.%d.2.2' % _NET


@pytest.fixture(scope='session')
def lab(tmp_path_factory):
    """Three fake clusters for the whole session. Tests must not leave faults or new guests behind."""
    with pmxlab.Lab(str(tmp_path_factory.mktemp('lab')), clusters=3, first_host=SHARED_LAB_HOST) as running:
        yield running


@pytest.fixture
def plain_http():
    """A plain HTTP server (no TLS) on a loopback address of the test network; the https:// URL that reaches it."""
    import http.server
    import threading
    host = '127.%d.9.1' % _NET

    class Quiet(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer((host, 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield 'https://%s:%d' % (host, server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def fresh_lab(tmp_path):
    """Three fake clusters for one test: for faults and changes that must not leak into other tests."""
    with pmxlab.Lab(str(tmp_path / 'lab'), clusters=3, first_host=FRESH_LAB_HOST) as running:
        yield running


def lab_secrets(lab):
    return [c.token_secret for c in lab.clusters.values()]


def edited_env_text(lab, drop=(), replace=None, extra=()):
    """The lab's .env text with some variables dropped or replaced, plus extra lines."""
    replace = replace or {}
    lines = []
    for line in lab.env_text().splitlines():
        key = line.split('=', 1)[0]
        if key in drop:
            continue
        if key in replace:
            line = '%s=%s' % (key, replace[key])
        lines.append(line)
    return '\n'.join(lines + list(extra)) + '\n'


def write_env_file(tmp_path, text, mode=0o600, name='test.env'):
    """``text`` as an env file with ``mode`` (0600 by default: a readable one gives a warning)."""
    path = tmp_path / name
    path.write_text(text)
    path.chmod(mode)
    return path


class PlayResult:
    """What ansible-playbook did: exit code, output, and the registered variables."""

    def __init__(self, proc, results):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.results = results

    @property
    def output(self):
        return self.stdout + self.stderr

    def __getitem__(self, name):
        return self.results[name]

    def assert_no_secret(self, secrets):
        for secret in secrets:
            assert secret not in self.output, 'a token secret appears in the ansible-playbook output'
            assert secret not in json.dumps(self.results), 'a token secret appears in a returned value'


def ansible_env(env_file=None, extra=None):
    """The environment for an ansible command: no PROXMOX_* from the caller, the installed collection."""
    if not (INSTALLED / 'MANIFEST.json').is_file():
        pytest.exit('pmx.multicluster is not installed in %s: run the tests with `make test`, which builds and '
                    'installs it with ansible-galaxy' % COLLECTIONS, returncode=3)
    env = dict((k, v) for k, v in os.environ.items() if not k.startswith('PROXMOX_'))
    env.update({
        'ANSIBLE_COLLECTIONS_PATH': str(COLLECTIONS),
        'ANSIBLE_NOCOLOR': '1',
        'ANSIBLE_LOCALHOST_WARNING': 'False',
        'ANSIBLE_INVENTORY_UNPARSED_WARNING': 'False',
        'ANSIBLE_RETRY_FILES_ENABLED': 'False',
        'PATH': str(BIN) + os.pathsep + env.get('PATH', ''),
    })
    if env_file:
        env['PROXMOX_ENV_FILE'] = str(env_file)
    env.update(extra or {})
    return env


def _registered(tasks):
    """The variables ``tasks`` register, in the blocks, rescues and always sections too."""
    names = []
    for task in tasks:
        if 'register' in task:
            names.append(task['register'])
        for section in ('block', 'rescue', 'always'):
            names.extend(_registered(task.get(section) or []))
    return names


def run_play(tmp_path, tasks, env_file=None, env=None, args=(), play_vars=None, timeout=300, start=False):
    """Run ``tasks`` on localhost with the real ansible-playbook and return a PlayResult (with ``start``:
    start it in the background and return a RunningPlay).

    Every variable a task registers is written to a JSON file in an ``always`` section, so a
    failing task still yields its result.
    """
    registered = _registered(tasks)
    dump = dict((name, '{{ %s | default(None) }}' % name) for name in registered)
    # Numbered by the playbooks written so far (at once, unlike the results): two overlapping runs never share one.
    number = len(list(tmp_path.glob('play-*.yml')))
    out = tmp_path / ('results-%d.json' % number)
    play = [{
        'name': 'test play',
        'hosts': 'localhost',
        'gather_facts': False,
        'vars': dict({'ansible_python_interpreter': '{{ ansible_playbook_python }}'}, **(play_vars or {})),
        'tasks': [{
            'block': tasks,
            'always': [{
                'name': 'dump registered results',
                'ansible.builtin.copy': {'content': '{{ __dump | to_json }}', 'dest': str(out)},
                'vars': {'__dump': dump},
                'check_mode': False,
                'diff': False,
            }],
        }],
    }]
    playbook = tmp_path / ('play-%d.yml' % number)
    playbook.write_text(yaml.safe_dump(play, sort_keys=False))
    if start:
        return RunningPlay(playbook, out, env_file, env, args)
    return run_playbook(playbook, env_file=env_file, env=env, args=args, timeout=timeout, results_file=out)


class RunningPlay:
    """An ansible-playbook started in the background (its own process group): for runs that overlap."""

    def __init__(self, playbook, results_file, env_file=None, env=None, args=()):
        self.results_file = results_file
        self.proc = subprocess.Popen([str(BIN / 'ansible-playbook'), '-i', 'localhost,', '-c', 'local', str(playbook)]
                                     + list(args), env=ansible_env(env_file, env), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                                     start_new_session=True)

    def interrupt(self):
        """Ctrl-C, as at a terminal: SIGINT to ansible-playbook and the module it runs."""
        os.killpg(self.proc.pid, signal.SIGINT)

    def result(self, timeout=300):
        """Wait for the end; the PlayResult."""
        stdout, stderr = self.proc.communicate(timeout=timeout)
        proc = subprocess.CompletedProcess(self.proc.args, self.proc.returncode, stdout, stderr)
        results = {}
        if Path(self.results_file).is_file():
            results = json.loads(Path(self.results_file).read_text())
        return PlayResult(proc, results)


def run_playbook(playbook, env_file=None, env=None, args=(), timeout=300, results_file=None):
    proc = subprocess.run([str(BIN / 'ansible-playbook'), '-i', 'localhost,', '-c', 'local', str(playbook)]
                          + list(args), env=ansible_env(env_file, env), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, check=False)
    results = {}
    if results_file is not None and Path(results_file).is_file():
        results = json.loads(Path(results_file).read_text())
    return PlayResult(proc, results)


# ---------------------------------------------------------------- unit-test helpers (core against the lab)

@pytest.fixture(scope='session')
def lab_config(lab):
    """The RegistryConfig of ``lab``, read from its .env as a user would (ignoring PROXMOX_* of this process)."""
    from ansible_collections.pmx.multicluster.plugins.module_utils.config import load_config
    return load_config(environ={}, env_file=lab.env_file)


@pytest.fixture
def fresh_config(fresh_lab):
    """The RegistryConfig of ``fresh_lab``, read from its .env (ignoring PROXMOX_* of this process)."""
    from ansible_collections.pmx.multicluster.plugins.module_utils.config import load_config
    return load_config(environ={}, env_file=fresh_lab.env_file)


def run_steps(lab, tmp_path, module, steps, *args):
    """Run ``module`` once per step in one ansible-playbook; a step is (name, params[, task keywords]).

    Each step's result is registered under its name.
    """
    body = []
    for step in steps:
        task = {'name': step[0], module: step[1], 'register': step[0]}
        task.update(step[2] if len(step) > 2 else {})
        body.append(task)
    return run_play(tmp_path, body, env_file=lab.env_file, args=list(args))


def task_actions(res):
    """The actions a guest module reports it ran (clone, update, start...)."""
    return [t['action'] for t in res['tasks']]


def failed_message(result, name):
    """The message of a task that had to fail cleanly: failed, and no traceback anywhere."""
    res = result[name]
    assert res['failed'] is True, res
    # ansible-core 2.19 always registers an `exception` summary; it must not hold a Python traceback.
    assert 'Traceback' not in result.output and 'Traceback' not in json.dumps(res), result.output
    return res['msg']


# ------------------------------------------------------------------ the MCP server, through the official client

MCP_SERVER = INSTALLED / 'extensions' / 'mcp' / 'pmx_mcp.py'


class McpSession:
    """A connected MCP client: ``call`` returns (is_error, structured result or error text)."""

    def __init__(self, session):
        self.session = session
        self.texts = []

    async def call(self, tool, /, **arguments):
        result = await self.session.call_tool(tool, arguments)
        text = ' '.join(getattr(block, 'text', '') for block in result.content)
        self.texts.append(text)
        if result.is_error:
            return True, text
        return False, result.structured_content

    async def confirmed(self, tool, /, **arguments):
        """A destructive call as a user makes it: the preview first, then the same call with confirm=true and
        the preview's confirmation_token. A preview that fails or has no token is the answer."""
        arguments.pop('confirm', None)
        err, preview = await self.call(tool, **arguments)
        if err or not isinstance(preview, dict) or not preview.get('confirmation_token'):
            return err, preview
        return await self.call(tool, confirm=True, confirmation_token=preview['confirmation_token'], **arguments)


def run_mcp(env, body, client_info=None, session_options=None):
    """Start the installed MCP server with ``env`` and run ``await body(McpSession)``.

    ``client_info``: the client's (name, version) in its initialize request; ``session_options``: more
    ClientSession arguments (an ``elicitation_callback``).
    Returns (the body's value, every tool result text, the server's stderr).
    """
    from mcp import ClientSession, StdioServerParameters, stdio_client
    from mcp.types import Implementation

    with tempfile.TemporaryFile(mode='w+') as errlog:
        async def main():
            params = StdioServerParameters(command=sys.executable, args=[str(MCP_SERVER)], env=env)
            async with stdio_client(params, errlog=errlog) as (read, write):
                info = Implementation(name=client_info[0], version=client_info[1]) if client_info else None
                async with ClientSession(read, write, client_info=info, **(session_options or {})) as session:
                    await session.initialize()
                    client = McpSession(session)
                    value = await body(client)
                    return value, client.texts

        value, texts = asyncio.run(asyncio.wait_for(main(), 120))
        errlog.seek(0)
        stderr = errlog.read()
    return value, texts, stderr


# ------------------------------------------------------------------ the three front ends, output captured
# A module in a play (-vvv), ansible-inventory --list and the installed MCP server: what each printed or
# returned is kept in CAPTURED for the secret scan. Faults and checks of what the fakes received follow.

VM = 'pmx.multicluster.pmx_vm'
CT = 'pmx.multicluster.pmx_lxc'
INFO = 'pmx.multicluster.pmx_cluster_info'
DEAD = 'https://127.0.9.9:8006'      # nothing listens there
WRITES = ('POST', 'PUT', 'DELETE')
MAY_FAIL = {'ignore_errors': True}
CHECK = {'check_mode': True}

# (what, text, secrets that must not be in it): every output captured through the helpers below, in the
# whole session; tests/integration/test_zz_secret_scan.py scans it for every form of every secret.
CAPTURED = []
# Secrets besides the labs' token secrets (a container password, a token of a test's own) to look for.
EXTRA_SECRETS = []


def register_secret(*secrets):
    """Have the session-wide scan look for these secrets too."""
    EXTRA_SECRETS.extend(s for s in secrets if s not in EXTRA_SECRETS)


def capture(lab, what, *texts):
    """Keep ``texts`` (output of a front end run against ``lab``) for the secret scan."""
    CAPTURED.append((what, '\n'.join(str(t) for t in texts), list(lab_secrets(lab)) + EXTRA_SECRETS))


# ------------------------------------------------------------------ configuration files

def env_file(lab, tmp_path, replace=None, drop=(), extra=(), mode=0o600, name='faults.env'):
    """The lab's .env with variables replaced or dropped, plus extra lines, as a file with ``mode``."""
    return write_env_file(tmp_path, edited_env_text(lab, drop, replace, extra), mode, name)


def url_of(lab, cluster):
    return lab.clusters[cluster].url


# ------------------------------------------------------------------ the three front ends

def _steps(module, steps):
    tasks = []
    for step in steps:
        task = {'name': step[0], step[3] if len(step) > 3 else module: step[1], 'register': step[0]}
        task.update(step[2] if len(step) > 2 else {})
        tasks.append(task)
    return tasks


def play(lab, tmp_path, module, steps, env=None, args=('-vvv',), extra_env=None):
    """One ansible-playbook -vvv running ``module`` once per step (name, params[, task keywords]).

    ``extra_env``: variables added to the play's environment (PROXMOX_* of the caller are never passed on).
    """
    result = run_play(tmp_path, _steps(module, steps), env_file=env or lab.env_file, env=extra_env, args=list(args))
    capture(lab, 'play', result.output, json.dumps(result.results))
    return result


class CapturedRun:
    """A play() started in the background: ``result()`` waits, captures the output and returns the PlayResult."""

    def __init__(self, lab, running):
        self.lab = lab
        self.running = running

    def interrupt(self):
        self.running.interrupt()

    def result(self, timeout=300):
        result = self.running.result(timeout)
        capture(self.lab, 'play', result.output, json.dumps(result.results))
        return result


def start_play(lab, tmp_path, module, steps, env=None, args=('-vvv',)):
    """play(), started in the background, for two runs that overlap (the lab's holds make the order certain)."""
    return CapturedRun(lab, run_play(tmp_path, _steps(module, steps), env_file=env or lab.env_file, args=list(args),
                                     start=True))


class Inventory:
    def __init__(self, proc):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        # ansible-core 2.19 prints untrusted strings (all API data) as {"__ansible_unsafe": "..."}: unwrapped here.
        self.data = (json.loads(proc.stdout, object_hook=lambda d: d['__ansible_unsafe']
                                if set(d) == {'__ansible_unsafe'} else d)
                     if proc.returncode == 0 and proc.stdout.startswith('{') else None)

    @property
    def hosts(self):
        return set(self.data['_meta']['hostvars']) if self.data else set()

    @property
    def text(self):
        """stderr on one line (ansible wraps long warnings)."""
        return ' '.join(self.stderr.split())


def inventory(lab, tmp_path, options=None, env=None, fail_unparsed=False, extra_env=None, args=()):
    """ansible-inventory --list on a pmx source, with the .env ``env`` (default: the lab's), ``extra_env``
    added to its environment and ``args`` to its command line."""
    source = tmp_path / 'faults.pmx.yml'
    source.write_text(yaml.safe_dump(dict({'plugin': 'pmx.multicluster.pmx'}, **(options or {}))))
    extra = dict(extra_env or {})
    if fail_unparsed:
        extra['ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED'] = '1'
    proc = subprocess.run([str(BIN / 'ansible-inventory'), '-i', str(source), '--list'] + list(args),
                          env=ansible_env(env or lab.env_file, extra), capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL, check=False, cwd=str(tmp_path))
    capture(lab, 'inventory', proc.stdout, proc.stderr)
    return Inventory(proc)


def mcp(lab, calls, env=None, write=False, stderr_out=None, seconds_out=None, extra_env=None):
    """Start the installed MCP server, make ``calls`` [(tool, arguments)...]; returns their results in order.

    A call with ``confirm: True`` and no token goes through the confirmation gate as a user would
    (McpSession.confirmed: preview, then the call with its token). ``seconds_out``, a list, gets how long
    each call took; ``extra_env``: variables added to the server's environment.
    """
    extra = dict(extra_env or {})
    if write:
        extra['PMX_MCP_ALLOW_WRITE'] = '1'

    async def body(client):
        results = []
        for tool, arguments in calls:
            started = time.monotonic()
            if arguments.get('confirm') is True and 'confirmation_token' not in arguments:
                results.append(await client.confirmed(tool, **arguments))
            else:
                results.append(await client.call(tool, **arguments))
            if seconds_out is not None:
                seconds_out.append(time.monotonic() - started)
        return results

    results, texts, stderr = run_mcp(ansible_env(env or lab.env_file, extra), body)
    capture(lab, 'mcp', json.dumps(results, default=str), '\n'.join(texts), stderr)
    assert 'Traceback' not in stderr, stderr
    if stderr_out is not None:
        stderr_out.append(stderr)
    return results


# ------------------------------------------------------------------ what the fakes received

def writes(lab):
    """Every write request the lab's clusters recorded."""
    return [(name, r[0], r[1]) for name, c in lab.clusters.items() for r in c.pve.requests if r[0] in WRITES]


def recorded(pve, method, suffix):
    return [r for r in pve.requests if r[0] == method and r[1].endswith(suffix)]


class NetworkFault:
    """Stands in for a fake's random generator, so a network fault hits chosen requests only.

    fakepve draws one number per request to decide whether to drop (or hang) it, before it records the
    request: ``hit(method, path, n)`` (n: the how-manieth arrival of this method and path) decides, and
    ``arrived`` counts every request that reached the fake, dropped ones included.
    """

    def __init__(self, hit):
        self.hit = hit
        self.arrived = []

    def random(self):
        request = sys._getframe(1).f_locals.get('request')  # pylint: disable=protected-access
        key = (request.method, request.path) if request is not None else ('?', '?')
        self.arrived.append(key)
        return 0.0 if self.hit(key[0], key[1], self.arrived.count(key)) else 1.0

    @staticmethod
    def uniform(low, high):  # latency jitter: none
        return low

    def seed(self, *args):
        pass

    def count(self, method, suffix):
        return len([k for k in self.arrived if k[0] == method and k[1].endswith(suffix)])


def network_fault(lab, cluster, hit, hang_secs=None):
    """Drop (or, with hang_secs, hang) the requests of one cluster that ``hit`` chooses."""
    pve = lab.clusters[cluster].pve
    fault = NetworkFault(hit)

    def install():
        pve._random = fault  # pylint: disable=protected-access
        if hang_secs is None:
            pve.flaky_network(drop_rate=1.0)
        else:
            pve.flaky_network(hang_rate=1.0, hang_secs=hang_secs)
    lab.call(install)
    return fault


def clear_network(lab, cluster):
    lab.call(lambda: lab.clusters[cluster].pve.flaky_network())


def vms_named(lab, cluster, name):
    return [vm for vm in lab.clusters[cluster].pve.vms if vm.name == name]


def effective(vm, key):
    """A config value as of the next boot (a running VM keeps some changes pending)."""
    return str(vm.pending.get(key, vm.config.get(key)))
