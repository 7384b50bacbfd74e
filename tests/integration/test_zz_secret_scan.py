"""The session-wide secret scan: runs after every other integration test (its file name sorts last).

Everything the shared front-end helpers of conftest.py captured in this session (play stdout and stderr at
-vvv, registered results, inventory JSON and stderr, MCP results and the server's log) is searched for every
token secret of every lab and every secret a test registered, in each form a secret can take in text: raw,
stripped, ``repr``- and JSON-escaped, URL-encoded (``redact.secret_forms``, the list the front ends scrub).
"""

import pytest

from conftest import CAPTURED


def test_no_secret_in_any_captured_output():
    if not CAPTURED:
        pytest.skip('run the integration tests with it: this scan reads what the other cases captured')
    from ansible_collections.pmx.multicluster.plugins.module_utils.redact import secret_forms
    leaks = []
    for what, text, secrets in CAPTURED:
        for secret in secrets:
            leaks.extend((what, form) for form in secret_forms(secret) if form in text)
    assert leaks == []
    # The scan saw verbose output: -vvv plays print their module arguments' keys and the task results.
    assert any('PLAYBOOK:' in text for what, text, dummy in CAPTURED if what == 'play')
