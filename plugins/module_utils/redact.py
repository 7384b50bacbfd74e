# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Secrets out of text, in every form a secret can take in a message.

A token secret rarely reaches a message as it was typed: an HTTP library
quotes a bad header with ``repr`` (``b'PVEAPIToken=...=s3cret\\n'``), JSON
escapes it, a URL carries it percent-encoded, a value read from a file keeps
its trailing newline. ``secret_forms`` lists those forms; ``Scrubber``
replaces each of them by a mask. Every front end (the modules' no_log values,
the inventory's warnings and errors, the MCP server's answers and log) uses
this one list, so that no form is forgotten in one place.

Pure Python: no Ansible import.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
from typing import Iterable, List
from urllib.parse import quote, quote_plus

MASK = '********'


def secret_forms(secret: str) -> List[str]:
    """The forms a secret can take in text: raw, stripped, ``repr``- and JSON-escaped, URL-encoded.

    Longest first, so that a scrubber replaces a form before any form it contains.
    """
    if not secret:
        return []
    bases = dict.fromkeys([secret, secret.strip()])
    forms = dict.fromkeys(bases)
    for text in bases:
        if not text:
            continue
        forms.update(dict.fromkeys([
            repr(text)[1:-1],
            json.dumps(text)[1:-1],
            repr(text.encode('utf-8'))[2:-1],
            quote(text, safe=''),
            quote_plus(text, safe=''),
        ]))
    return sorted((form for form in forms if form), key=len, reverse=True)


class Scrubber:
    """Replaces every form of the given secrets by ``MASK``; cheap to call on text without them."""

    def __init__(self, secrets: Iterable[str] = ()):
        self.forms: List[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Also scrub these secrets."""
        forms = set(self.forms)
        for secret in secrets or ():
            forms.update(secret_forms(secret))
        self.forms = sorted(forms, key=len, reverse=True)

    def __call__(self, text):
        """``text`` with every form of every secret masked (non-text is returned as it is)."""
        if not isinstance(text, str) or not self.forms:
            return text
        for form in self.forms:
            if form in text:
                text = text.replace(form, MASK)
        return text

    def found(self, text: str) -> bool:
        """Whether any form of a secret is in ``text``."""
        return isinstance(text, str) and any(form in text for form in self.forms)
