"""Queue throughput: ten 2-second workflows at worker concurrency 2, on one replica and
then on two replicas that both dequeue."""

from __future__ import annotations

import time
from collections import Counter

from app_harness import wait_until

COUNT = 10
SECONDS = 2


def run_batch(app, database) -> tuple[float, Counter]:
    """Enqueue the batch through ``app``; the seconds until all succeed, and who ran them."""
    started = time.monotonic()
    ids = [app.enqueue(SECONDS) for _ in range(COUNT)]

    def all_done():
        statuses = database.statuses(ids)
        return len(statuses) == COUNT and all(s == "SUCCESS" for s, _ in statuses.values())

    wait_until(all_done, 60, "the batch to finish", interval_s=0.2)
    elapsed = time.monotonic() - started
    return elapsed, Counter(executor for _, executor in database.statuses(ids).values())


def test_one_replica_then_two(fresh_db, start_app):
    first = start_app("pod-a", fresh_db, WORKER_CONCURRENCY="2")
    first.wait_healthy()
    one_replica, executors = run_batch(first, fresh_db)
    # Five rounds of two: no faster than 10 s on one replica.
    assert one_replica >= COUNT / 2 * SECONDS
    assert executors == Counter({"pod-a": COUNT})

    second = start_app("pod-b", fresh_db, WORKER_CONCURRENCY="2")
    second.wait_healthy()
    two_replicas, executors = run_batch(first, fresh_db)
    assert two_replicas < one_replica - SECONDS, (one_replica, two_replicas)
    assert set(executors) == {"pod-a", "pod-b"}, executors
    assert max(executors.values()) <= COUNT - 2, executors
    print(
        f"ten {SECONDS}-second workflows: {one_replica:.1f} s on one replica, "
        f"{two_replicas:.1f} s on two ({dict(executors)})"
    )
