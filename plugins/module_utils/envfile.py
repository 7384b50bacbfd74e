# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``.env`` file reader: python-dotenv's syntax, read fast, values expanded as ``load_dotenv`` expands them.

``read_env_file`` gives the ``PROXMOX_`` variables of a file (and warnings about it), ``scan_env_text`` the
bindings of a text, ``EnvText`` a text read line by line. Pure Python: no Ansible import.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import io
import os
import re
import stat
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Mapping as MappingABC
from itertools import accumulate
from typing import List, Mapping, Optional, Tuple

from ansible_collections.pmx.multicluster.plugins.module_utils.errors import ConfigError
from ansible_collections.pmx.multicluster.plugins.module_utils.settings import PREFIX

try:
    from dotenv.parser import parse_stream
    from dotenv.variables import parse_variables
    HAS_DOTENV = True
except ImportError:  # pragma: no cover - declared requirement; only reading a .env file needs it
    HAS_DOTENV = False

# python-dotenv's parser costs about 30 microseconds a line, which a .env file shared with other tools
# (thousands of lines) turns into most of a task's start-up. So the common lines are read here and
# python-dotenv reads every other one. A common line is printable ASCII: a blank line, a comment, or
# KEY=VALUE with a value unquoted, or quoted without a backslash or that quote inside. For those,
# python-dotenv's grammar reduces to the two expressions below (an unquoted value loses an inline
# " #comment" and trailing blanks; after a quoted one only a comment may follow).
# tests/unit/plugins/module_utils/test_config.py compares both readings on tricky lines.

_NEWLINE = re.compile(r'(\r\n|\n|\r)')
_BLANK_OR_COMMENT = re.compile(r'[ \t]*(?:#.*)?$')
_SIMPLE_BINDING = re.compile(
    r'[ \t]*(?:export[ \t]+)?([A-Za-z0-9_.-]+)=([ \t]*)'
    r'(?:"([\t !#-\[\]-~]*)"[ \t]*(?:#.*)?'          # "double-quoted"
    r"|'([\t -&(-\[\]-~]*)'[ \t]*(?:#.*)?"           # 'single-quoted'
    r'|([\t !#-&(-~]*))$')                           # unquoted
_INLINE_COMMENT = re.compile(r'\s+#.*')


def _dotenv_bindings(text: str):
    """python-dotenv's bindings of ``text``: (key, value or None, error, characters read) each."""
    for binding in parse_stream(io.StringIO(text)):
        yield binding.key, binding.value, binding.error, len(binding.original.string)


class EnvText:
    """A ``.env`` text as python-dotenv reads it: at most one binding a line, its value read when asked for.

    ``bad`` holds the numbers of the lines that are not KEY=VALUE. A line's index is its number - 1.
    """

    def __init__(self, text: str):
        text = text[1:] if text.startswith('\ufeff') else text
        if '\r' in text:
            parts = _NEWLINE.split(text)
            lines, ends = parts[0::2], [len(sep) for sep in parts[1::2]] + [0]
        else:
            lines = text.split('\n')
            ends = [1] * (len(lines) - 1) + [0]
        self.lines = lines
        self.matches = list(map(_SIMPLE_BINDING.match, lines))
        self.other = {}  # index -> (key, value) that python-dotenv read
        self.bad = []
        self.index = None
        self.expanded = {}
        offsets = None  # where each line starts, once a line needs python-dotenv
        resume = 0
        for index in [i for i, match in enumerate(self.matches) if match is None]:
            content = lines[index]
            if index < resume or _BLANK_OR_COMMENT.match(content):
                continue
            if offsets is None:
                offsets = [0] + list(accumulate(len(line) + end for line, end in zip(lines, ends)))
            pos = offsets[index]
            found = list(_dotenv_bindings(text[pos:offsets[index + 1]]))
            if any(error for dummy, dummy2, error, dummy3 in found) and ("'" in content or '"' in content):
                # A quote left open may close on a later line: python-dotenv reads one binding from here on.
                found = [next(_dotenv_bindings(text[pos:]))]
                resume = bisect_left(offsets, pos + found[0][3])
                for inside in range(index + 1, resume):
                    self.matches[inside] = None
            for key, value, error, dummy in found:
                if error:
                    self.bad.append(index + 1)
                elif key is not None:
                    self.other[index] = (key, value)

    def key(self, index: int) -> Optional[str]:
        """The key of the binding on line ``index`` (None: no binding there)."""
        match = self.matches[index]
        if match is not None:
            return match.group(1)
        return self.other.get(index, (None, None))[0]

    def raw(self, index: int) -> Optional[str]:
        """The value of the binding on line ``index``, not expanded (None for a key without ``=``)."""
        match = self.matches[index]
        if match is None:
            return self.other[index][1]
        dummy, blanks, double, single, rest = match.groups()
        if double is not None or single is not None:
            return single if double is None else double
        if not rest or (blanks and rest[0] == '#'):
            return ''
        return (_INLINE_COMMENT.sub('', rest) if '#' in rest else rest).rstrip()

    def value(self, index: int, environ: Mapping[str, str]) -> Optional[str]:
        """The value of the binding on line ``index`` with its ``${VAR}`` references resolved."""
        if index not in self.expanded:
            raw = self.raw(index)
            if raw is not None and '${' in raw:
                references = _References(self, environ, index)
                raw = ''.join(atom.resolve(references) for atom in parse_variables(raw))
            self.expanded[index] = raw
        return self.expanded[index]

    def where(self, prefix: str = '') -> List[int]:
        """The indexes of the lines with a binding whose key starts with ``prefix``."""
        candidates = [i for i, line in enumerate(self.lines) if prefix in line] if prefix else range(len(self.lines))
        keys = [(i, self.key(i)) for i in candidates]
        return [i for i, key in keys if key is not None and key.startswith(prefix)]

    def positions(self, key: str) -> List[int]:
        """The indexes of the lines that bind ``key``."""
        if self.index is None:
            self.index = {}
            for index in self.where():
                self.index.setdefault(self.key(index), []).append(index)
        return self.index.get(key, [])


def scan_env_text(text: str) -> Tuple[List[Tuple[str, Optional[str], int]], List[int]]:
    """The ``(key, value, line)`` bindings of a ``.env`` text as python-dotenv parses them (values not expanded;
    None for a key without ``=``) and the numbers of the lines that are not KEY=VALUE.

    A line number is the line the key is on (python-dotenv itself counts from a blank line before it).
    """
    env = EnvText(text)
    return [(env.key(i), env.raw(i), i + 1) for i in env.where()], env.bad


class _References(MappingABC):
    """What a ``${VAR}`` on one line of a ``.env`` text sees: the environment, else the bindings above it.

    That is python-dotenv's ``load_dotenv`` without ``override``. Values of the text are expanded when
    a reference asks for them, so only the variables that a PROXMOX_ value refers to are.
    """

    def __init__(self, text: EnvText, environ: Mapping[str, str], index: int):
        self.text = text
        self.environ = environ
        self.index = index

    def __getitem__(self, name):
        if name in self.environ:
            return self.environ[name]
        indexes = self.text.positions(name)
        earlier = bisect_left(indexes, self.index)
        if earlier:
            return self.text.value(indexes[earlier - 1], self.environ)
        raise KeyError(name)

    def __iter__(self):  # pragma: no cover - python-dotenv only calls get()
        return iter(())

    def __len__(self):  # pragma: no cover
        return 0


def read_env_file(path: str, environ: Optional[Mapping[str, str]] = None) -> Tuple['OrderedDict[str, str]', List[str]]:
    """The ``PROXMOX_`` variables of a ``.env`` file (python-dotenv syntax), expanded, and warnings about it.

    ``${VAR}`` references resolve from ``environ`` (``os.environ`` when None), else from the file's lines
    above. A line python-dotenv cannot parse, and a ``PROXMOX_`` key set twice with different values,
    are errors naming the file and the lines; neither a line nor a value is shown, since either may hold
    a secret. A file that other users can read gives a warning.
    """
    if not HAS_DOTENV:  # pragma: no cover - declared requirement
        raise ConfigError('reading %s needs the python-dotenv package: pip install python-dotenv' % path)
    environ = os.environ if environ is None else environ
    path = os.path.expanduser(path)
    warnings = []
    try:
        with open(path, encoding='utf-8') as handle:
            mode = os.fstat(handle.fileno()).st_mode
            text = EnvText(handle.read())
    except FileNotFoundError:
        raise ConfigError('the env file %s does not exist; check env_file / PROXMOX_ENV_FILE' % path)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError('cannot read the env file %s: %s' % (path, getattr(exc, 'strerror', None) or exc))
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        warnings.append('the env file %s holds secrets but other users can read it; run: chmod 600 %s'
                        % (path, path))
    if text.bad:
        raise ConfigError('the env file %s has line(s) that are not KEY=VALUE: line %s; '
                          'fix or comment them out with #' % (path, ', '.join(str(n) for n in text.bad)))
    ours = OrderedDict()
    for index in text.where(PREFIX):
        ours.setdefault(text.key(index), []).append(index)
    twice = ['%s (lines %s)' % (key, ', '.join(str(i + 1) for i in indexes))
             for key, indexes in ours.items() if len(set(text.raw(i) for i in indexes)) > 1]
    if twice:
        raise ConfigError('the env file %s sets %s more than once, with different values; keep one line of each'
                          % (path, '; '.join(twice)))
    try:
        values = OrderedDict((key, text.value(indexes[-1], environ)) for key, indexes in ours.items())
    except RecursionError:
        raise ConfigError('the env file %s has ${...} references nested too deeply to expand' % path)
    return OrderedDict((k, '' if v is None else v) for k, v in values.items()), warnings
