"""`make docs` renders a page for every plugin, role and guide, and Sphinx printed no warning."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

DOCS_DIR = REPO / '.cache' / 'docs'
HTML = DOCS_DIR / 'build' / 'html'
sys.path.insert(0, str(REPO / 'tests' / 'tooling'))
import readme_guides  # noqa: E402  (tests/tooling is no package)


@pytest.fixture(scope='module')
def site():
    """The built site: `make docs` (a gate of `make test`) built it, or it is built now."""
    if not (HTML / 'index.html').is_file():
        venv = Path(sys.executable).parent.parent
        proc = subprocess.run(['make', '-s', 'docs', f'VENV={venv}'], cwd=REPO, capture_output=True, text=True,
                              timeout=900, check=False, env={**os.environ, 'MAKEFLAGS': ''})
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return HTML


def plugin_pages():
    """The page each plugin and role of the source tree must have, as antsibull-docs names them."""
    modules = sorted(p.stem for p in (REPO / 'plugins' / 'modules').glob('pmx_*.py'))
    inventories = sorted(p.stem for p in (REPO / 'plugins' / 'inventory').glob('*.py') if p.stem != '__init__')
    roles = sorted(p.parent.parent.name for p in (REPO / 'roles').glob('*/meta/argument_specs.yml'))
    return ([f'{m}_module.html' for m in modules] + [f'{i}_inventory.html' for i in inventories]
            + [f'{r}_role.html' for r in roles])


def test_every_module_inventory_plugin_and_role_has_a_page(site):
    pages = plugin_pages()
    assert 'pmx_vm_module.html' in pages and 'pmx_inventory.html' in pages and len(pages) >= 15
    missing = [page for page in pages if not (site / page).is_file()]
    assert not missing
    index = (site / 'index.html').read_text()
    assert all(f'href="{page}' in index for page in pages)
    vm = (site / 'pmx_vm_module.html').read_text()
    # Options of the shared fragments and the semantic markup are rendered, not left as raw text.
    assert 'ansible-option-title' in vm and 'token_secret' in vm and 'O(' not in vm and 'RV(' not in vm


def test_every_guide_is_rendered_and_linked_from_the_index(site):
    index = (site / 'index.html').read_text()
    for name, title in readme_guides.GUIDES:
        page = (site / 'docsite' / f'{name}.html').read_text()
        assert f'href="docsite/{name}.html"' in index, name
        assert title.split(' (')[0] in page, name


def test_the_build_printed_no_warning(site):
    log = DOCS_DIR / 'sphinx-warnings.log'
    assert log.is_file() and log.read_text() == ''


def test_the_guides_match_the_readme():
    assert readme_guides.main(['--check']) == 0
