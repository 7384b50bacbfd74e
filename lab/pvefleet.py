"""The lab's record of how many tasks run at once, per cluster and per node (a mixin of the lab's FakePve).

It models nothing of PVE: it counts. A task counts as running from the moment its worker begins its work
(after it took the guest's config lock, as PVE's workers do) until that work ends, including the time the
lab makes it take (``task_secs``) and the time it is held (``hold_tasks``). Read it with
``Lab.most_running(cluster, node=None)``; ``Lab.reset_most_running()`` starts a new record.
"""

import collections


class TaskConcurrency(object):
    """Mixin for FakePve: ``running`` / ``most_running`` per node and for the whole cluster (key None)."""

    def __init__(self, *args, **kwargs):
        super(TaskConcurrency, self).__init__(*args, **kwargs)
        self.reset_most_running()

    def reset_most_running(self):
        """Forget the record (tasks running now still count from here on)."""
        self.running = collections.Counter(getattr(self, 'running', {}))
        self.most_running = collections.Counter(self.running)
        self.running_log = []  # (task type, node, tasks running on the cluster then), at each start

    def _task_began(self, node, ttype):
        for key in (None, node):
            self.running[key] += 1
            self.most_running[key] = max(self.most_running[key], self.running[key])
        self.running_log.append((ttype, node, self.running[None]))

    def _task_ended(self, node):
        for key in (None, node):
            self.running[key] -= 1

    async def task(self, node, ttype, tid, user, body, vm=None, lock=True, log=()):
        work = body

        async def body():
            self._task_began(node, ttype)
            try:
                return await work()
            finally:
                self._task_ended(node)
        return await super(TaskConcurrency, self).task(node, ttype, tid, user, body, vm=vm, lock=lock, log=log)
