"""pvedisks: disk operations fakepve answers only from the schema, modelled for the lab.

A mixin of the lab's FakePve (``lab_pve_class`` in pmxlab.py): a VM's disk resize, a VM's move_disk, a VM's
unlink, and a container's move_volume change the fake's state the way Proxmox VE does. fakepve itself already
models a container's resize, snapshots and the config's ``delete`` of a mount point (its volume becomes
``unusedN``). Each behaviour below cites where PVE defines it:

- qm(1) and the API viewer (https://pve.proxmox.com/pve-docs/api-viewer/, ``nodes/{node}/qemu/{vmid}/resize``,
  ``.../move_disk``, ``.../unlink``) and qemu-server's ``PVE/API2/Qemu.pm`` (``resize_vm``, ``move_vm_disk``,
  ``unlink``);
- pct(1) and pve-container's ``src/PVE/API2/LXC.pm`` (``move_volume``).

Fault hooks: ``add_storage`` (a second storage to move to, optionally nearly full) and ``fill_storage`` (no
space left); a storage that is not defined is PVE's "storage 'x' does not exist".
"""

import re

from fakepve.lxc import format_size, parse_mount, parse_size, print_mount
from fakepve.model import PveError, TaskError
from fakepve.qemu import DRIVE_KEY, join_drive, split_drive, volume_ref

__all__ = ['DiskOps']

QEMU = '/nodes/{node}/qemu/{vmid}'
LXC = '/nodes/{node}/lxc/{vmid}'


def _unused_key(config):
    """The first free unusedN key (PVE::QemuConfig / PVE::LXC::Config add_unused_volume)."""
    n = 0
    while 'unused%d' % n in config:
        n += 1
    return 'unused%d' % n


class DiskOps(object):
    """Mixin of the lab's FakePve: resize, move and unlink of disks (see the module docstring for sources)."""

    # ------------------------------------------------------------ fault hooks and helpers

    def add_storage(self, sid, stype='lvmthin', content='images,rootdir', avail=None):
        """Define one more storage on every node (a target for moves); ``avail`` bytes free, None: unlimited."""
        store = {'type': stype, 'active': 1, 'content': content, 'files': set()}
        if avail is not None:
            store['avail'] = int(avail)
        self.storages[sid] = store
        return store

    def fill_storage(self, sid, avail=0):
        """Leave ``avail`` bytes free on a storage: a write needing more fails with "No space left on device"."""
        self.storages[sid]['avail'] = int(avail)

    def _disk_store(self, sid, content):
        """The target storage of a move: it exists, is online and takes this content (PVE's own messages)."""
        store = self.storages.get(sid)
        if store is None:
            raise PveError(500, "storage '{0}' does not exist".format(sid))
        if content not in re.split(r'[\s,;]+', str(store.get('content', ''))):
            raise PveError(500, "storage '{0}' does not support content type '{1}'".format(sid, content))
        if not store.get('active', 1):
            raise PveError(500, "storage '{0}' is not online".format(sid))
        return store

    @staticmethod
    def _take_space(store, sid, size):
        if 'avail' in store:
            if size > store['avail']:
                raise TaskError("unable to write to storage '{0}': No space left on device".format(sid))
            store['avail'] -= size

    def _release(self, volid):
        """Free a volume (vdisk_free): forget it on its storage and give its space back."""
        sid, name = volume_ref(volid)
        store = self.storages.get(sid) or {}
        vol = store.get('volumes', {}).pop(name, None)
        if vol and 'avail' in store:
            store['avail'] += int(vol.get('size') or 0)

    def _routes_disks(self):
        return [('PUT', QEMU + '/resize', self._qm_resize), ('POST', QEMU + '/move_disk', self._qm_move_disk),
                ('PUT', QEMU + '/unlink', self._qm_unlink), ('POST', LXC + '/move_volume', self._ct_move_volume)]

    # ------------------------------------------------------------ qemu

    async def _qm_resize(self, v, user):
        """``qm disk resize <vmid> <disk> [+]<size>``: grows the disk, never shrinks it (PVE: "shrinking disks is
        not supported"); the same size is no change. Runs as a ``qmresize`` task; a running VM's disk grows
        at once (block_resize), so the config changes and nothing is pending."""
        vm = self.find(v['node'], v['vmid'])
        self._check_lock(vm)
        disk, text = v['disk'], str(v['size'])
        value = vm.config.get(disk)
        if value is None or not DRIVE_KEY.match(disk):
            raise PveError(500, 'disk \'{0}\' does not exist'.format(disk))
        volume, props = split_drive(value)
        if props.get('media') == 'cdrom':
            raise PveError(500, "you can't resize a cdrom")
        size = parse_size(props.get('size', '')) or 0
        request = parse_size(text.lstrip('+'))
        if request is None:
            raise PveError(400, 'Parameter verification failed.', {'size': 'value does not match the regex pattern'})
        new = size + request if text.startswith('+') else request
        if new < size:
            raise PveError(500, 'shrinking disks is not supported')

        async def body():
            if new == size:
                return None
            sid = volume_ref(volume)[0]
            store = self.storages.get(sid)
            if store is not None:
                self._take_space(store, sid, new - size)
            props['size'] = format_size(new)
            vm.config[disk] = join_drive(volume, props)
            return "resized '{0}' to {1}".format(disk, format_size(new))
        return await self.task(vm.node, 'qmresize', vm.vmid, user, body, vm=vm)

    async def _qm_move_disk(self, v, user):
        """``qm disk move <vmid> <disk> <storage> [--delete]``: copies the disk to a new volume on the target
        storage (a running VM's by a drive mirror). Without ``delete`` the source stays as ``unusedN``; with it,
        the source is freed. Refused: the same storage, a cdrom, ``delete`` on a disk that snapshots use."""
        vm = self.find(v['node'], v['vmid'])
        self._check_lock(vm)
        disk, sid = v['disk'], v.get('storage')
        value = vm.config.get(disk)
        if value is None or not DRIVE_KEY.match(disk):
            raise PveError(500, "disk '{0}' does not exist".format(disk))
        old, props = split_drive(value)
        if props.get('media') == 'cdrom':
            raise PveError(500, "you can't move a cdrom")
        if volume_ref(old)[0] == sid:
            raise PveError(500, "you can't move to the same storage with same format")
        store = self._disk_store(sid, 'images')
        delete = str(v.get('delete', '0')) in ('1', 'true')
        if delete and any(s.get(disk) and split_drive(s[disk])[0] == old for s in vm.snapshots.values()):
            raise PveError(500, "you can't move a disk with snapshots and delete the source")
        size = parse_size(props.get('size', '')) or 0

        async def body():
            self._take_space(store, sid, size)
            name = self._qm_free_name(sid, vm.vmid, 'raw')
            store.setdefault('volumes', {})[name] = {'content': 'images', 'format': 'raw', 'size': size,
                                                     'vmid': vm.vmid}
            new = '{0}:{1}'.format(sid, name)
            vm.config[disk] = join_drive(new, props)
            if delete:
                self._release(old)
            else:
                vm.config[_unused_key(vm.config)] = old
            return "moved '{0}' from {1} to {2}".format(disk, old, new)
        return await self.task(vm.node, 'qmmove', vm.vmid, user, body, vm=vm)

    async def _qm_unlink(self, v, user):
        """``qm disk unlink <vmid> --idlist <disks> [--force]``: takes disks out of the config. Without
        ``force`` each volume stays as ``unusedN``; with it (and always for an ``unusedN``) it is freed. Answers
        at once (no task)."""
        vm = self.find(v['node'], v['vmid'])
        self._check_lock(vm)
        force = str(v.get('force', '0')) in ('1', 'true')
        for key in [k for k in re.split(r'[\s,;]+', str(v.get('idlist') or '')) if k]:
            value = vm.config.pop(key, None)
            vm.pending.pop(key, None)
            if value is None:
                continue
            volume, props = split_drive(value)
            if props.get('media') == 'cdrom' or volume in ('none', ''):
                continue
            if force or key.startswith('unused'):
                self._release(volume)
            else:
                vm.config[_unused_key(vm.config)] = volume
        return None

    # ------------------------------------------------------------ lxc

    async def _ct_move_volume(self, v, user):
        """``pct move-volume <vmid> <volume> <storage> [--delete]``: only a stopped container ("cannot move volumes
        of a running container"), only rootfs or mpN; without ``delete`` the source stays as ``unusedN``."""
        ct = self._find_ct(v['node'], v['vmid'])
        if ct.lock:
            raise PveError(500, 'CT is locked ({0})'.format(ct.lock))
        if ct.status == 'running':
            raise PveError(500, 'cannot move volumes of a running container')
        key, sid = v['volume'], v.get('storage')
        if re.fullmatch(r'unused\d+', key):
            raise PveError(500, "cannot move volume '{0}', only configured volumes can be moved to another "
                                'storage'.format(key))
        if key not in ct.config:
            raise PveError(500, "Can't parse {0}".format(key))
        mount = parse_mount(ct.config[key])
        old = mount['volume']
        if volume_ref(old)[0] == sid:
            raise PveError(500, "you can't move to the same storage with same format")
        store = self._disk_store(sid, 'rootdir')
        delete = str(v.get('delete', '0')) in ('1', 'true')
        if delete and any(s.get(key) and parse_mount(s[key])['volume'] == old for s in ct.snapshots.values()):
            raise PveError(500, "you can't move a volume with snapshots and delete the source")
        size = parse_size(mount.get('size', '')) or 0

        async def body():
            self._take_space(store, sid, size)
            new = self._allocate(ct.vmid, sid, self._taken_volumes())
            mount['volume'] = new
            ct.config[key] = print_mount(mount, key == 'rootfs')
            if delete:
                self._release(old)
            else:
                ct.config[_unused_key(ct.config)] = old
            return "moved '{0}' from {1} to {2}".format(key, old, new)
        return await self._ct_task(ct, 'move_volume', user, body)
