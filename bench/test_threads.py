"""Tests for bench/threads.py's reading of /proc: the per-thread split it prints must add up to what the
kernel counted. No timing is asserted.

Run: .venv/bin/python -m pytest bench/ (the venv scripts/test.sh makes; needs only pytest)
"""

from __future__ import annotations

import os
import threading
import time

import bench
import threads

# A stat line whose name holds a space and a parenthesis, as a thread may name itself.
STAT = "4242 (tokio) rt(1)) S 1 4242 4242 0 -1 4194368 120 0 0 0 37 19 0 0 20 0 3 0 100 0 0"
STATUS = "Name:\ttokio\nvoluntary_ctxt_switches:\t1500\nnonvoluntary_ctxt_switches:\t7\n"


def test_stat_fields_are_counted_from_the_last_parenthesis():
    t = threads.parse_thread("tokio-rt-worker\n", "123456789 1000 50\n", STAT, STATUS)
    assert t == threads.ThreadSample("tokio-rt-worker", 123_456_789, 37, 19, 1500, 7)


def test_counters_are_summed_by_thread_name_and_divided_by_requests():
    t = threads.ThreadSample
    before = {(1, 1): t("worker", 1_000_000, 10, 5, 100, 1), (1, 2): t("worker", 0, 0, 0, 0, 0)}
    after = {
        (1, 1): t("worker", 3_000_000, 30, 15, 300, 3),
        (1, 2): t("worker", 1_000_000, 10, 5, 100, 1),
        # Born during the run: counted from zero.
        (1, 3): t("store", 500_000, 0, 0, 50, 0),
        # Never ran: left out.
        (1, 4): t("idle", 0, 0, 0, 0, 0),
    }
    got = threads.per_request(before, after, requests=100)
    tick_us = 1e6 / bench.CLK_TCK
    assert set(got) == {"worker", "store"}
    assert got["worker"]["cpu_us"] == 30.0
    assert got["worker"]["user_us"] == 30 * tick_us / 100
    assert got["worker"]["system_us"] == 15 * tick_us / 100
    assert got["worker"]["voluntary"] == 3.0
    assert got["worker"]["involuntary"] == 0.03
    assert got["store"]["cpu_us"] == 5.0


def test_this_process_is_read_thread_by_thread():
    """A thread of this process that waits shows up under its own id, with its switches."""
    done = threading.Event()
    ready = threading.Event()

    def idle():
        ready.set()
        done.wait()

    th = threading.Thread(target=idle, name="bench-threads-test")
    th.start()
    try:
        ready.wait()
        seen = threads.sample([os.getpid()])
        assert (os.getpid(), os.getpid()) in seen
        assert (os.getpid(), th.native_id) in seen
        # Once it blocks waiting for `done` it has switched out voluntarily; it may not have got there
        # yet when `ready` is seen, so look again until it has (a thread that never counts fails here).
        deadline = time.monotonic() + 10
        while threads.sample([os.getpid()])[(os.getpid(), th.native_id)].voluntary < 1:
            assert time.monotonic() < deadline, "a waiting thread shows no voluntary switch"
            time.sleep(0.01)
    finally:
        done.set()
        th.join()
