"""The planner as a table: (state, request, the guest as it is) -> steps, before/after, status. No lab, no I/O."""

import time

import pytest

from ansible_collections.pmx.multicluster.plugins.module_utils.errors import (
    GuestConflictError,
    GuestNotFoundError,
    NodeOfflineError,
)
from ansible_collections.pmx.multicluster.plugins.module_utils.guests.planner import (
    ClusterDefaults,
    Current,
    Step,
    plan_guest,
)
from ansible_collections.pmx.multicluster.plugins.module_utils.guests.spec import GuestSpec
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.kinds import LXC, QEMU

NODES = [
    {'type': 'node', 'node': 'n1', 'status': 'online', 'mem': 6, 'maxmem': 8},
    {'type': 'node', 'node': 'n2', 'status': 'online', 'mem': 2, 'maxmem': 8},
    {'type': 'node', 'node': 'n3', 'status': 'offline'},
]
TEMPLATE = {'type': 'qemu', 'vmid': 9000, 'name': 'tpl', 'node': 'n2', 'template': 1, 'status': 'stopped'}
OFFLINE_TEMPLATE = {'type': 'qemu', 'vmid': 9001, 'name': 'tpl-off', 'node': 'n3', 'template': 1}
RESOURCES = NODES + [TEMPLATE, OFFLINE_TEMPLATE]
CONFIG = {'memory': '4096', 'cores': 2, 'scsi0': 'local-lvm:vm-100-disk-0,size=32G',
          'net0': 'virtio=BC:24:11:00:00:64,bridge=vmbr0', 'name': 'web'}


def vm(status='running', template=False, node='n1', **extra):
    """The guest as it is: its /cluster/resources entry and its (next boot) config."""
    entry = dict({'type': 'qemu', 'vmid': 100, 'name': 'web', 'node': node, 'status': status,
                  'template': 1 if template else 0}, **extra)
    return Current(guest=entry, config=dict(CONFIG), effective=dict(CONFIG), pending=[])


def pending(current, *keys):
    current.pending = list(keys)
    return current


CT = Current(guest={'type': 'lxc', 'vmid': 104, 'name': 'ct', 'node': 'n1', 'status': 'stopped'},
             config={'hostname': 'ct', 'unprivileged': 1, 'memory': 512},
             effective={'hostname': 'ct', 'unprivileged': 1, 'memory': 512})
CT_DISK = Current(guest=dict(CT.guest), config={'hostname': 'ct', 'rootfs': 'local-lvm:subvol-104-disk-0,size=8G'},
                  effective={'hostname': 'ct', 'rootfs': 'local-lvm:subvol-104-disk-0,size=8G'})
NEW = Current()


def running(current):
    return Current(guest=dict(current.guest, status='running'), config=current.config, effective=current.effective)
OSTEMPLATE = 'local:vztmpl/debian.tar.zst'

# (id, kind, state, request (GuestSpec arguments), the guest as it is, what the plan must be:
#  actions, changed, status; or the error raised)
ROWS = [
    # ---- a guest that does not exist
    ('present-creates', QEMU, 'present', dict(name='web', config={'memory': 512}), NEW,
     dict(actions=['create'], changed=True, status='stopped', node=('n2', 'most free memory'))),
    ('present-with-nothing-creates-an-empty-one', QEMU, 'present', dict(name='web'), NEW,
     dict(actions=['create'], changed=True)),
    ('started-with-nothing-to-create-from', QEMU, 'started', dict(name='web'), NEW, GuestNotFoundError),
    ('started-creates-then-starts', QEMU, 'started', dict(name='web', config={'memory': 512}), NEW,
     dict(actions=['create', 'start'], status='running', before={'status': 'stopped'})),
    ('restarted-creates-then-starts', QEMU, 'restarted', dict(name='web', config={'memory': 512}), NEW,
     dict(actions=['create', 'start'], status='running')),
    ('stopped-creates-only', QEMU, 'stopped', dict(name='web', config={'memory': 512}), NEW,
     dict(actions=['create'], status='stopped')),
    ('template-creates-then-converts', QEMU, 'template', dict(name='web', config={'memory': 512}), NEW,
     dict(actions=['create', 'template'], template=True, after_has={'template': True})),
    ('absent-missing-is-nothing', QEMU, 'absent', dict(name='web'), NEW,
     dict(actions=[], changed=False, status='absent')),
    ('clone-by-name', QEMU, 'present', dict(name='web', clone='tpl', config={'cores': 4}), NEW,
     dict(actions=['clone', 'update'], node=('n2', 'clone source node'), clone_source=9000)),
    ('clone-by-vmid-to-another-node', QEMU, 'started', dict(name='web', clone='9000', node='n1'), NEW,
     dict(actions=['clone', 'update', 'start'], node=('n1', 'explicit'), step_params={'target': 'n1'})),
    ('clone-source-missing', QEMU, 'present', dict(name='web', clone='nope'), NEW, GuestNotFoundError),
    ('clone-source-on-an-offline-node', QEMU, 'present', dict(name='web', clone='tpl-off'), NEW, NodeOfflineError),
    ('explicit-node-offline', QEMU, 'present', dict(name='web', node='n3', config={'memory': 512}), NEW,
     NodeOfflineError),
    ('explicit-node-unknown', QEMU, 'present', dict(name='web', node='n9', config={'memory': 512}), NEW,
     GuestConflictError),
    ('cluster-default-node', QEMU, 'present', dict(name='web', config={'memory': 512}), NEW,
     dict(actions=['create'], node=('n1', 'cluster default node'), defaults=ClusterDefaults(node='n1'))),
    ('default-storage-and-bridge', QEMU, 'present', dict(name='web', config={'scsi0': '8', 'net0': 'virtio'}), NEW,
     dict(actions=['create'], after_has={'scsi0': 'zfs:8', 'net0': 'virtio,bridge=vmbr9'},
          defaults=ClusterDefaults(storage='zfs', bridge='vmbr9'))),
    ('container-needs-an-ostemplate', LXC, 'present', dict(name='ct2', config={'memory': 512}), NEW,
     GuestConflictError),
    ('container-gets-a-root-fs-on-the-default-storage', LXC, 'present',
     dict(name='ct2', config={'ostemplate': OSTEMPLATE}), NEW,
     dict(actions=['create'], after_has={'rootfs': 'zfs:4'}, defaults=ClusterDefaults(storage='zfs'))),
    # ---- a guest that exists
    ('present-nothing-to-change', QEMU, 'present', dict(name='web', config={'memory': 4096, 'cores': 2}), vm(),
     dict(actions=[], changed=False, status='running', before={}, after={})),
    ('present-updates-what-differs', QEMU, 'present', dict(name='web', config={'memory': 8192, 'cores': 2}), vm(),
     dict(actions=['update'], before={'memory': '4096'}, after={'memory': 8192}, step_params={'memory': 8192})),
    ('update-false-changes-nothing', QEMU, 'present', dict(name='web', config={'memory': 8192}, update=False), vm(),
     dict(actions=[], changed=False)),
    # ---- disks: grow, never shrink; move only with move_disks; detach and remove explicitly
    ('a-larger-disk-grows', QEMU, 'present', dict(name='web', config={'scsi0': 'local-lvm:64'}), vm(),
     dict(actions=['resize'], step_params={'disk': 'scsi0', 'size': '64G'},
          before={'scsi0': 'local-lvm:vm-100-disk-0,size=32G'}, after={'scsi0': 'local-lvm:vm-100-disk-0,size=64G'})),
    ('a-named-volume-with-a-larger-size-grows', QEMU, 'present',
     dict(name='web', config={'scsi0': 'local-lvm:vm-100-disk-0,size=40G'}), vm(),
     dict(actions=['resize'], step_params={'disk': 'scsi0', 'size': '40G'})),
    ('a-smaller-disk-is-refused', QEMU, 'present', dict(name='web', config={'scsi0': 'local-lvm:16'}), vm(),
     GuestConflictError),
    ('another-storage-is-a-warning', QEMU, 'present', dict(name='web', config={'scsi0': 'ceph:32'}), vm(),
     dict(actions=[], warning='is on storage local-lvm, not ceph (it is moved only with move_disks: true)')),
    ('another-storage-moves-with-move-disks', QEMU, 'present',
     dict(name='web', config={'scsi0': 'ceph:40'}, move_disks=True, delete_moved_source=True), vm(),
     dict(actions=['resize', 'move_disk'], after={'scsi0': 'ceph:vm-100-disk-0,size=40G'})),
    ('options-go-onto-the-current-volume', QEMU, 'present', dict(name='web', config={'scsi0': 'local-lvm:32,ssd=1'}),
     vm(), dict(actions=['update'], step_params={'changes': {'scsi0': 'local-lvm:vm-100-disk-0,size=32G,ssd=1'}})),
    ('a-size-alone-names-the-current-volume', QEMU, 'present', dict(name='web', config={'scsi0': 'size=40G,ssd=1'}),
     vm(), dict(actions=['update', 'resize'],
                step_params={'changes': {'scsi0': 'local-lvm:vm-100-disk-0,size=32G,ssd=1'}})),
    ('detached-keeps-the-volume', QEMU, 'present', dict(name='web', config={'scsi0': 'detached'}), vm(),
     dict(actions=['detach'], step_params={'disk': 'scsi0', 'remove': False}, after={'scsi0': None})),
    ('absent-removes-the-volume', QEMU, 'present', dict(name='web', config={'scsi0': 'absent'}), vm(),
     dict(actions=['detach'], step_params={'disk': 'scsi0', 'remove': True})),
    ('a-missing-disk-to-detach-is-nothing', QEMU, 'present', dict(name='web', config={'scsi5': 'absent'}), vm(),
     dict(actions=[], changed=False)),
    ('a-new-guest-ignores-disks-to-detach', QEMU, 'present', dict(name='web', config={'scsi1': 'absent'}), NEW,
     dict(actions=['create'])),
    ('rootfs-cannot-be-removed', LXC, 'present', dict(name='ct', config={'rootfs': 'absent'}), CT_DISK,
     GuestConflictError),
    ('a-running-container-is-not-moved', LXC, 'present', dict(name='ct', config={'rootfs': 'zfs:8'},
                                                              move_disks=True), running(CT_DISK), GuestConflictError),
    ('a-stopped-container-is-moved', LXC, 'present', dict(name='ct', config={'rootfs': 'zfs:8'}, move_disks=True),
     CT_DISK, dict(actions=['move_disk'], step_params={'disk': 'rootfs', 'storage': 'zfs', 'delete_source': False})),
    ('a-fixed-key-is-a-warning', LXC, 'present', dict(name='ct', config={'unprivileged': False}), CT,
     dict(actions=[], warning='unprivileged is 1 and cannot be changed after creation')),
    ('started-starts-a-stopped-one', QEMU, 'started', dict(name='web'), vm('stopped'),
     dict(actions=['start'], before={'status': 'stopped'}, after={'status': 'running'}, status='running')),
    ('started-running-is-nothing', QEMU, 'started', dict(name='web'), vm(), dict(actions=[], changed=False)),
    ('started-a-template', QEMU, 'started', dict(name='web'), vm('stopped', template=True), GuestConflictError),
    ('stopped-shuts-down', QEMU, 'stopped', dict(name='web', force=True), vm(),
     dict(actions=['shutdown'], after={'status': 'stopped'}, step_params={'force': True})),
    ('stopped-hard', QEMU, 'stopped', dict(name='web', hard_stop=True), vm(), dict(actions=['stop'])),
    ('stopped-already', QEMU, 'stopped', dict(name='web'), vm('stopped'), dict(actions=[], changed=False)),
    ('restarted-reboots-a-running-one', QEMU, 'restarted', dict(name='web'), vm(),
     dict(actions=['reboot'], before={'status': 'running'}, after={'status': 'running'})),
    ('restarted-starts-a-stopped-one', QEMU, 'restarted', dict(name='web'), vm('stopped'),
     dict(actions=['start'], status='running')),
    ('restarted-updates-first', QEMU, 'restarted', dict(name='web', config={'cores': 4}), vm(),
     dict(actions=['update', 'reboot'])),
    ('template-stops-then-converts', QEMU, 'template', dict(name='web'), vm(),
     dict(actions=['shutdown', 'template'], status='stopped', template=True)),
    ('template-of-a-stopped-one', QEMU, 'template', dict(name='web'), vm('stopped'), dict(actions=['template'])),
    ('template-already', QEMU, 'template', dict(name='web'), vm('stopped', template=True),
     dict(actions=[], changed=False)),
    ('absent-stops-then-deletes', QEMU, 'absent', dict(name='web'), vm(),
     dict(actions=['stop', 'delete'], status='absent', after={}, before_has={'memory': '4096'})),
    ('absent-of-a-stopped-one', QEMU, 'absent', dict(name='web', purge=True), vm('stopped'),
     dict(actions=['delete'], step_params={'purge': True})),
    ('restart-on-change-with-keys-pending', QEMU, 'present', dict(name='web', restart_on_change=True),
     pending(vm(), 'memory'), dict(actions=['reboot'], changed=True)),
    ('restart-on-change-after-an-update', QEMU, 'present', dict(name='web', config={'cores': 4},
                                                                restart_on_change=True), vm(),
     dict(actions=['update', 'reboot'], changed=True, if_pending=True)),
    ('restart-on-change-nothing-pending', QEMU, 'present', dict(name='web', restart_on_change=True), vm(),
     dict(actions=[], changed=False)),
    ('restart-on-change-of-a-stopped-one', QEMU, 'present', dict(name='web', config={'cores': 4},
                                                                 restart_on_change=True), vm('stopped'),
     dict(actions=['update'])),
    ('a-guest-on-an-offline-node', QEMU, 'started', dict(name='web'), vm('unknown', node='n3'), NodeOfflineError),
]


@pytest.mark.parametrize('kind, state, request_, current, expected', [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_plan(kind, state, request_, current, expected):
    spec = GuestSpec(**request_)
    if isinstance(expected, type):
        with pytest.raises(expected):
            plan_guest(kind, state, spec, current, RESOURCES, 'c', ClusterDefaults())
        return
    plan = plan_guest(kind, state, spec, current, RESOURCES, 'c', expected.get('defaults', ClusterDefaults()))
    assert plan.actions == expected['actions']
    assert plan.changed is expected.get('changed', bool(expected['actions']))
    for key in ('status', 'template', 'before', 'after'):
        if key in expected:
            assert getattr(plan, key) == expected[key], key
    for key, value in expected.get('after_has', {}).items():
        assert plan.after[key] == value
    for key, value in expected.get('before_has', {}).items():
        assert plan.before[key] == value
    if 'node' in expected:
        assert (plan.node, plan.node_reason) == expected['node']
    if 'clone_source' in expected:
        assert plan.clone_source['vmid'] == expected['clone_source']
    if 'step_params' in expected:
        params = plan.steps[0].params
        flat = dict(params.get('params', {}), **params.get('changes', {}), **params)
        assert all(flat[k] == v for k, v in expected['step_params'].items()), params
    if 'warning' in expected:
        assert any(expected['warning'] in w for w in plan.warnings), plan.warnings
    if expected.get('if_pending'):
        assert plan.steps[-1].if_pending is True
    assert all(isinstance(step.as_dict(), dict) for step in plan.steps)


def test_the_planner_is_pure_and_fast():
    """The whole table again, a hundred times, with no I/O: well under the 5 s the issue allows."""
    started = time.monotonic()
    for dummy in range(100):
        for row in ROWS:
            kind, state, request_, current, expected = row[1:]
            if not isinstance(expected, type):
                plan_guest(kind, state, GuestSpec(**request_), current, RESOURCES, 'c',
                           expected.get('defaults', ClusterDefaults()))
    assert time.monotonic() - started < 5


def test_a_step_shows_no_guest_object_and_no_write_only_value():
    plan = plan_guest(QEMU, 'present', GuestSpec(name='web', clone='tpl', config={'cipassword': 'S3cret'}), NEW,
                      RESOURCES, 'c')
    shown = [step.as_dict() for step in plan.steps]
    assert shown[0] == {'action': 'clone', 'params': {'params': {'name': 'web'}, 'source': 'tpl'}}
    assert 'S3cret' not in repr(shown)
    created = plan_guest(LXC, 'present', GuestSpec(name='ct2', config={'ostemplate': OSTEMPLATE, 'password': 'S3cret'}),
                         NEW, RESOURCES, 'c')
    assert created.steps[0].as_dict()['params']['params']['password'] == '********'
    assert 'S3cret' not in repr([step.as_dict() for step in created.steps])
    assert Step('reboot', if_pending=True).as_dict() == {'action': 'reboot', 'if_pending': True}
