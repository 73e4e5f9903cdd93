"""No stranded work: a replica killed mid-workflow, and replicas drained by SIGTERM."""

from __future__ import annotations

import signal
import time

from app_harness import wait_until


def pending_on(database, ids, executor) -> int:
    return sum(
        1
        for status, owner in database.statuses(ids).values()
        if status == "PENDING" and owner == executor
    )


def test_kill_9_restart_then_graceful_stop(fresh_db, start_app):
    app = start_app("pod-k", fresh_db)
    app.wait_healthy()
    workflow_id = app.enqueue(6)
    wait_until(lambda: pending_on(fresh_db, [workflow_id], "pod-k"), 15, "the workflow to start")
    time.sleep(1.0)
    app.signal(signal.SIGKILL)
    app.wait_exit(10)
    assert fresh_db.statuses([workflow_id])[workflow_id] == ("PENDING", "pod-k")

    # Same pod name (a container restart): recovery at launch picks the workflow up.
    restarted = start_app("pod-k", fresh_db, DRAIN_TIMEOUT_SECONDS="10")
    restarted.wait_healthy()

    def succeeded():
        body = restarted.get(f"/workflows/{workflow_id}").json()
        return body if body["status"] == "SUCCESS" else None

    body = wait_until(succeeded, 30, "the recovered workflow to succeed")
    assert body["executor_id"] == "pod-k"
    # The durable sleep resumed with only the time that remained.
    assert body["output"]["slept_s"] < 6 - 0.9, body

    # A SIGTERM with work shorter than the drain timeout lets it finish here.
    short_id = restarted.enqueue(2)
    wait_until(lambda: pending_on(fresh_db, [short_id], "pod-k"), 15, "the short workflow to start")
    restarted.signal(signal.SIGTERM)
    assert restarted.health() == 503
    assert restarted.get("/enqueue/1").status_code == 503
    assert restarted.wait_exit(20) == 0
    assert fresh_db.statuses([short_id])[short_id] == ("SUCCESS", "pod-k")
    assert "no workflow left in flight" in restarted.output()


def test_sigterm_hands_back_long_work_to_the_other_replica(fresh_db, start_app):
    drain_s = 1.5
    leaving = start_app("pod-1", fresh_db, DRAIN_TIMEOUT_SECONDS=drain_s)
    staying = start_app("pod-2", fresh_db, DRAIN_TIMEOUT_SECONDS=drain_s)
    leaving.wait_healthy()
    staying.wait_healthy()
    # Four workflows longer than the drain timeout; each replica runs two at a time.
    ids = [leaving.enqueue(6) for _ in range(4)]
    wait_until(
        lambda: pending_on(fresh_db, ids, "pod-1") == 2 and pending_on(fresh_db, ids, "pod-2") == 2,
        20,
        "both replicas to run two workflows each",
    )
    handed = [wid for wid, (_, owner) in fresh_db.statuses(ids).items() if owner == "pod-1"]

    signal_at = time.monotonic()
    leaving.signal(signal.SIGTERM)
    # Readiness turns 503 at once, while the process keeps serving.
    assert leaving.health() == 503
    assert leaving.wait_exit(drain_s + 15) == 0
    assert time.monotonic() - signal_at < drain_s + 10
    assert "handed back 2 unfinished workflow(s)" in leaving.output()
    assert pending_on(fresh_db, ids, "pod-1") == 0

    # The leaving replica never returns; the other one finishes everything.
    def all_succeeded():
        return all(status == "SUCCESS" for status, _ in fresh_db.statuses(ids).values())

    wait_until(all_succeeded, 40, "every workflow to succeed", interval_s=0.2)
    assert {owner for _, owner in fresh_db.statuses(ids).values()} == {"pod-2"}
    for workflow_id in handed:
        output = staying.get(f"/workflows/{workflow_id}").json()["output"]
        # Resumed with the remaining time, not slept again from the start.
        assert output["slept_s"] < 6 - drain_s, output
    assert staying.health() == 200
