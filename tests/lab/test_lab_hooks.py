"""The lab's own hooks, driven over HTTP as a client would: per-task durations and holds."""

import time

import pytest
import requests

import pmxlab
from conftest import FRESH_LAB_HOST


def session(lab, cluster):
    s = requests.Session()
    s.trust_env = False
    s.verify = lab.ca_bundle
    s.headers.update(lab.clusters[cluster].headers)
    return s


def until_stopped(s, url, upid, limit=10):
    started = time.monotonic()
    while s.get(url + '/api2/json/nodes/prod-pve1/tasks/%s/status' % upid).json()['data']['status'] != 'stopped':
        assert time.monotonic() - started < limit
        time.sleep(0.02)
    return time.monotonic() - started


def test_task_secs_option():
    assert pmxlab.task_secs_arg('qmclone:3, qmstart:1') == {'qmclone': 3.0, 'qmstart': 1.0}
    for bad in ('qmclone', 'qmclone:soon', ':3', 'qmclone:-1'):
        with pytest.raises(Exception, match='TYPE:SECONDS'):
            pmxlab.task_secs_arg(bad)


def test_a_task_type_takes_its_time(tmp_path):
    """qmstart takes 20 PVE seconds, at 0.02 real seconds each: the start is seen running, then done after ~0.4 s;
    a task type without a duration is as quick as before."""
    with pmxlab.Lab(str(tmp_path / 'lab'), clusters=1, first_host=FRESH_LAB_HOST, time_scale=0.02,
                    task_secs={'qmstart': 20}) as lab:
        c = lab.clusters['production']
        s = session(lab, 'production')
        upid = s.post(c.url + '/api2/json/nodes/prod-pve1/qemu/103/status/start').json()['data']
        assert c.pve.vm(103).status == 'stopped'
        took = until_stopped(s, c.url, upid)
        assert 0.3 <= took < 5 and c.pve.vm(103).status == 'running'
        upid = s.post(c.url + '/api2/json/nodes/prod-pve1/qemu/103/status/stop').json()['data']
        assert until_stopped(s, c.url, upid) < 0.3
