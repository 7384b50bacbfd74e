"""Offline stand-in for the get-pip bootstrap script that ansible-test downloads.

Why it exists: ``ansible-test sanity --requirements`` creates a virtualenv per
sanity test and bootstraps pip in it with ``get-pip-<version>.py``, which it
downloads from ci-files.testing.ansible.com. A machine without internet access
cannot reach that host, and ansible-test stops with "Download failed ... can be
manually downloaded and saved to ~/.ansible/test/cache/get_pip_<version>.py".
ansible-test uses whatever file is already at that path, so ``make sanity``
copies this one there when nothing is there yet. It is only for offline
machines: a user with internet access never needs it.

Cache file name: ansible-test looks for
``~/.ansible/test/cache/get_pip_<pip version with '.' as '_'>.py``
(``bootstrap()`` in ``ansible_test/_util/target/setup/requirements.py``); the
pip version comes from ``get_venv_packages()`` in
``ansible_test/_internal/python_requirements.py``. For ansible-core 2.19 that
is pip 24.2, so the file is ``~/.ansible/test/cache/get_pip_24_2.py``. The
Makefile reads the version from the installed ansible-test, so a newer
ansible-core still gets the right name.

How it is called: with the new virtualenv's Python and get-pip's arguments,
e.g. ``--disable-pip-version-check pip==24.2 --no-setuptools --no-wheel``.
It installs the bundled pip with ensurepip, then runs ``pip install`` with
those arguments (pip's own index settings apply). ``--no-setuptools`` and
``--no-wheel`` are get-pip options that ``pip install`` does not know, so they
are dropped.
"""

import subprocess
import sys

GET_PIP_ONLY_OPTIONS = {"--no-setuptools", "--no-wheel"}


def main(argv: list[str]) -> int:
    """Bootstrap pip into the running interpreter, then install what get-pip would."""
    rc = subprocess.call([sys.executable, "-m", "ensurepip"])
    if rc != 0:
        return rc
    args = [arg for arg in argv if arg not in GET_PIP_ONLY_OPTIONS]
    return subprocess.call([sys.executable, "-m", "pip", "install", *args])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
