"""Thread discipline: a run's share of the cores follows the other mvrecon runs on the machine."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from mvrecon import threads



@pytest.fixture
def ledger(tmp_path, monkeypatch):
    monkeypatch.setenv("MVRECON_RUNTIME_DIR", str(tmp_path / "rt"))
    monkeypatch.setattr(threads, "available_cores", lambda: 4)
    saved = dict(threads._state)
    threads._state.update(requested=None, current=None, entry=None, checked=0.0)
    before = torch.get_num_threads()
    yield threads.runtime_dir()
    threads.unregister()
    threads._state.clear()
    threads._state.update(saved)
    torch.set_num_threads(before)


def _sleeper():
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_share_splits_the_cores_between_live_runs_and_forgets_dead_ones(ledger):
    assert threads.configure() == 4  # alone: every core
    assert torch.get_num_threads() == 4 and os.environ["OMP_NUM_THREADS"] == "4"
    others = [_sleeper(), _sleeper(), _sleeper()]
    try:
        for p in others:
            (ledger / str(p.pid)).write_text("")
        assert threads.live_runs() == 4
        assert threads.rebalance(force=True) == 1  # four runs on four cores: one each
        assert torch.get_num_threads() == 1
        others[0].kill(), others[0].wait()
        others[1].kill(), others[1].wait()
        assert threads.rebalance(force=True) == 2  # the dead runs' entries are dropped
        assert not (ledger / str(others[0].pid)).exists()
    finally:
        for p in others:
            p.kill()
            p.wait()
    assert threads.rebalance(force=True) == 4


def test_a_request_caps_the_share_and_leaving_removes_the_entry(ledger):
    assert threads.configure(3) == 3
    entry = ledger / str(os.getpid())
    assert entry.is_file()
    threads.unregister()
    assert not entry.exists()
    with pytest.raises(ValueError):
        threads.configure(0)


def test_single_threaded_restores_the_count(ledger):
    threads.configure(2)
    with threads.single_threaded():
        assert torch.get_num_threads() == 1
        from threadpoolctl import threadpool_info

        assert all(i["num_threads"] == 1 for i in threadpool_info())
    assert torch.get_num_threads() == 2


def test_a_fresh_lease_from_another_machine_refuses_and_a_lapsed_one_does_not(tmp_path, monkeypatch):
    """Where flock does not reach across machines, the holder's lease in the lock file does."""
    import threading
    import time as _time

    died = []
    monkeypatch.setattr(threading, "excepthook", died.append)  # the renewal thread must end quietly

    from mvrecon.errors import SessionBusy
    from mvrecon.session import LEASE_SECONDS, LOCK_FILE, session_lock

    lock = tmp_path / LOCK_FILE
    lock.write_text("4242 render-node-7")
    with pytest.raises(SessionBusy, match="run on render-node-7 \\(pid 4242\\) renewed its lease"):
        with session_lock(tmp_path):
            pass
    old = _time.time() - LEASE_SECONDS - 5
    os.utime(lock, (old, old))
    with session_lock(tmp_path):
        pid, host = lock.read_text().split()
        assert pid == str(os.getpid()) and host != "render-node-7"
    assert lock.read_text() == ""  # the lease ends with the run
    # a long run renews its lease
    import mvrecon.session as session_mod

    monkeypatch.setattr(session_mod, "LEASE_SECONDS", 0.2)
    os.utime(lock, (old, old))
    with session_lock(tmp_path):
        _time.sleep(0.3)
        assert _time.time() - lock.stat().st_mtime < 0.2
    assert not died, died[0].exc_value


def test_an_api_run_leaves_the_ledger_when_it_ends(ledger):
    """A Python process that ran a pipeline and went idle must not keep a share of the cores."""
    entry = ledger / str(os.getpid())
    with threads.running() as n:
        assert n == 4 and entry.is_file()
    assert not entry.exists()
    threads.configure(2)  # a command line process: registered for its whole life
    with threads.running():
        pass
    assert entry.is_file()
