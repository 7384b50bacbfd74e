"""Write the collection's guides (docs/docsite/rst/guide_*.rst, listed in docs/docsite/extra-docs.yml) from README.md.

README.md stays the one source of the guides: each guide is one of its `## ` sections, converted to
reStructuredText by pandoc (pypandoc-binary, pinned in requirements-test.txt). Links to files of the repository
become links to the repository named in galaxy.yml, since the docs site does not hold those files.

    python tests/tooling/readme_guides.py           # rewrite the guides and extra-docs.yml
    python tests/tooling/readme_guides.py --check   # exit 1 if they differ from README.md (make docs, make test)
"""

import argparse
import re
import sys
from pathlib import Path

import pypandoc
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCSITE = REPO / 'docs' / 'docsite'

# (file name, README section title): the sections written for users of the collection, in reading order.
# The others (the two commands, the lab, quality gates, layout, choices made) are about working on it.
GUIDES = (
    ('guide_install', 'Install and use'),
    ('guide_configuration', 'Configuration'),
    ('guide_routing', 'Routing'),
    ('guide_deploying', 'Deploying by name pattern'),
    ('guide_inventory', 'Inventory'),
    ('guide_many_guests', 'Many guests at once'),
    ('guide_moving', 'Moving guests'),
    ('guide_backups', 'Backups and disaster recovery'),
    ('guide_snapshots', 'Snapshots, disks and guest facts'),
    ('guide_reliability', 'Reliability and security'),
    ('guide_mcp', 'MCP server (AI assistants)'),
)
LABEL = 'ansible_collections.pmx.multicluster.docsite.{}'
HEADER = '..\n  Written by tests/tooling/readme_guides.py from the README.md section "{}": edit that.\n\n'


def readme_sections(text):
    """Map each `## ` section title of a Markdown text to its body (up to the next `## ` heading)."""
    sections = {}
    title = None
    lines = []
    in_code = False
    for line in text.splitlines():
        if line.startswith('```'):
            in_code = not in_code
        if not in_code and line.startswith('## '):
            if title is not None:
                sections[title] = '\n'.join(lines).strip('\n')
            title, lines = line[3:].strip(), []
        elif title is not None:
            lines.append(line)
    if title is not None:
        sections[title] = '\n'.join(lines).strip('\n')
    return sections


def repository_links(markdown, repository):
    """Point relative links (`[x](docs/fault-matrix.md)`) at the file in the repository."""
    return re.sub(r'\]\((?!https?://|#)([^)\s]+)\)', lambda m: f']({repository}/blob/main/{m.group(1)})', markdown)


def literal_dash_cells(rst):
    """Escape the cells of pandoc's grid tables that hold only `-` ("none"), which would become bullet lists.

    The backslash takes the place of a space, so that the column keeps its width."""
    return re.sub(r'(?m)(?<=\| )- (?= *\|)', lambda m: '\\-', rst)


def guide_rst(name, title, body, repository):
    """The reStructuredText of one guide: a label, its title, the section converted by pandoc."""
    rst = pypandoc.convert_text(repository_links(body, repository), 'rst', format='gfm',
                                extra_args=['--wrap=preserve', '--shift-heading-level-by=-1'])
    rst = literal_dash_cells(rst).strip()
    return f'{HEADER.format(title)}.. _{LABEL.format(name)}:\n\n{title}\n{"=" * len(title)}\n\n{rst}\n'


def expected_files():
    """Every file this script writes, path -> content."""
    galaxy = yaml.safe_load((REPO / 'galaxy.yml').read_text())
    sections = readme_sections((REPO / 'README.md').read_text())
    missing = [title for _, title in GUIDES if title not in sections]
    if missing:
        raise SystemExit(f'README.md has no section(s) {", ".join(missing)}; update GUIDES in {__file__}')
    files = {DOCSITE / 'rst' / f'{name}.rst': guide_rst(name, title, sections[title], galaxy['repository'])
             for name, title in GUIDES}
    extra_docs = {'sections': [{'title': 'Guides', 'toctree': [name for name, _ in GUIDES]}]}
    files[DOCSITE / 'extra-docs.yml'] = (
        '---\n# Written by tests/tooling/readme_guides.py with the guides from README.md.\n'
        + yaml.safe_dump(extra_docs, sort_keys=False, default_flow_style=False))
    return files


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--check', action='store_true', help='only check that the guides match README.md')
    args = parser.parse_args(argv)
    stale = []
    for path, content in expected_files().items():
        if path.exists() and path.read_text() == content:
            continue
        stale.append(path.relative_to(REPO))
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
    if args.check and stale:
        print('Out of date with README.md (run python tests/tooling/readme_guides.py): '
              + ', '.join(map(str, stale)), file=sys.stderr)
        return 1
    for path in stale:
        print(f'wrote {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
