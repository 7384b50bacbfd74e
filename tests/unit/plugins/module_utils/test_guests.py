"""The guest core's decision functions, as tables: normalisation, diff, lookup, node choice, lock waits."""

import pytest

from ansible_collections.pmx.multicluster.plugins.module_utils.errors import (
    ApiError,
    DuplicateGuestError,
    GuestConflictError,
    GuestLockedError,
    GuestNotFoundError,
    NodeOfflineError,
    vmid_taken,
)
from ansible_collections.pmx.multicluster.plugins.module_utils.guests.manager import GuestManager
from ansible_collections.pmx.multicluster.plugins.module_utils.guests.spec import GuestSpec
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.checks import (
    check_config_keys,
    check_guest_name,
    check_property_strings,
    check_vmid,
)
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.diff import (
    config_diff,
    desired_config,
    pending_state,
    with_cluster_defaults,
)
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.kinds import LXC, QEMU
from ansible_collections.pmx.multicluster.plugins.module_utils.pve.values import (
    api_value,
    disk_equal,
    keep_mac,
    normalise_tags,
    size_bytes,
    split_net,
    split_props,
    values_equal,
)

MAC = 'BC:24:11:01:00:64'


@pytest.mark.parametrize('text, default, expected', [
    ('virtio,bridge=vmbr0', None, {'virtio': '', 'bridge': 'vmbr0'}),
    ('order=scsi0;ide2;net0', 'legacy', {'order': 'scsi0;ide2;net0'}),
    ('1', 'enabled', {'enabled': '1'}),
    ('enabled=1,fstrim_cloned_disks=1', 'enabled', {'enabled': '1', 'fstrim_cloned_disks': '1'}),
    ('local-lvm:vm-100-disk-0, iothread=1 ,size=32G', 'file',
     {'file': 'local-lvm:vm-100-disk-0', 'iothread': '1', 'size': '32G'}),
    (4096, 'current', {'current': '4096'}),
    ('', None, {}),
])
def test_split_props(text, default, expected):
    assert split_props(text, default) == expected


@pytest.mark.parametrize('kind, text, expected', [
    (QEMU, 'virtio=bc:24:11:01:00:64,bridge=vmbr0', {'model': 'virtio', 'macaddr': MAC, 'bridge': 'vmbr0'}),
    (QEMU, 'virtio,bridge=vmbr0,firewall=1', {'model': 'virtio', 'bridge': 'vmbr0', 'firewall': '1'}),
    (QEMU, 'model=e1000,macaddr=%s,bridge=vmbr1' % MAC, {'model': 'e1000', 'macaddr': MAC, 'bridge': 'vmbr1'}),
    (LXC, 'name=eth0,bridge=vmbr0,hwaddr=%s,ip=dhcp' % MAC.lower(),
     {'name': 'eth0', 'bridge': 'vmbr0', 'hwaddr': MAC, 'ip': 'dhcp'}),
])
def test_split_net(kind, text, expected):
    assert split_net(text, kind) == expected


@pytest.mark.parametrize('text, expected', [
    ('32G', 32 * 1024 ** 3), ('32768M', 32 * 1024 ** 3), ('32', 32 * 1024 ** 3), ('0.5T', 512 * 1024 ** 3),
    ('4M', 4 * 1024 ** 2), ('big', None),
])
def test_size_bytes(text, expected):
    assert size_bytes(text) == expected


@pytest.mark.parametrize('value, expected', [
    ('web;tier', ['tier', 'web']), (['Web', 'tier', 'web'], ['tier', 'web']), ('b, a c', ['a', 'b', 'c']),
    ('', []), ([], []),
])
def test_normalise_tags(value, expected):
    assert normalise_tags(value) == expected


# (key, desired, current, equal): what is "the same" in PVE's formats, and what is not.
EQUALITY = [
    ('memory', 4096, '4096', True),
    ('memory', 4096, 'current=4096', True),
    ('memory', 8192, '4096', False),
    ('cores', '2', 2, True),
    ('cpulimit', '1.5', 1.5, True),
    ('onboot', True, 1, True),
    ('onboot', 'yes', '1', True),
    ('onboot', False, 1, False),
    ('agent', True, '1', True),
    ('agent', '1', 'enabled=1,fstrim_cloned_disks=1', True),
    ('agent', 'enabled=1,fstrim_cloned_disks=1', '1', False),
    ('tags', ['web', 'tier'], 'tier;web', True),
    ('tags', 'web,tier', 'tier;web', True),
    ('tags', ['web'], 'tier;web', False),
    ('description', 'hello', 'hello\n', True),
    ('description', 'hello', 'bye', False),
    ('sshkeys', 'ssh-ed25519 AAAA a@b', 'ssh-ed25519%20AAAA%20a%40b%0A', True),
    ('net0', 'virtio,bridge=vmbr0', 'virtio=%s,bridge=vmbr0' % MAC, True),
    ('net0', 'virtio,bridge=vmbr1', 'virtio=%s,bridge=vmbr0' % MAC, False),
    ('net0', 'e1000,bridge=vmbr0', 'virtio=%s,bridge=vmbr0' % MAC, False),
    ('net0', 'virtio=%s,bridge=vmbr0' % MAC.lower(), 'virtio=%s,bridge=vmbr0' % MAC, True),
    ('net0', 'virtio=BC:24:11:00:00:01,bridge=vmbr0', 'virtio=%s,bridge=vmbr0' % MAC, False),
    ('net0', 'virtio,bridge=vmbr0,firewall=0', 'virtio=%s,bridge=vmbr0' % MAC, True),
    ('net0', 'virtio,bridge=vmbr0,firewall=1', 'virtio=%s,bridge=vmbr0' % MAC, False),
    ('ipconfig0', 'gw=10.0.0.1,ip=10.0.0.5/24', 'ip=10.0.0.5/24,gw=10.0.0.1', True),
    ('boot', 'order=scsi0;net0', 'order=scsi0;ide2;net0', False),
    ('scsi0', 'local-lvm:32', 'local-lvm:vm-100-disk-0,iothread=1,size=32G', True),
    ('scsi0', 'local-lvm:32,iothread=1', 'local-lvm:vm-100-disk-0,iothread=1,size=32G', True),
    ('scsi0', 'local-lvm:32,discard=on', 'local-lvm:vm-100-disk-0,iothread=1,size=32G', False),
    ('scsi0', 'local-lvm:vm-100-disk-0', 'local-lvm:vm-100-disk-0,size=32G', True),
    ('scsi0', 'local-lvm:vm-100-disk-1', 'local-lvm:vm-100-disk-0,size=32G', False),
    ('ide2', 'none,media=cdrom', 'none,media=cdrom', True),
    ('cpu', 'host', 'cputype=host', True),
    ('ostype', 'l26', None, False),
    ('ostype', None, None, True),
]


@pytest.mark.parametrize('key, desired, current, equal', EQUALITY)
def test_values_equal(key, desired, current, equal):
    assert values_equal(QEMU, key, desired, current) is equal


@pytest.mark.parametrize('key, desired, current, equal', [
    ('rootfs', 'local-lvm:8', 'local-lvm:subvol-104-disk-0,size=8G', True),
    ('net0', 'name=eth0,bridge=vmbr0', 'name=eth0,bridge=vmbr0,hwaddr=%s,ip=dhcp,type=veth' % MAC, True),
    ('net0', 'name=eth0,bridge=vmbr1', 'name=eth0,bridge=vmbr0,hwaddr=%s,ip=dhcp,type=veth' % MAC, False),
    ('unprivileged', True, 1, True),
    ('features', 'nesting=1', 'nesting=1', True),
])
def test_values_equal_lxc(key, desired, current, equal):
    assert values_equal(LXC, key, desired, current) is equal


@pytest.mark.parametrize('desired, current, equal, warning', [
    ('local-lvm:32', 'local-lvm:vm-100-disk-0,size=32G', True, None),
    ('local-lvm:64', 'local-lvm:vm-100-disk-0,size=32G', True, 'is 32G, not 64G (disks are not resized)'),
    ('ceph:32', 'local-lvm:vm-100-disk-0,size=32G', True, 'is on storage local-lvm, not ceph (disks are not moved)'),
    ('local-lvm:32,ssd=1', 'local-lvm:vm-100-disk-0,size=32G', False, None),
    # A cloud-init drive asked for as STORAGE:cloudinit is the cdrom volume PVE made there (PVE names it
    # vm-<vmid>-cloudinit; the lab, vm-<vmid>-disk-<n>).
    ('local-lvm:cloudinit', 'local-lvm:vm-106-cloudinit,media=cdrom', True, None),
    ('local-lvm:cloudinit', 'local-lvm:vm-106-disk-1,media=cdrom,size=4M', True, None),
    ('ceph:cloudinit', 'local-lvm:vm-106-cloudinit,media=cdrom', False, None),
    ('local-lvm:cloudinit', 'local-lvm:vm-106-disk-0,size=32G', False, None),
    # A disk imported from an image: import-from and its 0 size are how it was made, not what it is.
    ('local-lvm:0,import-from=local:import/debian-12.qcow2', 'local-lvm:vm-106-disk-0,size=2G', True, None),
    ('local-lvm:0,import-from=local:import/debian-12.qcow2,discard=on',
     'local-lvm:vm-106-disk-0,discard=on,size=2G', True, None),
    ('ceph:0,import-from=local:import/debian-12.qcow2', 'local-lvm:vm-106-disk-0,size=2G', True,
     'is on storage local-lvm, not ceph (disks are not moved)'),
])
def test_disk_equal(desired, current, equal, warning):
    assert disk_equal(desired, current) == (equal, warning)


@pytest.mark.parametrize('key, value, expected', [
    ('onboot', True, 1), ('onboot', False, 0), ('tags', ['web', 'Tier'], 'tier;web'), ('memory', 2048, 2048),
    ('sshkeys', 'ssh-ed25519 AAAA a@b', 'ssh-ed25519%20AAAA%20a%40b%0A'),
    ('sshkeys', 'ssh-ed25519%20AAAA%20a%40b%0A', 'ssh-ed25519%20AAAA%20a%40b%0A'),
])
def test_api_value(key, value, expected):
    assert api_value(key, value) == expected


@pytest.mark.parametrize('desired, current, expected', [
    ('virtio,bridge=vmbr1', 'virtio=%s,bridge=vmbr0' % MAC, 'virtio=%s,bridge=vmbr1' % MAC),
    ('virtio=AA:BB:CC:DD:EE:FF,bridge=vmbr1', 'virtio=%s,bridge=vmbr0' % MAC, 'virtio=AA:BB:CC:DD:EE:FF,bridge=vmbr1'),
    ('virtio,bridge=vmbr1', None, 'virtio,bridge=vmbr1'),
])
def test_keep_mac(desired, current, expected):
    assert keep_mac(QEMU, desired, current) == expected


def test_keep_mac_lxc():
    assert keep_mac(LXC, 'name=eth0,bridge=vmbr1', 'name=eth0,bridge=vmbr0,hwaddr=%s' % MAC) \
        == 'name=eth0,bridge=vmbr1,hwaddr=%s' % MAC


def test_config_diff_only_differences_and_write_only_keys():
    current = {'memory': '4096', 'cores': 2, 'net0': 'virtio=%s,bridge=vmbr0' % MAC, 'tags': 'web',
               'scsi0': 'local-lvm:vm-100-disk-0,size=32G'}
    desired = {'memory': 4096, 'cores': 4, 'net0': 'virtio,bridge=vmbr1', 'tags': ['web'], 'cipassword': 'x',
               'scsi0': 'local-lvm:64', 'scsi1': 'local-lvm:8', 'ostype': None}
    diff = config_diff(QEMU, desired, current, "VM 'a'")
    assert diff.changes == {'cores': 4, 'net0': 'virtio=%s,bridge=vmbr1' % MAC, 'scsi1': 'local-lvm:8'}
    assert diff.before == {'cores': 2, 'net0': 'virtio=%s,bridge=vmbr0' % MAC, 'scsi1': None,
                           'scsi0': 'local-lvm:vm-100-disk-0,size=32G'}
    assert diff.after == dict(diff.changes, scsi0='local-lvm:vm-100-disk-0,size=64G')
    assert diff.resizes == {'scsi0': '64G'} and diff.warnings == []
    with pytest.raises(GuestConflictError, match=r"disk scsi0 is 32G, and the task asks for 16G: Proxmox VE cannot "
                                                 r"shrink a disk .* Give 32G or more; nothing was changed"):
        config_diff(QEMU, {'scsi0': 'local-lvm:16'}, current, "VM 'a'")
    assert config_diff(QEMU, {'memory': '4096'}, current).changed is False


def test_pending_state():
    entries = [{'key': 'cores', 'value': 2, 'pending': 4}, {'key': 'memory', 'value': '4096'},
               {'key': 'balloon', 'value': 1024, 'delete': 1}, {'key': 'tags', 'pending': 'web'},
               {'key': 'digest', 'value': 'abc'}]
    running, effective, waiting = pending_state(entries)
    assert running == {'cores': 2, 'memory': '4096', 'balloon': 1024}
    assert effective == {'cores': 4, 'memory': '4096', 'tags': 'web'}
    assert waiting == ['balloon', 'cores', 'tags']


def test_desired_config_merges_and_refuses_keys_given_twice():
    options = {'cores': 2, 'memory': None, 'disks': {'scsi0': 'local-lvm:8'}, 'nets': None}
    expected = {'cores': 2, 'scsi0': 'local-lvm:8', 'numa': 1}
    assert desired_config(QEMU, options, ('disks', 'nets'), {'numa': 1}) == expected
    with pytest.raises(GuestConflictError, match="the VM key 'cores' is given twice"):
        desired_config(QEMU, {'cores': 2}, (), {'cores': 4})


# ------------------------------------------------------------------ lookup and node choice on plain data

RESOURCES = [
    {'type': 'qemu', 'vmid': 100, 'name': 'prod-web01', 'node': 'n1', 'status': 'running'},
    {'type': 'qemu', 'vmid': 101, 'name': 'prod-dup', 'node': 'n1'},
    {'type': 'qemu', 'vmid': 102, 'name': 'prod-dup', 'node': 'n2'},
    {'type': 'qemu', 'vmid': 9000, 'name': 'prod-tpl', 'node': 'n2', 'template': 1},
    {'type': 'lxc', 'vmid': 104, 'name': 'prod-ct01', 'node': 'n3'},
    {'type': 'node', 'node': 'n1', 'status': 'online', 'mem': 6, 'maxmem': 8},
    {'type': 'node', 'node': 'n2', 'status': 'online', 'mem': 2, 'maxmem': 8},
    {'type': 'node', 'node': 'n3', 'status': 'offline'},
]


class _Registry:
    def __init__(self, default_node=None):
        self.default_node = default_node

    def cluster(self, name):
        return self


@pytest.mark.parametrize('name, vmid, expected', [
    ('prod-web01', None, 100), (None, 100, 100), ('prod-web01', 100, 100), ('prod-new', None, None),
    (None, 555, None), ('prod-new', 555, None), ('prod-tpl', None, 9000),
])
def test_find(name, vmid, expected):
    found = GuestManager(None).find(RESOURCES, 'c', name, vmid)
    assert (found['vmid'] if found else None) == expected


@pytest.mark.parametrize('name, vmid, error, message', [
    ('prod-dup', None, DuplicateGuestError, r"has 2 VMs named 'prod-dup' \(vmids 101, 102\)"),
    ('prod-web01', 101, GuestConflictError, r"vmid 101 is named 'prod-dup', not 'prod-web01'"),
    ('prod-web01', 555, GuestConflictError, r"'prod-web01' has vmid 100, not 555"),
    (None, 104, GuestConflictError, r"vmid 104 is a container \('prod-ct01'\), not a VM"),
])
def test_find_errors(name, vmid, error, message):
    with pytest.raises(error, match=message):
        GuestManager(None).find(RESOURCES, 'c', name, vmid)


def test_find_source():
    manager = GuestManager(None)
    assert manager.find_source(RESOURCES, 'c', 'prod-tpl')['vmid'] == 9000
    assert manager.find_source(RESOURCES, 'c', '9000')['vmid'] == 9000
    with pytest.raises(GuestNotFoundError, match="clone source 'nope' not found; templates there: prod-tpl"):
        manager.find_source(RESOURCES, 'c', 'nope')


@pytest.mark.parametrize('asked, default, expected', [
    (None, None, ('n2', 'most free memory')),
    ('n1', None, ('n1', 'explicit')),
    (None, 'n1', ('n1', 'cluster default node')),
])
def test_choose_node(asked, default, expected):
    assert GuestManager(_Registry(default)).choose_node(RESOURCES, 'c', asked) == expected


@pytest.mark.parametrize('asked, default, error, message', [
    ('n3', None, NodeOfflineError, "node 'n3' is offline"),
    (None, 'n3', NodeOfflineError, r"node 'n3' \(the default node\) is offline"),
    ('n9', None, GuestConflictError, "has no node 'n9'; its nodes: n1, n2, n3"),
])
def test_choose_node_errors(asked, default, error, message):
    with pytest.raises(error, match=message):
        GuestManager(_Registry(default)).choose_node(RESOURCES, 'c', asked)


# ------------------------------------------------------------------ lock waits with a fake clock

class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, secs):
        self.now += max(secs, 0.1)


class _LockedClient:
    """Answers every write with PVE's 'locked' error until `unlock_at`."""

    def __init__(self, clock, unlock_at, message='VM is locked (backup)'):
        self.clock, self.unlock_at, self.message, self.calls = clock, unlock_at, message, 0

    def run_task(self, method, path, params=None, timeout=None):
        self.calls += 1
        if self.clock() < self.unlock_at:
            raise ApiError("cluster 'c': POST /%s failed (HTTP 500 %s)" % (path, self.message), 'c', 500)
        return {'upid': None, 'status': 'stopped', 'exitstatus': 'OK', 'data': None}

    def get(self, path, **params):
        return {'lock': 'backup'} if self.clock() < self.unlock_at else {}


@pytest.mark.parametrize('message, lock', [
    ('VM is locked (backup)', 'backup'),
    ("can't lock file '/var/lock/qemu-server/lock-100.conf' - got timeout", 'config lock held by another task'),
])
def test_locked_writes_are_retried_until_the_timeout(message, lock):
    clock = _Clock()
    manager = GuestManager(None, sleep=clock.sleep, clock=clock)
    guest = {'vmid': 100, 'node': 'n1', 'name': 'prod-web01'}
    client = _LockedClient(clock, unlock_at=3, message=message)
    assert manager.call(client, 'c', guest, 10, 'POST', 'status/start')['exitstatus'] == 'OK'
    assert client.calls > 1
    client = _LockedClient(clock, unlock_at=1000, message=message)
    with pytest.raises(GuestLockedError, match=r"VM 'prod-web01' \(vmid 100\) is locked \(%s\) and stayed locked "
                                               r"for 5s" % lock):
        manager.call(client, 'c', guest, 5, 'POST', 'status/start')


def test_wait_unlocked():
    clock = _Clock()
    manager = GuestManager(None, sleep=clock.sleep, clock=clock)
    guest = {'vmid': 100, 'node': 'n1', 'name': 'prod-web01'}
    manager.wait_unlocked(_LockedClient(clock, unlock_at=2), 'c', guest, 10)
    assert clock.now >= 2
    with pytest.raises(GuestLockedError, match=r'is locked \(backup\)'):
        manager.wait_unlocked(_LockedClient(clock, unlock_at=1000), 'c', guest, 3)


def test_other_api_errors_are_not_retried():
    clock = _Clock()
    client = _LockedClient(clock, unlock_at=1000, message='Parameter verification failed.')
    with pytest.raises(ApiError, match='Parameter verification failed'):
        GuestManager(None, sleep=clock.sleep, clock=clock).call(client, 'c', {'vmid': 1, 'node': 'n'}, 10, 'POST', 'x')
    assert client.calls == 1


# ---------------------------------------------------------------------- input checks before any request

@pytest.mark.parametrize('name, problem', [
    ('prod-web01', None),
    ('web01.prod.example', None),
    ('a' * 63, None),
    ('prod_web01', "'prod_web01' is not a DNS label"),
    ('prod web01', "'prod web01' is not a DNS label"),
    ('-prod', "'-prod' is not a DNS label"),
    ('prod-', "'prod-' is not a DNS label"),
    ('', 'it is empty'),
    ('a' * 64, 'longer than 63 characters'),
    ('.'.join(['a' * 60] * 5), 'longer than 253 characters'),
    ('prod-web01\n', 'starts or ends with whitespace (a trailing newline?)'),
    (' prod-web01', 'starts or ends with whitespace'),
    ('prod-web01\t', 'starts or ends with whitespace'),
])
def test_check_guest_name(name, problem):
    if problem is None:
        check_guest_name(name)
        return
    with pytest.raises(GuestConflictError) as err:
        check_guest_name(name)
    assert problem in str(err.value) and 'nothing was changed' in str(err.value)


@pytest.mark.parametrize('vmid, ok', [
    (100, True), (999999999, True), (None, True),
    (99, False), (0, False), (1000000000, False), (True, False), ('100', False),
])
def test_check_vmid(vmid, ok):
    if ok:
        check_vmid(vmid)
        return
    with pytest.raises(GuestConflictError, match='out of range'):
        check_vmid(vmid)


@pytest.mark.parametrize('kind, config, message', [
    (QEMU, {'memory': 1024, 'net3': 'virtio', 'scsi12': 'local-lvm:8'}, None),
    (LXC, {'memory': 512, 'mp2': 'local-lvm:4,mp=/srv', 'features': 'nesting=1'}, None),
    (QEMU, {'memroy': 1024}, "config key 'memroy' is not a Proxmox VE VM setting (did you mean 'memory'?)"),
    (LXC, {'sockets': 2}, "config key 'sockets' is not a Proxmox VE container setting"),
    (QEMU, {'name': 'x'}, "config key 'name' is not accepted: use the"),
    (QEMU, {'lock': 'backup'}, "config key 'lock' is not accepted (it controls how PVE applies a change"),
])
def test_check_config_keys(kind, config, message):
    if message is None:
        check_config_keys(kind, config)
        return
    with pytest.raises(GuestConflictError) as err:
        check_config_keys(kind, config)
    assert message in str(err.value)


# (kind, config, the error's excerpt or None when valid)
PROPERTY_STRINGS = [
    (QEMU, {'net0': 'virtio,bridge=vmbr0'}, None),
    (QEMU, {'net0': 'virtio=BC:24:11:00:00:01,bridge=vmbr0,tag=20'}, None),
    (QEMU, {'net0': 'model=e1000,bridge=vmbr0'}, None),
    (QEMU, {'net0': 'virtio'}, None),
    (QEMU, {'scsi0': 'local-lvm:32,iothread=1'}, None),
    (QEMU, {'scsi1': '32'}, None),
    (QEMU, {'ide2': 'none,media=cdrom'}, None),
    (QEMU, {'boot': 'order=scsi0;net0', 'agent': '1', 'memory': 4096, 'cpu': 'host'}, None),
    (QEMU, {'ipconfig0': 'ip=dhcp,ip6=auto'}, None),
    (QEMU, {'tags': 'a,b', 'description': 'x, y'}, None),  # not property strings
    (QEMU, {'net1': 'vmbr1'}, "net1: 'vmbr1' is not a valid Proxmox VE property string: 'vmbr1' is not key=value"),
    (QEMU, {'net1': 'virtio,vmbr1'}, "'vmbr1' is not key=value (for example virtio,bridge=vmbr0)"),
    (QEMU, {'net1': 'bridge=vmbr1'}, 'it names no model first'),
    (QEMU, {'net1': 'virtio,=vmbr1'}, "'=vmbr1' has no key before '='"),
    (QEMU, {'scsi1': 'local-lvm:8,ssd'}, "'ssd' is not key=value"),
    (QEMU, {'ipconfig0': 'dhcp'}, "'dhcp' is not key=value"),
    (LXC, {'net0': 'name=eth0,bridge=vmbr0,ip=dhcp'}, None),
    (LXC, {'rootfs': 'local-lvm:8', 'mp0': 'local-lvm:8,mp=/srv', 'features': 'nesting=1'}, None),
    (LXC, {'net0': 'bridge=vmbr0'}, 'it has no name= (for example name=eth0,bridge=vmbr0,ip=dhcp)'),
    (LXC, {'net0': 'eth0,bridge=vmbr0'}, "'eth0' is not key=value"),
    (LXC, {'mp0': 'local-lvm:8'}, 'a mount point needs mp=/path (for example local-lvm:8,mp=/srv)'),
    (LXC, {'features': 'nesting'}, "'nesting' is not key=value"),
]


@pytest.mark.parametrize('kind, config, message', PROPERTY_STRINGS)
def test_check_property_strings(kind, config, message):
    if message is None:
        check_property_strings(kind, config)
        return
    with pytest.raises(GuestConflictError) as err:
        check_property_strings(kind, config)
    assert message in str(err.value) and 'nothing was changed' in str(err.value)


# (kind, config, current config, storage, bridge, creating, expected config)
DEFAULTS = [
    (QEMU, {'scsi0': '32'}, {}, 'ceph', None, True, {'scsi0': 'ceph:32'}),
    (QEMU, {'scsi0': '32,iothread=1'}, {}, 'ceph', None, True, {'scsi0': 'ceph:32,iothread=1'}),
    (QEMU, {'scsi0': 'local-lvm:32'}, {}, 'ceph', None, True, {'scsi0': 'local-lvm:32'}),
    (QEMU, {'scsi0': '32'}, {'scsi0': 'local-lvm:vm-100-disk-0,size=32G'}, 'ceph', None, False, {'scsi0': '32'}),
    (QEMU, {'net0': 'virtio'}, {}, None, 'vmbr1', True, {'net0': 'virtio,bridge=vmbr1'}),
    (QEMU, {'net0': 'virtio,bridge=vmbr0'}, {}, None, 'vmbr1', True, {'net0': 'virtio,bridge=vmbr0'}),
    (QEMU, {'net0': 'virtio'}, {'net0': 'virtio=BC:24:11:00:00:01'}, None, 'vmbr1', False, {'net0': 'virtio'}),
    (QEMU, {'net0': 'virtio'}, {}, None, None, True, {'net0': 'virtio'}),
    (LXC, {'ostemplate': 'local:vztmpl/x.tar.zst'}, {}, 'zfs', 'vmbr2', True,
     {'ostemplate': 'local:vztmpl/x.tar.zst', 'rootfs': 'zfs:4'}),
    (LXC, {'rootfs': '8', 'net0': 'name=eth0'}, {}, 'zfs', 'vmbr2', True,
     {'rootfs': 'zfs:8', 'net0': 'name=eth0,bridge=vmbr2'}),
    (LXC, {'rootfs': '8'}, {}, None, None, True, {'rootfs': '8'}),  # a bare size: PVE's own default storage
    (LXC, {'memory': 512}, {}, 'zfs', None, False, {'memory': 512}),  # an update never adds a root file system
]


@pytest.mark.parametrize('kind, config, current, storage, bridge, creating, expected', DEFAULTS)
def test_with_cluster_defaults(kind, config, current, storage, bridge, creating, expected):
    assert with_cluster_defaults(kind, config, current, storage, bridge, creating, 'c') == expected


def test_a_vm_disk_without_storage_and_without_a_default_is_refused():
    with pytest.raises(GuestConflictError, match="scsi1: the new disk '8' names no storage, and cluster 'c' has no "
                                                 "default storage; .*PROXMOX_CLUSTER_c_DEFAULT_STORAGE"):
        with_cluster_defaults(QEMU, {'scsi1': '8'}, {}, None, None, False, 'c')


@pytest.mark.parametrize('message, taken', [
    ("unable to create VM 106 - VM 106 already exists on node 'n1'", True),
    ("CT 106 already exists on node 'n2'", True),
    ('vmid: VM 106 already exists', True),
    ('unable to create VM 106: config file already exists', True),
    ("snapshot name 'x' already used", False),
    ('VM is locked (create)', False),
])
def test_vmid_taken(message, taken):
    assert vmid_taken(ApiError(message, 'c', 500)) is taken


class _CreatingClient:
    """/cluster/resources answers: a guest locked 'create' until the clock reaches ``done_at``."""

    def __init__(self, clock, done_at, entry):
        self.clock, self.done_at, self.entry, self.reads = clock, done_at, entry, 0

    def get(self, path, **params):
        self.reads += 1
        entry = dict(self.entry)
        if self.clock() < self.done_at:
            entry.update(lock='create', name=self.entry.get('creating_name'))
        entry.pop('creating_name', None)
        return [entry]


@pytest.mark.parametrize('entry, spec, waits', [
    # PVE shows a guest being created without its name: it may be the one asked for.
    ({'type': 'lxc', 'vmid': 106, 'name': 'stg-a', 'creating_name': 'CT106'}, {'name': 'stg-a'}, True),
    ({'type': 'qemu', 'vmid': 106, 'name': 'stg-a', 'creating_name': None}, {'name': 'stg-a'}, True),
    ({'type': 'qemu', 'vmid': 106, 'name': 'stg-a', 'creating_name': 'VM 106'}, {'name': 'stg-a'}, True),
    # A guest being created that already shows another real name is not waited for.
    ({'type': 'qemu', 'vmid': 106, 'name': 'stg-b', 'creating_name': 'stg-b'}, {'name': 'stg-a'}, False),
    # The vmid asked for, whatever its name.
    ({'type': 'qemu', 'vmid': 106, 'name': 'stg-b', 'creating_name': 'stg-b'}, {'vmid': 106}, True),
    # Another kind is not this guest.
    ({'type': 'lxc', 'vmid': 106, 'name': 'stg-a', 'creating_name': 'CT106'}, {'name': 'stg-a', 'kind': QEMU}, False),
])
def test_wait_for_creations(entry, spec, waits):
    clock = _Clock()
    kind = spec.pop('kind', LXC if entry['type'] == 'lxc' else QEMU)
    manager = GuestManager(None, kind, sleep=clock.sleep, clock=clock)
    client = _CreatingClient(clock, 2, entry)
    resources = manager.wait_for_creations(client, 'c', client.get(''), GuestSpec(timeout=10, **spec))
    if not waits:
        assert clock.now == 0 and client.reads == 1  # no second read: nothing to wait for
        return
    assert clock.now >= 2 and 'lock' not in resources[0]
    client = _CreatingClient(clock, 1000, entry)
    with pytest.raises(GuestLockedError, match=r"guest\(s\) 106 are still being created after 3s \(lock create\)"):
        manager.wait_for_creations(client, 'c', client.get(''), GuestSpec(timeout=3, **spec))
