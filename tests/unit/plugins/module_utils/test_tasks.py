"""tasks.py: the one poll helper and task waits, with a fake clock (no lab, no sleeping)."""

import pytest

from ansible_collections.pmx.multicluster.plugins.module_utils.errors import TaskError, TaskTimeoutError
from ansible_collections.pmx.multicluster.plugins.module_utils.tasks import poll, wait_task

UPID = 'UPID:n1:0000AAAA:0000BBBB:6B0F0000:qmclone:106:root@pam!pmx:'


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, secs):
        self.now += secs


class TaskClient:
    """A task that stops ``duration`` seconds after the wait began; counts the status reads."""

    class cluster:  # noqa: N801 - what wait_task reads of a client's cluster
        name = 'c'
        token_id = 'root@pam!pmx'

    def __init__(self, clock, duration, exitstatus='OK'):
        self.clock, self.duration, self.exitstatus, self.reads = clock, duration, exitstatus, 0

    def get(self, path, **params):
        if path.endswith('/log'):
            return [{'n': 1, 't': 'TASK ERROR: ' + self.exitstatus}]
        self.reads += 1
        if self.clock() >= self.duration:
            return {'status': 'stopped', 'exitstatus': self.exitstatus, 'type': 'qmclone', 'log_lines': 1}
        return {'status': 'running', 'type': 'qmclone'}

    def grant_hint(self):
        return 'grant it'


@pytest.mark.parametrize('duration', [0.1, 1, 3, 10, 60, 300, 1800])
def test_a_task_end_is_noticed_within_a_tenth_of_its_duration_plus_half_a_second(duration):
    clock = Clock()
    client = TaskClient(clock, duration)
    wait_task(client, UPID, timeout=3600, sleep=clock.sleep, clock=clock)
    lag = clock.now - duration
    assert 0 <= lag <= 0.1 * duration + 0.5, (duration, lag)
    print('task of %ss: noticed %.2fs late, %d status reads' % (duration, lag, client.reads))
    if duration >= 300:
        assert client.reads <= duration / 4  # a fixed 2 s pause made duration / 2 reads


def test_a_task_still_running_at_the_timeout_and_a_failed_task():
    clock = Clock()
    with pytest.raises(TaskTimeoutError, match=r"task qmclone on node n1 was still running after 5s"):
        wait_task(TaskClient(clock, 100), UPID, timeout=5, sleep=clock.sleep, clock=clock)
    assert clock.now == pytest.approx(5)
    clock = Clock()
    with pytest.raises(TaskError, match=r"task qmclone on node n1 failed: boom\. Last log lines: TASK ERROR: boom"):
        wait_task(TaskClient(clock, 1, 'boom'), UPID, timeout=5, sleep=clock.sleep, clock=clock)


def test_poll_never_sleeps_past_the_deadline():
    clock = Clock()
    pauses = []

    def sleep(secs):
        pauses.append(secs)
        clock.sleep(secs)

    with pytest.raises(RuntimeError, match='still 7'):
        poll(lambda: (False, 7), 1.25, lambda last: RuntimeError('still %s' % last), interval=0.5, sleep=sleep,
             clock=clock)
    assert pauses == [0.5, 0.5, 0.25] and clock.now == 1.25
