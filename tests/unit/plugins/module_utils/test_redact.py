"""redact.secret_forms and Scrubber: every form a secret takes in text is masked, other text is left alone."""

import json
from urllib.parse import quote, quote_plus

import pytest

from ansible_collections.pmx.multicluster.plugins.module_utils.redact import MASK, Scrubber, secret_forms

UUID = '3f6c1a52-9b1e-4c1d-8f2a-6d3e5b7c9a10'
# A secret pasted with a line break and a tab in it, characters that every escaping changes, a final newline.
ODD = UUID + '\nJunk-after-the-break\t"quoted"/&?+% é\n'


def forms_of(secret):
    """Each form, built independently of redact.py."""
    return {
        'raw': secret,
        'stripped': secret.strip(),
        'repr': repr(secret)[1:-1],
        'repr-bytes': repr(secret.encode('utf-8'))[2:-1],
        'json': json.dumps(secret)[1:-1],
        'quote': quote(secret, safe=''),
        'quote_plus': quote_plus(secret, safe=''),
    }


@pytest.mark.parametrize('secret', [UUID, ODD, ' ' + UUID + '\n'], ids=['uuid', 'odd', 'padded'])
@pytest.mark.parametrize('form', ['raw', 'stripped', 'repr', 'repr-bytes', 'json', 'quote', 'quote_plus'])
def test_every_form_is_listed_and_masked(secret, form):
    text = forms_of(secret)[form]
    assert text in secret_forms(secret)
    scrub = Scrubber([secret])
    line = 'before <%s> after' % text
    assert scrub(line) == 'before <%s> after' % MASK
    assert scrub.found(line)


def test_the_forms_differ_where_escaping_changes_the_secret():
    forms = forms_of(ODD)
    assert len(set(forms.values())) == 7
    assert set(forms.values()) <= set(secret_forms(ODD))
    # A plain UUID looks the same in every form: one entry.
    assert secret_forms(UUID) == [UUID]


def test_pieces_of_a_broken_secret_are_forms_too():
    """Text may show a secret with a line break one line at a time."""
    forms = secret_forms(ODD)
    assert UUID in forms and 'Junk-after-the-break' in forms
    assert '"quoted"/&?+%' in forms and quote('"quoted"/&?+%', safe='') in forms
    assert 'é' not in forms  # shorter than PIECE_MIN: it would mask ordinary text
    assert Scrubber([ODD])('line 1: %s\nline 2: Junk-after-the-break' % UUID) == 'line 1: %s\nline 2: %s' % (MASK, MASK)


def test_longest_form_first():
    forms = secret_forms(ODD)
    assert forms == sorted(forms, key=len, reverse=True)
    # The whole raw secret is masked once, not piece by piece.
    assert Scrubber([ODD])('x%sx' % ODD) == 'x%sx' % MASK


def test_other_text_is_left_alone():
    scrub = Scrubber([ODD, UUID.replace('3f', '4f')])
    text = "cluster 'production' is unreachable: https://127.0.0.2:8006: connection refused; token root@pam!pmx"
    assert scrub(text) == text
    assert not scrub.found(text)
    assert scrub(None) is None and scrub(42) == 42
    assert Scrubber()(text) == text and not Scrubber().found(text)
    assert secret_forms('') == [] and secret_forms(None) == []


def test_deep_scrubs_strings_in_structures():
    scrub = Scrubber([UUID])
    value = {'errors': [{'cluster': 'production', 'error': 'header %r' % ('PVEAPIToken=a=' + UUID)}],
             UUID: (1, 'x ' + quote_plus(UUID)), 'count': 3, 'ok': True, 'none': None}
    assert scrub.deep(value) == {'errors': [{'cluster': 'production', 'error': "header 'PVEAPIToken=a=%s'" % MASK}],
                                 MASK: (1, 'x ' + MASK), 'count': 3, 'ok': True, 'none': None}
    assert Scrubber().deep(value) is value


def test_add_more_secrets():
    scrub = Scrubber()
    scrub.add([UUID])
    scrub.add([None, ''])
    scrub.add(['other-secret-value'])
    assert scrub('%s and other-secret-value' % UUID) == '%s and %s' % (MASK, MASK)
