"""Put the get-pip stand-in (get_pip.py) into ansible-test's cache, only where it is needed.

Run with the Python that has the ansible-test to be used (each ansible-core names its get-pip file after the pip
version it bootstraps: get_pip_24_2.py for 2.19) and the Python version the sanity tests run on::

    python tests/tooling/seed_get_pip.py 3.11

- A file already at the cache path is never replaced (a real get-pip that ansible-test downloaded, or a
  stand-in seeded earlier).
- ``OFFLINE=1``: the stand-in is seeded without asking the network; ``OFFLINE=0``: never seeded.
- Otherwise the address ansible-test downloads get-pip from is probed (HTTPS, a few seconds): the stand-in is
  seeded only when it cannot be reached. An earlier stand-in is removed once the address answers again, so
  ansible-test fetches the real one.
"""

import filecmp
import os
import re
import shutil
import sys
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

STAND_IN = Path(__file__).resolve().parent / 'get_pip.py'
# As in ansible_test/_util/target/setup/requirements.py (bootstrap()), read from there when it says otherwise.
URL = 'https://ci-files.testing.ansible.com/ansible-test/get-pip-%s.py'
CACHE = '~/.ansible/test/cache/get_pip_%s.py'
PROBE_SECS = 5


def ansible_test_get_pip(python_version):
    """(download URL, cache path) of the get-pip script this ansible-test bootstraps pip with, or None."""
    import ansible_test
    from ansible_test._internal.python_requirements import get_venv_packages

    pip_version = get_venv_packages(SimpleNamespace(version=python_version)).get('pip')
    setup = Path(ansible_test.__file__).parent / '_util' / 'target' / 'setup' / 'requirements.py'
    source = setup.read_text() if setup.is_file() else ''
    if not pip_version or 'get-pip' not in source:
        return None
    url = re.search(r"'(https://[^']*get-pip-%s\.py)'", source)
    cache = re.search(r"'(~/[^']*get_pip_%s\.py)'", source)
    url, cache = (url.group(1) if url else URL), (cache.group(1) if cache else CACHE)
    return url % pip_version, Path(os.path.expanduser(cache % pip_version.replace('.', '_')))


def reachable(url):
    """True when the server behind ``url`` answers HTTPS at all (an HTTP error status is an answer)."""
    try:
        urllib.request.urlopen(urllib.request.Request(url, method='HEAD'), timeout=PROBE_SECS).close()
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False
    return True


def main(argv):
    if len(argv) != 1:
        print('usage: seed_get_pip.py PYTHON_VERSION (e.g. 3.11)', file=sys.stderr)
        return 2
    found = ansible_test_get_pip(argv[0])
    if found is None:
        print('get-pip: this ansible-test does not download get-pip; nothing to seed')
        return 0
    url, cache = found
    offline = os.environ.get('OFFLINE', '')
    if offline not in ('', '0', '1'):
        print('error: OFFLINE must be 1 (no network), 0 (network) or unset (probed), not %r' % offline,
              file=sys.stderr)
        return 2
    seeded_before = cache.is_file() and filecmp.cmp(cache, STAND_IN, shallow=False)
    online = offline == '0' or (offline == '' and reachable(url))
    if online:
        why = 'OFFLINE=0' if offline == '0' else '%s answers' % url
        if seeded_before:
            cache.unlink()
            print('get-pip: %s; removed the offline stand-in %s' % (why, cache))
        else:
            print('get-pip: %s; ansible-test downloads it (or uses its cache)' % why)
        return 0
    if cache.exists():
        print('get-pip: offline; %s is already there, left as it is' % cache)
        return 0
    cache.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(STAND_IN, cache)
    why = 'OFFLINE=1' if offline == '1' else '%s cannot be reached' % url
    print('get-pip: %s; installed the offline stand-in as %s' % (why, cache))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
