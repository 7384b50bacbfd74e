"""The doc fragments and the static docs against the code they describe: one table of cluster settings
(config.SETTINGS), one shared guest argument spec, one action group."""

import re
from pathlib import Path

import pytest
import yaml

from ansible_collections.pmx.multicluster.plugins.doc_fragments.pmx import ModuleDocFragment
from ansible_collections.pmx.multicluster.plugins.module_utils import config
from ansible_collections.pmx.multicluster.plugins.module_utils.ansible_module import (
    fleet_argument_spec,
    pmx_argument_spec,
    pmx_guest_argument_spec,
)

REPO = Path(__file__).resolve().parents[4]
# Every module of the collection (each must be in the action group).
MODULES = tuple(sorted(p.stem for p in (REPO / 'plugins' / 'modules').glob('pmx_*.py')))
FLEET_MODULES = ('pmx_guests', 'pmx_guest_action')
GUEST_MODULES = ('pmx_vm', 'pmx_lxc')


def fragment(name='DOCUMENTATION'):
    return yaml.safe_load(getattr(ModuleDocFragment, name))


def documentation(path):
    text = (REPO / path).read_text()
    return yaml.safe_load(re.search(r"DOCUMENTATION = r'''\n(.*?)'''", text, re.S).group(1))


def spec_of(option):
    """An option's documented type, elements, default, choices and required, as an argument spec gives them."""
    out = {'type': option.get('type', 'str')}
    for key in ('elements', 'default', 'choices', 'required'):
        if key in option:
            out[key] = option[key]
    return out


def argspec_of(spec):
    return dict((k, v) for k, v in spec.items() if k not in ('no_log', 'fallback', 'options'))


# ------------------------------------------------------------------ the cluster settings

def test_the_settings_table_drives_the_code():
    keys = [s.key for s in config.SETTINGS]
    assert list(config.CLUSTER_SETTINGS) == keys == list(config.EXPLICIT_KEYS)
    assert set(config.LEGACY_SETTINGS) == set(keys) - {'region', 'tier', 'patterns'}
    assert config.STRIPPED == ('api_url', 'token_id', 'token_secret')
    options = pmx_argument_spec()['clusters']['options']
    assert list(options) == ['name'] + keys
    assert options['token_secret']['no_log'] is True
    assert [k for k, v in options.items() if v.get('no_log')] == [s.key for s in config.SETTINGS if s.secret]
    # Every setting is a ClusterConfig field of the same name.
    assert set(keys) - {'api_url'} <= set(config.ClusterConfig.__dataclass_fields__)


def test_the_doc_fragment_lists_exactly_the_settings():
    documented = fragment()['options']['clusters']['suboptions']
    spec = config.cluster_option_spec()
    assert list(documented) == list(spec)
    for key, option in documented.items():
        assert spec_of(option) == argspec_of(spec[key]), key


def test_env_example_lists_exactly_the_settings():
    """.env.example.multi sets every setting of its first cluster under its preferred name, names the other
    spellings, and lists the legacy variables."""
    text = (REPO / '.env.example.multi').read_text()
    production = re.findall(r'^PROXMOX_CLUSTER_production_([A-Z_]+)=', text, re.M)
    assert production == [s.suffixes[0] for s in config.SETTINGS]
    for setting in config.SETTINGS:
        for alias in setting.suffixes[1:]:
            assert 'PROXMOX_CLUSTER_production_%s ' % alias in text, alias
    for cluster in ('staging', 'DISASTER_RECOVERY'):
        listed = re.findall(r'^(?:# )?PROXMOX_CLUSTER_%s_([A-Z_]+)=' % cluster, text, re.M)
        assert listed == [s.suffixes[0] for s in config.SETTINGS], cluster
    legacy = re.findall(r'^# PROXMOX_([A-Z_]+)=', text, re.M)
    assert [s for s in legacy if s != 'ENV_FILE' and not s.startswith('CLUSTER_')] \
        == [config.CLUSTER_SETTINGS[key][0] for key in config.LEGACY_SETTINGS]


def test_the_inventory_takes_its_cluster_settings_from_the_fragment():
    doc = documentation('plugins/inventory/pmx.py')
    assert 'pmx.multicluster.pmx' in doc['extends_documentation_fragment']
    assert 'clusters' not in doc['options']


# ------------------------------------------------------------------ the guest options

def test_the_guest_fragment_documents_the_shared_guest_options():
    documented = fragment('GUEST')['options']
    spec = pmx_guest_argument_spec()
    assert list(documented) == list(spec)
    for key, option in documented.items():
        assert spec_of(option) == argspec_of(spec[key]), key


@pytest.mark.parametrize('module', GUEST_MODULES)
def test_guest_modules_take_the_shared_options_from_the_fragment(module):
    doc = documentation('plugins/modules/%s.py' % module)
    assert 'pmx.multicluster.pmx.guest' in doc['extends_documentation_fragment']
    assert not set(doc['options']) & set(pmx_guest_argument_spec())


# ------------------------------------------------------------------ the bounds of the many-guest modules

@pytest.mark.parametrize('module', FLEET_MODULES)
def test_the_fleet_fragment_documents_the_bounds(module):
    documented = fragment('FLEET')['options']
    spec = fleet_argument_spec()
    assert list(documented) == list(spec)
    for key, option in documented.items():
        assert spec_of(option) == argspec_of(spec[key]), key
    doc = documentation('plugins/modules/%s.py' % module)
    assert 'pmx.multicluster.pmx.fleet' in doc['extends_documentation_fragment']
    assert not set(doc['options']) & set(spec)


# ------------------------------------------------------------------ the action group

def test_the_action_group_fragment_matches_meta_runtime():
    group = yaml.safe_load((REPO / 'meta' / 'runtime.yml').read_text())['action_groups']['pmx']
    attribute = fragment('ACTIONGROUP_PMX')['attributes']['action_group']
    assert attribute['membership'] == ['pmx.multicluster.pmx'] and attribute['support'] == 'full'
    assert 'group/pmx.multicluster.pmx' in attribute['description']
    members = [m for m in MODULES
               if 'pmx.multicluster.pmx.actiongroup_pmx' in documentation('plugins/modules/%s.py' % m)
               ['extends_documentation_fragment']]
    assert sorted(members) == sorted(group) == sorted(MODULES)
