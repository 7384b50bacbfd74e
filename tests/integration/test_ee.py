"""execution-environment.yml builds an ansible-builder context offline; an EE that installs the collection finds its
requirements through meta/execution-environment.yml."""

import subprocess
import sys
from pathlib import Path

import yaml
from ansible_builder._target_scripts.introspect import process_collection

from conftest import REPO

BUILDER = Path(sys.executable).parent / 'ansible-builder'


def test_execution_environment_definition_creates_a_build_context(tmp_path):
    definition = REPO / 'execution-environment.yml'
    data = yaml.safe_load(definition.read_text())
    assert data['version'] == 3
    assert data['dependencies']['python'] == 'requirements.txt'
    assert data['dependencies']['system'] == 'bindep.txt'
    assert data['dependencies']['ansible_core']['package_pip'].startswith('ansible-core')
    # ansible-builder validates the version 3 schema and writes the context without any download.
    proc = subprocess.run([str(BUILDER), 'create', '-f', str(definition), '-c', str(tmp_path / 'ctx')],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    build = tmp_path / 'ctx' / '_build'
    assert (build / 'requirements.txt').read_text() == (REPO / 'requirements.txt').read_text()
    assert (build / 'bindep.txt').read_text() == (REPO / 'bindep.txt').read_text()
    dockerfile = (tmp_path / 'ctx' / 'Dockerfile').read_text()
    assert 'quay.io/centos/centos:stream9' in dockerfile and 'ansible-core>=2.19,<2.20' in dockerfile


def test_an_execution_environment_with_the_collection_finds_its_requirements():
    # What ansible-builder runs on every collection installed into an EE (paths relative to the collection root).
    python, system = process_collection(str(REPO))
    assert python == [line for line in (REPO / 'requirements.txt').read_text().splitlines() if line and line[0] != '#']
    assert system == ['python3 [platform:rpm platform:dpkg]']


def test_bindep_lists_only_what_the_collection_needs():
    lines = [line for line in (REPO / 'bindep.txt').read_text().splitlines() if line and not line.startswith('#')]
    assert lines == ['python3 [platform:rpm platform:dpkg]']
