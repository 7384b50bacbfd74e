"""ClusterError.details(): the one structured form of a failure that every front end returns."""

import inspect
import json
import re
from pathlib import Path

import pytest
import yaml

from ansible_collections.pmx.multicluster.plugins.module_utils import errors
from ansible_collections.pmx.multicluster.plugins.module_utils.errors import (
    ApiError,
    ClusterError,
    ClusterNotFoundError,
    ConfigError,
    GuestLockedError,
    GuestNotFoundError,
    TaskError,
    TaskTimeoutError,
    UnreadableClustersError,
)
from ansible_collections.pmx.multicluster.plugins.module_utils.redact import MASK, Scrubber

REPO = Path(__file__).resolve().parents[4]
SECRET = '5ec2e700-0000-4bee-8f00-c0ffee000000'


@pytest.mark.parametrize('error,expected', [
    (ClusterError('plain'), {'type': 'ClusterError'}),
    (ClusterError('on a cluster', 'staging'), {'type': 'ClusterError', 'cluster': 'staging'}),
    (ConfigError('PROXMOX_CLUSTERS is empty'), {'type': 'ConfigError'}),
    (ClusterNotFoundError('stagin', ['staging'], 'staging'), {'type': 'ClusterNotFoundError'}),
    (GuestLockedError("VM 'x' is locked (backup)", 'production'),
     {'type': 'GuestLockedError', 'cluster': 'production'}),
    (ApiError('bad', 'dr', 400, {'memory': 'invalid'}), {'type': 'ApiError', 'cluster': 'dr', 'status': 400}),
    (GuestNotFoundError('no guest', 'dr', 404), {'type': 'GuestNotFoundError', 'cluster': 'dr', 'status': 404}),
    (TaskError('failed', 'production', 'UPID:pve1:1', 'command failed', ['line 1', 'TASK ERROR: x']),
     {'type': 'TaskError', 'cluster': 'production', 'upid': 'UPID:pve1:1', 'exitstatus': 'command failed',
      'log': ['line 1', 'TASK ERROR: x']}),
    # Unknown parts are left out, not given as null: a task still running has no exit status.
    (TaskTimeoutError('still running', 'production', 'UPID:pve1:2'),
     {'type': 'TaskTimeoutError', 'cluster': 'production', 'upid': 'UPID:pve1:2'}),
    (UnreadableClustersError('cannot tell', {'staging': 'refused'}), {'type': 'UnreadableClustersError'}),
])
def test_details(error, expected):
    details = error.details()
    assert details == expected
    assert list(details)[0] == 'type'
    assert json.loads(json.dumps(details)) == details  # JSON-safe: a module result, an MCP tool error


def test_details_copies_the_log():
    error = TaskError('failed', 'p', 'UPID:1', 'bad', ['a'])
    error.details()['log'].append('b')
    assert error.log == ['a']


def test_details_scrubbed_as_the_front_ends_scrub_them():
    """A secret in a log line or an exit status (never expected, always masked) is masked in every form."""
    error = TaskError('failed', 'p', 'UPID:1', 'token %s refused' % SECRET, ['PVEAPIToken=root@pam!t=%r' % SECRET])
    scrubbed = Scrubber([SECRET]).deep(error.details())
    assert SECRET not in json.dumps(scrubbed)
    assert scrubbed['exitstatus'] == 'token %s refused' % MASK and MASK in scrubbed['log'][0]


def error_classes():
    return sorted(name for name, value in inspect.getmembers(errors, inspect.isclass)
                  if issubclass(value, ClusterError))


def return_docs(module):
    text = (REPO / 'plugins' / 'modules' / (module + '.py')).read_text()
    return yaml.safe_load(re.search(r"RETURN = r'''\n(.*?)'''", text, re.S).group(1))


def test_the_error_return_value_is_documented_once_alike():
    """RETURN cannot use a doc fragment: every module carries one identical ``error`` entry, naming only real
    error types and exactly the fields details() may give."""
    modules = sorted(p.stem for p in (REPO / 'plugins' / 'modules').glob('pmx_*.py'))
    documented = [return_docs(m)['error'] for m in modules]
    assert len(documented) >= 3 and all(d == documented[0] for d in documented), modules
    assert set(documented[0]['contains']) == {'type'} | set(errors.DETAIL_FIELDS)
    named = re.findall(r'V\((\w+Error)\)', ' '.join(documented[0]['contains']['type']['description']))
    assert named and set(named) <= set(error_classes())
