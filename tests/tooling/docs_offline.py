"""Make the Sphinx project of `antsibull-docs sphinx-init` build offline, always the same way (make docs).

sphinx-init's conf.py fetches the inventories (objects.inv) of docs.python.org, Jinja and the Ansible docs, which
fails without a network and then turns every link to the Ansible docs into a warning. The collection's pages
only link to the Ansible docs, to a few labels and to ansible-core's configuration variables. This script writes
a local inventory of exactly those targets, found in the generated RST, with their docs.ansible.com addresses,
and points conf.py at it only: the links work in the HTML and the build reads nothing from the network.

    python tests/tooling/docs_offline.py DOCS_DIR     # DOCS_DIR holds conf.py and rst/
"""

import re
import sys
import zlib
from pathlib import Path

ANSIBLE_DOCS = 'https://docs.ansible.com/projects/ansible/devel/'
INVENTORY = 'ansible_devel.inv'
# Labels of the Ansible docs that antsibull-docs' page templates link to, and their pages.
LABELS = {
    'ansible_configuration_settings': ('reference_appendices/config.html#ansible-configuration-settings',
                                       'Ansible Configuration Settings'),
    'common_return_values': ('reference_appendices/common_return_values.html#common-return-values',
                             'Return Values'),
}
# ansible-core's settings (ANSIBLE_*) are documented on the configuration page, one anchor per variable.
ENVVAR_PAGE = 'reference_appendices/config.html#envvar-{}'


def referenced_targets(rst_dir):
    """The labels of LABELS and the ANSIBLE_* variables (E() in a DOCUMENTATION) that the generated RST refers to."""
    text = '\n'.join(path.read_text() for path in Path(rst_dir).rglob('*.rst'))
    labels = sorted(label for label in LABELS if re.search(rf':ref:`(?:[^`<]*<)?{label}>?`', text))
    # antsibull-docs escapes the underscores (ANSIBLE\_CACHE\_PLUGIN).
    found = re.findall(r':(?:envvar|ansenvvarref):`(ANSIBLE[A-Z0-9_\\]+)`', text)
    envvars = sorted({name.replace('\\', '') for name in found})
    return labels, envvars


def inventory_bytes(labels, envvars):
    """A Sphinx inventory (version 2) with these labels and environment variables."""
    lines = [f'{label} std:label -1 {LABELS[label][0]} {LABELS[label][1]}' for label in labels]
    lines += [f'{name} std:envvar 1 {ENVVAR_PAGE.format(name)} -' for name in envvars]
    header = ('# Sphinx inventory version 2\n# Project: Ansible\n# Version: devel\n'
              '# The remainder of this file is compressed using zlib.\n')
    return header.encode() + zlib.compress(('\n'.join(lines) + '\n').encode())


def main(argv):
    docs_dir = Path(argv[1])
    labels, envvars = referenced_targets(docs_dir / 'rst')
    (docs_dir / INVENTORY).write_bytes(inventory_bytes(labels, envvars))
    with (docs_dir / 'conf.py').open('a') as conf:
        conf.write('\n# tests/tooling/docs_offline.py: Ansible docs targets the pages link to, local.\n'
                   f'intersphinx_mapping = {{"ansible_devel": ({ANSIBLE_DOCS!r}, "../{INVENTORY}")}}\n')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
