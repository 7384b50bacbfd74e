# pmx.multicluster: `make demo` runs the example playbook against a fake lab, `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
PYTEST_ARGS ?=
SANITY_ARGS ?=

BUILD_DIR := .cache/build
COLLECTIONS := $(CURDIR)/.collections
INSTALLED := $(COLLECTIONS)/ansible_collections/pmx/multicluster
STAMP := $(VENV)/.requirements-installed

# Ansible finds the collection exactly as a user installed it (ANSIBLE_COLLECTIONS_PATHS is the deprecated name).
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
export PATH := $(abspath $(VENV))/bin:$(PATH)

# Python version of the venv ("3.11"), for `make sanity`.
VENV_PY_VERSION = $(shell $(VENV)/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')

.PHONY: venv collection demo test matrix sanity lint ruff molecule changelog-lint bench clean
.PHONY: docs docs-lint galaxy-importer pre-commit

# Each gate of `make test` prints how long it took ("[gate sanity: 212s]"): CI has 90 minutes on 2 cores.
GATE = @start=$$(date +%s); trap 'echo "[gate $@: $$(( $$(date +%s) - start ))s]"' EXIT;

# Create the virtualenv with the test requirements (reinstalls only when a requirements file changes).
venv: $(STAMP)

$(STAMP): requirements.txt requirements-test.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "error: pmx.multicluster needs Python 3.11 or newer; '$(PYTHON)' is $$($(PYTHON) --version 2>/dev/null || echo 'not found')." >&2; \
	  echo "       Run e.g. 'make PYTHON=python3.11 ...'." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -r requirements-test.txt
	touch $@

# Build the collection tarball and install it into .collections, as a user would.
collection: venv
	rm -rf $(BUILD_DIR)
	$(VENV)/bin/ansible-galaxy collection build --force --output-path $(BUILD_DIR)
	$(VENV)/bin/ansible-galaxy collection install --force -p $(COLLECTIONS) $(BUILD_DIR)/pmx-multicluster-*.tar.gz

# Run playbooks/demo.yml against three fake Proxmox clusters.
demo: venv collection
	$(VENV)/bin/python lab/pmxlab.py run --dir .lab -- $(VENV)/bin/ansible-playbook playbooks/demo.yml

# The whole test suite: ruff, the version matrix (ansible-test sanity and units and a smoke test on every
# ansible-core), ansible-lint, the changelog fragments, the docs (lint, the rendered site), galaxy-importer,
# molecule, then pytest (unit + integration) against the installed collection. pytest stays last, so its
# summary line ends the output.
test: venv collection ruff matrix lint changelog-lint docs-lint docs galaxy-importer molecule
	$(GATE) $(VENV)/bin/python -m pytest tests $(PYTEST_ARGS)

# ansible-lint (profile production, offline; .ansible-lint) on the roles, playbooks and molecule scenarios.
lint: venv collection
	$(GATE) $(VENV)/bin/ansible-lint

# ruff (ruff.toml: pycodestyle, pyflakes and import order) on the Python of the whole tree.
ruff: venv
	$(GATE) $(VENV)/bin/ruff check .

# Check the changelog fragments in changelogs/fragments/ and changelogs/changelog.yaml.
changelog-lint: venv
	$(GATE) $(VENV)/bin/antsibull-changelog lint && \
	  $(VENV)/bin/antsibull-changelog lint-changelog-yaml changelogs/changelog.yaml

# Every molecule scenario (extensions/molecule/<role>/: default driver on localhost, no Docker) against a
# lab started for the run; `pmxlab.py run` sets PROXMOX_ENV_FILE. molecule finds ansible-* on PATH (exported above).
MOLECULE_LAB_HOST ?= 127.0.7.32
MOLECULE_ARGS ?= --all
molecule: venv collection
	$(GATE) $(VENV)/bin/python lab/pmxlab.py run --dir .cache/molecule-lab --first-host $(MOLECULE_LAB_HOST) -- \
	  $(VENV)/bin/molecule test $(MOLECULE_ARGS)

# ---- version matrix (issue 18: noxfile.py; README "Supported versions") -------------------------------------
# Every supported ansible-core on its Python, each leg in its own virtualenv under .nox/: build and install the
# collection, ansible-test sanity and units, tests/smoke/smoke.yml against a lab (127.0.$(MATRIX_LAB_NET).x).
# MATRIX_JOBS legs at once (2 cores: 2); each leg's output is printed in one piece when it ends, then its time.
# MATRIX_LEGS: some legs only (e.g. "2.19 2.21"). pip's cache (~/.cache/pip) is shared by the legs and kept.
MATRIX_JOBS ?= 2
MATRIX_LAB_NET ?= 8
MATRIX_LEGS ?=
export MATRIX_JOBS MATRIX_LAB_NET
matrix: venv
	$(GATE) $(VENV)/bin/nox -s matrix $(if $(MATRIX_LEGS),-- $(MATRIX_LEGS))

# In `make test` the leg of the venv's own ansible-core and Python runs sanity only: pytest runs all of the unit
# and integration tests with them right after.
test: export MATRIX_COVERED = $(shell $(VENV)/bin/python -c 'import sys; from ansible.release import __version__ as v; print("%s/%d.%d" % (".".join(v.split(".")[:2]), *sys.version_info[:2]))')

# ansible-test sanity with the venv's ansible-core only (the matrix runs it on every version). ansible-test's
# get-pip is replaced by the offline stand-in only when its address cannot be reached, or OFFLINE=1, and never
# over a file already in its cache (tests/tooling/seed_get_pip.py).
# ANSIBLE_TEST_CONTENT_ROOT stops ansible-test from using the repo's .git, where .collections is ignored.
sanity: venv collection
	@$(VENV)/bin/python tests/tooling/seed_get_pip.py $(VENV_PY_VERSION)
	$(GATE) cd $(INSTALLED) && ANSIBLE_TEST_CONTENT_ROOT=$(INSTALLED) ansible-test sanity --requirements --python $(VENV_PY_VERSION) $(SANITY_ARGS)
# ---- end of the version matrix ------------------------------------------------------------------------------

# Benchmark the inventory plugin against community.proxmox on a 3 x 500-guest lab with 20 ms latency (issue 6),
# then many guests deployed at once: pmx_guests against loops of pmx_vm and proxmox_kvm (issue 16).
# community.proxmox comes with the `ansible` package, installed into its own virtualenv to keep the test one small.
BENCH_VENV := .cache/bench-venv
BENCH_ANSIBLE ?= ansible==12.3.0
BENCH_ARGS ?=
FLEET_BENCH_ARGS ?=

$(BENCH_VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install '$(BENCH_ANSIBLE)' -r requirements.txt
	touch $@

bench: venv collection $(BENCH_VENV)/.installed
	@# Both run; make fails if either missed a target.
	$(VENV)/bin/python bench/inventory_bench.py --ansible-bin $(BENCH_VENV)/bin --collections $(COLLECTIONS) $(BENCH_ARGS); \
	inventory=$$?; \
	$(VENV)/bin/python bench/fleet_bench.py --ansible-bin $(BENCH_VENV)/bin --collections $(COLLECTIONS) $(FLEET_BENCH_ARGS); \
	fleet=$$?; test $$inventory -eq 0 && test $$fleet -eq 0

# --- Docs, pre-commit and Galaxy's import checks (issue 18) -------------------------------------------------
# antsibull-docs' linter on the source tree: every plugin's and role's DOCUMENTATION (schema, markup such as
# O(...) and M(...) pointing at what exists, the RST it renders to, checked by rstcheck) and docs/docsite/.
# It copies the tree's git-tracked and unignored files: the installed copy under .collections, ignored by git,
# would be copied empty.
docs-lint: venv
	$(GATE) $(VENV)/bin/antsibull-docs lint-collection-docs --plugin-docs --check-extra-docs-refs \
	  --validate-collection-refs all --disallow-unknown-collection-refs .

# The docs site (antsibull-docs + Sphinx) of the installed collection into $(DOCS_DIR)/build/html: every module,
# the inventory plugin, the roles (meta/argument_specs.yml) and the guides (docs/docsite/, written from
# README.md by tests/tooling/readme_guides.py). Offline: tests/tooling/docs_offline.py. Sphinx warnings fail the
# build (-W) and are kept in $(DOCS_DIR)/sphinx-warnings.log (tests/integration/test_docs.py reads it).
DOCS_DIR := .cache/docs
DOCS_TITLE := pmx.multicluster documentation
docs: venv collection
	$(GATE) $(VENV)/bin/python tests/tooling/readme_guides.py --check && \
	  rm -rf $(DOCS_DIR) && mkdir -p -m 700 $(DOCS_DIR) && \
	  $(VENV)/bin/antsibull-docs sphinx-init --use-current --squash-hierarchy --fail-on-error --dest-dir $(DOCS_DIR) \
	    --project pmx.multicluster --copyright 'pmx.multicluster contributors' --title '$(DOCS_TITLE)' \
	    pmx.multicluster > /dev/null && \
	  mkdir -p -m 700 $(DOCS_DIR)/rst && \
	  $(VENV)/bin/antsibull-docs --config-file $(DOCS_DIR)/antsibull-docs.cfg collection --use-current \
	    --squash-hierarchy --fail-on-error --cleanup everything --dest-dir $(DOCS_DIR)/rst pmx.multicluster && \
	  $(VENV)/bin/python tests/tooling/docs_offline.py $(DOCS_DIR) && \
	  $(VENV)/bin/sphinx-build -q -W --keep-going -j auto -b html -c $(DOCS_DIR) -w $(DOCS_DIR)/sphinx-warnings.log \
	    $(DOCS_DIR)/rst $(DOCS_DIR)/build/html && \
	  echo "Docs: $(DOCS_DIR)/build/html/index.html"

# galaxy-importer (what Galaxy runs on an upload) on the built tarball, in its own virtualenv: it needs
# attrs<24, older than what molecule and mcp take. Settings: tests/tooling/galaxy-importer.cfg. Any error or
# warning it prints fails the gate (Galaxy itself would accept a tarball with warnings), but the one warning
# that names the 2.16 sanity ignore file (tests/sanity/ignore-2.16.txt: one line, its reason on it; README
# "Supported versions"), which Galaxy prints for any ignore file.
GALAXY_IMPORTER_KNOWN := WARNING: Ignore files skip ansible-test sanity tests, found ignore-2.16.txt with 1 statement(s)
GALAXY_IMPORTER_VENV := .cache/galaxy-importer-venv
$(GALAXY_IMPORTER_VENV)/.installed: tests/tooling/requirements-galaxy-importer.txt
	$(PYTHON) -m venv $(GALAXY_IMPORTER_VENV)
	$(GALAXY_IMPORTER_VENV)/bin/python -m pip install -r tests/tooling/requirements-galaxy-importer.txt
	touch $@

galaxy-importer: collection $(GALAXY_IMPORTER_VENV)/.installed
	$(GATE) mkdir -p .cache/galaxy-importer && cd .cache/galaxy-importer && \
	  PATH=$(abspath $(GALAXY_IMPORTER_VENV))/bin:$$PATH GALAXY_IMPORTER_CONFIG=$(CURDIR)/tests/tooling/galaxy-importer.cfg \
	  $(abspath $(GALAXY_IMPORTER_VENV))/bin/python -m galaxy_importer.main $(CURDIR)/$(BUILD_DIR)/pmx-multicluster-*.tar.gz \
	  > importer.log 2>&1; status=$$?; grep -E '^(WARNING|ERROR)' importer.log; \
	  grep -E '^(WARNING|ERROR)' importer.log | grep -vxF '$(GALAXY_IMPORTER_KNOWN)' > unexpected.log; \
	  grep -q 'Importer processing completed successfully' importer.log && test $$status -eq 0 && \
	  test ! -s unexpected.log && echo "galaxy-importer: accepted ($(CURDIR)/.cache/galaxy-importer/importer.log)"

# pre-commit's hooks (.pre-commit-config.yaml) on every file, with the tools of the venv.
pre-commit: venv collection
	$(GATE) $(VENV)/bin/pre-commit run --all-files
# --- end of docs, pre-commit and Galaxy's import checks -----------------------------------------------------

# Remove the virtualenv, the built and installed collection, the lab and test output.
clean:
	rm -rf $(VENV) .cache .collections .lab .pytest_cache tests/output .nox
