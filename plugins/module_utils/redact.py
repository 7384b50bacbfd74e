# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Secrets out of text, in every form a secret can take in a message.

A token secret rarely reaches a message as it was typed: an HTTP library
quotes a bad header with ``repr`` (``b'PVEAPIToken=...=s3cret\\n'``), JSON
escapes it, a URL carries it percent-encoded, a value read from a file keeps
its trailing newline, a secret with a line break in it may be printed one
line at a time. ``secret_forms`` lists those forms; ``Scrubber`` replaces each
of them by a mask. Every front end (the modules' no_log values,
the inventory's warnings and errors, the MCP server's answers and log) uses
this one list, so that no form is forgotten in one place.

Pure Python: no Ansible import.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re
from typing import Any, Iterable, List
from urllib.parse import quote, quote_plus

MASK = '********'
# A secret broken by control characters or spaces (a pasted line break, a tab) may reach text in pieces;
# pieces this long are masked too (shorter ones would mask ordinary words).
PIECE_MIN = 8
SEPARATORS = re.compile(r'[\x00-\x20\x7f]+')


def secret_forms(secret: str) -> List[str]:
    """The forms a secret can take in text: raw, stripped, ``repr``- and JSON-escaped, URL-encoded.

    A secret with control characters or spaces in it also has its pieces between them (at least
    PIECE_MIN characters long) as forms. Longest first, so that a scrubber replaces a form before
    any form it contains.
    """
    if not secret:
        return []
    pieces = [p for p in SEPARATORS.split(secret) if len(p) >= PIECE_MIN and p != secret.strip()]
    bases = dict.fromkeys([secret, secret.strip()] + pieces)
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

    def deep(self, value: Any) -> Any:
        """``value`` with every string in it scrubbed, through dicts (keys too), lists and tuples."""
        if not self.forms:
            return value
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return dict((self.deep(k), self.deep(v)) for k, v in value.items())
        if isinstance(value, list):
            return [self.deep(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self.deep(v) for v in value)
        return value

    def found(self, text: str) -> bool:
        """Whether any form of a secret is in ``text``."""
        return isinstance(text, str) and any(form in text for form in self.forms)
