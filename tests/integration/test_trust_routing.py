"""Routing that never falls back when it could not look, consistent names and values, defaults (issue 12).

Every case goes through the real front ends against the lab: a module in a play (ansible-playbook -vvv),
ansible-inventory and the installed MCP server through the official client. What the fakes received proves
that a refused write changed nothing. docs/fault-matrix.md lists the cases (section "Routing, names and
values").
"""

from conftest import (
    CHECK,
    CT,
    DEAD,
    INFO,
    MAY_FAIL,
    VM,
    env_file,
    failed_message,
    inventory,
    mcp,
    play,
    vms_named,
    writes,
)

TEMPLATE = 'debian-12-standard_12.7-1_amd64.tar.zst'


def requests_made(lab):
    return sum(len(c.pve.requests) for c in lab.clusters.values())


# ------------------------------------------------------------------ 1. never fall back when it could not look

def test_a_lookup_that_could_not_read_a_cluster_refuses_every_write(fresh_lab, tmp_path):
    """staging is down. A name no pattern matches (web-orphan lives in staging), a vmid without a cluster
    (777 is web-seven in production and stg-seven in staging): each write fails before changing anything, naming
    staging and saying to give cluster:. Today's fallbacks (a second guest on the default cluster, "absent" while it
    exists, deleting production's 777) do not happen. Reads answer from what they could read."""
    lab = fresh_lab
    lab.call(lab.clusters['staging'].pve.add_vm, 555, 'web-orphan', 'stg-pve2')
    lab.call(lab.clusters['staging'].pve.add_vm, 777, 'stg-seven', 'stg-pve1')
    lab.call(lab.clusters['production'].pve.add_vm, 777, 'web-seven', 'prod-pve1')
    env = env_file(lab, tmp_path, replace={'PROXMOX_CLUSTER_staging_API_URL': DEAD})
    before = writes(lab)
    result = play(lab, tmp_path, VM, [
        ('create', {'name': 'web-orphan', 'cores': 1, 'memory': 512}, MAY_FAIL),
        ('absent', {'name': 'web-orphan', 'state': 'absent'}, MAY_FAIL),
        ('by_vmid', {'vmid': 777, 'state': 'absent'}, MAY_FAIL),
        ('check', {'name': 'web-orphan', 'cores': 1, 'memory': 512}, dict(MAY_FAIL, **CHECK)),
        ('explicit', {'name': 'web-orphan', 'cluster': 'production', 'cores': 1, 'memory': 512}, CHECK),
        ('pattern', {'name': 'prod-web01', 'memory': 4096}),
        ('info', {'route': ['web-orphan', 'prod-web01']}, {}, INFO),
    ], env=env)
    assert result.rc == 0, result.output
    for step, what in (('create', "the guest named 'web-orphan'"), ('absent', "the guest named 'web-orphan'"),
                       ('by_vmid', 'the guest with vmid 777'), ('check', "the guest named 'web-orphan'")):
        msg = failed_message(result, step)
        assert ("cannot tell which cluster holds %s: cluster(s) 'staging' could not be read (cluster 'staging' is "
                "unreachable: %s: connection refused" % (what, DEAD)) in msg, msg
        assert 'Nothing was changed' in msg and 'Give cluster:' in msg
    assert "found in cluster 'production'" in failed_message(result, 'by_vmid')
    assert 'cluster: production' in failed_message(result, 'by_vmid')
    assert result['explicit']['changed'] is True and result['explicit']['route_reason'] == 'explicit'
    assert result['pattern']['changed'] is False and result['pattern']['cluster'] == 'production'
    routes = dict((r['name'], r) for r in result['info']['routes'])
    assert routes['web-orphan']['reason'] == 'default' and routes['web-orphan']['unreadable'][0]['cluster'] == 'staging'
    assert routes['prod-web01']['unreadable'] == []  # a pattern route needs no lookup
    assert writes(lab) == before
    assert lab.clusters['production'].pve.vm(777) is not None and vms_named(lab, 'production', 'web-orphan') == []

    inv = inventory(lab, tmp_path, env=env)
    assert inv.rc == 0 and "cluster 'staging' cannot be read" in inv.text
    assert 'web-seven' in inv.hosts and 'dr-web01' in inv.hosts and 'web-orphan' not in inv.hosts

    calls = [('route_guest', {'name': 'web-orphan'}), ('guest_details', {'name': 'web-orphan'}),
             ('guest_details', {'name': 'web-seven'}), ('start_guest', {'name': 'web-orphan'}),
             ('delete_guest', {'vmid': 777, 'confirm': True}), ('list_guests', {})]
    route, missing, found, start, delete, listing = mcp(lab, calls, env=env, write=True)
    assert route[0] is False and route[1]['cluster'] == 'production' and route[1]['reason'] == 'default'
    assert route[1]['unreadable'][0]['cluster'] == 'staging'
    assert "'staging' could not be read" in route[1]['write_refused']
    assert missing[0] is True and "it may be in cluster(s) 'staging', which could not be read" in missing[1]
    assert found[0] is False and found[1]['cluster'] == 'production' and found[1]['route_reason'] == 'located'
    assert found[1]['unreadable'][0]['cluster'] == 'staging'
    for call in (start, delete):
        assert call[0] is True and "cluster(s) 'staging' could not be read" in call[1] and 'Give cluster:' in call[1]
    assert [e['cluster'] for e in listing[1]['errors']] == ['staging']
    assert writes(lab) == before


def test_a_create_routed_by_pattern_checks_the_other_clusters(fresh_lab, tmp_path):
    """prod-moved01 was restored to disaster-recovery: creating it where its pattern points (production) is
    refused, naming where it lives and how to go on; the same with another case of the name. With
    disaster-recovery down, a create by pattern is refused too (it could not check). cluster: given explicitly
    skips the check, in both cases."""
    lab = fresh_lab
    lab.call(lab.clusters['disaster-recovery'].pve.add_vm, 4321, 'prod-moved01', 'dr-pve2')
    before = writes(lab)
    new = {'name': 'prod-moved01', 'cores': 1, 'memory': 512}
    result = play(lab, tmp_path, VM, [
        ('create', new, MAY_FAIL),
        ('upper', dict(new, name='PROD-MOVED01'), MAY_FAIL),
        ('check', new, dict(MAY_FAIL, **CHECK)),
        ('container', {'hostname': 'prod-moved01', 'ostemplate': 'local:vztmpl/' + TEMPLATE}, MAY_FAIL, CT),
    ])
    assert result.rc == 0, result.output
    for step in ('create', 'upper', 'check', 'container'):
        msg = failed_message(result, step)
        assert "does not exist in cluster 'production', where its name routes it (pattern 'prod-*')" in msg, msg
        assert "exists in cluster 'disaster-recovery' (VM vmid 4321 on node dr-pve2)" in msg
        assert 'moved or restored there. Nothing was changed' in msg
        assert 'cluster: disaster-recovery' in msg and 'cluster: production explicitly to create a second' in msg
    assert writes(lab) == before

    (route, create) = mcp(lab, [('route_guest', {'name': 'prod-moved01'}),
                                ('create_vm', {'name': 'prod-moved01', 'disk_gb': 0})], write=True)
    assert route[1]['cluster'] == 'production' and "exists in cluster 'disaster-recovery'" in route[1]['write_refused']
    assert create[0] is True and "exists in cluster 'disaster-recovery'" in create[1]
    assert writes(lab) == before

    down = env_file(lab, tmp_path, replace={'PROXMOX_CLUSTER_disaster-recovery_API_URL': DEAD})
    result = play(lab, tmp_path, VM, [('unchecked', {'name': 'prod-new01', 'cores': 1, 'memory': 512}, MAY_FAIL),
                                      ('explicit', dict(new, cluster='production'))], env=down)
    msg = failed_message(result, 'unchecked')
    assert ("cannot check that no other cluster already has a guest named 'prod-new01' before creating it in cluster "
            "'production' (pattern 'prod-*'): cluster(s) 'disaster-recovery' could not be read") in msg, msg
    assert 'Give cluster: production explicitly to create it without this check' in msg
    assert result['explicit']['changed'] is True and result['explicit']['cluster'] == 'production'
    assert len(vms_named(lab, 'production', 'prod-moved01')) == 1 and vms_named(lab, 'production', 'prod-new01') == []
    (create,) = mcp(lab, [('create_vm', {'name': 'prod-new01', 'disk_gb': 0})], env=down, write=True)
    assert create[0] is True and "'disaster-recovery' could not be read" in create[1]
    assert vms_named(lab, 'production', 'prod-new01') == []


# ------------------------------------------------------------------ 4. names, values and routing are consistent

def test_routing_and_lookup_ignore_case(lab, tmp_path):
    """STG-WEB42 goes to staging like stg-web42 (patterns, then the lookup within the cluster): PVE names are DNS
    names. An existing guest found under another case is the same guest (nothing to change)."""
    result = play(lab, tmp_path, VM, [('new', {'name': 'STG-WEB42', 'cores': 1, 'memory': 512}, CHECK),
                                      ('existing', {'name': 'STG-Web01', 'memory': 4096}),
                                      ('info', {'route': ['STG-WEB42', 'Dr-Web01']}, {}, INFO)])
    assert result.rc == 0, result.output
    assert (result['new']['cluster'], result['new']['route_reason'], result['new']['changed']) == \
        ('staging', "pattern 'stg-*'", True)
    assert (result['existing']['cluster'], result['existing']['vmid'], result['existing']['changed']) == \
        ('staging', 100, False)
    assert [(r['cluster'], r['reason']) for r in result['info']['routes']] == \
        [('staging', "pattern 'stg-*'"), ('disaster-recovery', "pattern 'dr-*'")]
    (route, details) = mcp(lab, [('route_guest', {'name': 'STG-WEB42'}), ('guest_details', {'name': 'DR-WEB01'})])
    assert route[1]['cluster'] == 'staging' and route[1]['reason'] == "pattern 'stg-*'"
    assert details[1]['cluster'] == 'disaster-recovery' and details[1]['guest']['vmid'] == 100


def test_names_with_surrounding_whitespace_are_refused_before_any_request(lab, tmp_path):
    """"prod-web01\\n" (a trailing newline from a template or a file) is not prod-web01: refused before any request."""
    before = requests_made(lab)
    result = play(lab, tmp_path, VM, [('newline', {'name': 'prod-web01\n', 'memory': 512}, MAY_FAIL),
                                      ('space', {'name': ' stg-web01', 'state': 'absent'}, MAY_FAIL)])
    for step in ('newline', 'space'):
        assert 'starts or ends with whitespace (a trailing newline?); nothing was changed' in \
            failed_message(result, step)
    (create, route) = mcp(lab, [('create_vm', {'name': 'stg-x01\n'}), ('route_guest', {'name': 'stg-web01 '})],
                          write=True)
    assert create[0] is True and route[0] is True and 'starts or ends with whitespace' in create[1] + route[1]
    assert requests_made(lab) == before


BAD_VALUES = [
    # (step, module, params, expected excerpt)
    ('net_bridge_only', VM, {'name': 'stg-web01', 'nets': {'net1': 'vmbr1'}},
     "net1: 'vmbr1' is not a valid Proxmox VE property string: 'vmbr1' is not key=value (for example "
     "virtio,bridge=vmbr0)"),
    ('net_bare_bridge', VM, {'name': 'stg-web01', 'nets': {'net1': 'virtio,vmbr1'}},
     "net1: 'virtio,vmbr1' is not a valid Proxmox VE property string: 'vmbr1' is not key=value"),
    ('net_no_model', VM, {'name': 'stg-web01', 'nets': {'net0': 'bridge=vmbr1'}},
     "net0: 'bridge=vmbr1' is not a valid Proxmox VE property string: it names no model first"),
    ('disk_bare_flag', VM, {'name': 'stg-web01', 'disks': {'scsi1': 'local-lvm:8,ssd'}},
     "scsi1: 'local-lvm:8,ssd' is not a valid Proxmox VE property string: 'ssd' is not key=value"),
    ('config_ipconfig', VM, {'name': 'stg-web01', 'config': {'ipconfig0': 'dhcp'}},
     "ipconfig0: 'dhcp' is not a valid Proxmox VE property string: 'dhcp' is not key=value"),
    ('ct_net_no_name', CT, {'hostname': 'stg-cache01', 'nets': {'net1': 'bridge=vmbr1'}},
     "net1: 'bridge=vmbr1' is not a valid Proxmox VE property string: it has no name= (for example "
     "name=eth0,bridge=vmbr0,ip=dhcp)"),
    ('ct_mount_no_path', CT, {'hostname': 'stg-cache01', 'mounts': {'mp0': 'local-lvm:8'}},
     "mp0: 'local-lvm:8' is not a valid Proxmox VE property string: a mount point needs mp=/path"),
]


def test_malformed_property_strings_are_refused_before_any_request(lab, tmp_path):
    """A net such as 'vmbr1' or 'virtio,vmbr1' used to compare as "no change"; now each malformed value in nets,
    disks, mounts or config is an error before any request."""
    before = requests_made(lab)
    result = play(lab, tmp_path, VM, [(step, params, MAY_FAIL, module) for step, module, params, dummy in BAD_VALUES])
    for step, dummy, dummy2, expected in BAD_VALUES:
        msg = failed_message(result, step)
        assert expected in msg and 'nothing was changed' in msg, (step, msg)
    assert requests_made(lab) == before


# ------------------------------------------------------------------ the inventory never loses a guest

def listed(lab):
    """How many guests the inventory lists by default: all but templates."""
    return sum(1 for c in lab.clusters.values() for g in c.guests() if not g.template)


def test_the_inventory_never_loses_a_guest_whose_name_is_another_ones_generated_name(fresh_lab, tmp_path):
    """prod-web01 exists in production and staging, so they become prod-web01.production / .staging. A guest
    of disaster-recovery is really called prod-web01.production: it keeps its name, production's guest gets
    prod-web01.production.100, and one really called that makes it prod-web01.production.100-2. Nobody is lost."""
    lab = fresh_lab
    lab.call(lab.clusters['staging'].pve.add_vm, 601, 'prod-web01', 'stg-pve1')
    lab.call(lab.clusters['disaster-recovery'].pve.add_vm, 602, 'prod-web01.production', 'dr-pve1')
    inv = inventory(lab, tmp_path)
    assert inv.rc == 0, inv.stderr
    hostvars = inv.data['_meta']['hostvars']
    assert len(hostvars) == listed(lab)
    where = dict((h, (v['pmx_cluster'], v['pmx_vmid'])) for h, v in hostvars.items()
                 if v['pmx_name'].startswith('prod-web01'))
    assert where == {'prod-web01.production': ('disaster-recovery', 602),
                     'prod-web01.production.100': ('production', 100),
                     'prod-web01.staging': ('staging', 601)}
    assert 'guest names used more than once' in inv.text
    assert 'prod-web01.production.100 (production vmid 100)' in inv.text

    lab.call(lab.clusters['disaster-recovery'].pve.add_vm, 603, 'prod-web01.production.100', 'dr-pve2')
    again = inventory(lab, tmp_path)
    names = dict((h, (v['pmx_cluster'], v['pmx_vmid'])) for h, v in again.data['_meta']['hostvars'].items())
    assert names['prod-web01.production.100'] == ('disaster-recovery', 603)
    assert names['prod-web01.production.100-2'] == ('production', 100)
    assert len(names) == listed(lab)


# ------------------------------------------------------------------ 7. the clusters' default storage and bridge

def test_default_storage_and_bridge_are_used_for_what_names_none(fresh_lab, tmp_path):
    """staging sets DEFAULT_STORAGE=local-lvm and DEFAULT_BRIDGE=vmbr1: a new disk given as a bare size, a new net
    without a bridge and a new container without a root file system use them (modules and MCP alike); a
    second run changes nothing. production sets none: a VM disk that names no storage is refused before any
    write, naming the variable."""
    lab = fresh_lab
    lab.call(lab.clusters['staging'].pve.store_file, 'local', TEMPLATE, 120 * 1024 ** 2, 'vztmpl')
    env = env_file(lab, tmp_path, extra=['PROXMOX_CLUSTER_staging_DEFAULT_STORAGE=local-lvm',
                                         'PROXMOX_CLUSTER_staging_DEFAULT_BRIDGE=vmbr1'])
    vm = {'name': 'stg-def01', 'cores': 1, 'memory': 512, 'disks': {'scsi0': '8'}, 'nets': {'net0': 'virtio'}}
    ct = {'hostname': 'stg-defct01', 'ostemplate': 'local:vztmpl/' + TEMPLATE, 'memory': 256,
          'nets': {'net0': 'name=eth0,ip=dhcp'}}
    result = play(lab, tmp_path, VM, [('preview', vm, CHECK), ('vm', vm), ('vm_again', vm),
                                      ('ct', ct, {}, CT), ('ct_again', ct, {}, CT),
                                      ('add_net', dict(vm, nets={'net0': 'virtio', 'net1': 'e1000'})),
                                      ('no_default', {'name': 'prod-def01', 'disks': {'scsi0': '8'}}, MAY_FAIL)],
                  env=env)
    assert result.rc == 0, result.output
    assert result['preview']['diff']['after']['scsi0'] == 'local-lvm:8'
    assert result['preview']['diff']['after']['net0'] == 'virtio,bridge=vmbr1'
    assert result['vm']['changed'] is True and result['vm_again']['changed'] is False
    assert result['ct']['changed'] is True and result['ct_again']['changed'] is False
    made = vms_named(lab, 'staging', 'stg-def01')[0]
    assert made.config['scsi0'].startswith('local-lvm:') and 'bridge=vmbr1' in made.config['net0']
    assert 'bridge=vmbr1' in made.config['net1'] and result['add_net']['changed'] is True
    container = next(c for c in lab.clusters['staging'].pve.cts if c.name == 'stg-defct01')
    assert container.config['rootfs'].startswith('local-lvm:') and 'size=4G' in container.config['rootfs']
    assert 'bridge=vmbr1' in container.config['net0']
    msg = failed_message(result, 'no_default')
    assert ("scsi0: the new disk '8' names no storage, and cluster 'production' has no default storage; give "
            "STORAGE:SIZE (for example local-lvm:8) or set PROXMOX_CLUSTER_production_DEFAULT_STORAGE") in msg
    assert vms_named(lab, 'production', 'prod-def01') == []

    (create,) = mcp(lab, [('create_vm', {'name': 'stg-def02', 'disk_gb': 4})], env=env, write=True)
    assert create[0] is False, create
    made = vms_named(lab, 'staging', 'stg-def02')[0]
    assert made.config['scsi0'].startswith('local-lvm:') and 'bridge=vmbr1' in made.config['net0']
