"""The sample app's HTTP endpoints against a real database, including bad input."""

from __future__ import annotations

from app_harness import wait_until


def test_endpoints_bad_input_and_queue_depth(fresh_db, start_app):
    app = start_app("pod-endpoints", fresh_db, MAX_SLEEP_SECONDS="30", WORKER_CONCURRENCY="2")
    app.wait_healthy()

    health = app.get("/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ready"}
    assert app.get("/version").json() == {
        "app_version": "test-v1",
        "executor_id": "pod-endpoints",
        "dbos_version": "3.4.0",
    }

    # A short workflow runs to SUCCESS and reports what it slept.
    response = app.get("/enqueue/0.5")
    assert response.status_code == 200
    body = response.json()
    assert body["queue"] == "taskQueue" and body["seconds"] == 0.5
    workflow_id = body["workflow_id"]
    assert app.get("/metrics/taskQueue").json()["queue_length"] in (0, 1)

    def finished():
        status = app.get(f"/workflows/{workflow_id}").json()
        return status if status["status"] == "SUCCESS" else None

    status = wait_until(finished, 20, "the workflow to succeed")
    assert status["executor_id"] == "pod-endpoints"
    assert status["queue_name"] == "taskQueue"
    assert status["app_version"] == "test-v1"
    assert status["output"]["requested_s"] == 0.5
    assert app.get("/metrics/taskQueue").json() == {"queue_length": 0}

    # Counts by application version, as the upgrade stage asks for them.
    counted = app.get("/workflows", params={"version": "test-v1", "status": "SUCCESS"}).json()
    assert counted["count"] == 1
    active = app.get("/workflows", params={"version": "test-v1"}).json()
    assert active == {"version": "test-v1", "status": ["ENQUEUED", "PENDING"], "count": 0}
    assert app.get("/workflows", params={"version": "other"}).json()["count"] == 0
    bogus = app.get("/workflows", params={"version": "test-v1", "status": "BOGUS"})
    assert bogus.status_code == 400

    # Unknown queue and unknown workflow: 404 with a message.
    missing_queue = app.get("/metrics/noSuchQueue")
    assert missing_queue.status_code == 404
    assert "noSuchQueue" in missing_queue.json()["detail"]
    missing_workflow = app.get("/workflows/does-not-exist")
    assert missing_workflow.status_code == 404
    assert "does-not-exist" in missing_workflow.json()["detail"]

    # Bad durations: 400 with a message naming the problem; nothing is enqueued.
    bad = {
        "-1": "negative",
        "abc": "number",
        "nan": "finite",
        "inf": "finite",
        "31": "MAX_SLEEP_SECONDS",
        "100000": "at most 30",
    }
    for raw, expected in bad.items():
        response = app.get(f"/enqueue/{raw}")
        assert response.status_code == 400, (raw, response.text)
        assert expected in response.json()["detail"], (raw, response.text)
    count = fresh_db.query("SELECT count(*) FROM dbos.workflow_status")[0][0]
    assert count == 1

    # Queue depth is ENQUEUED plus PENDING: busy workers keep it up, as KEDA needs.
    ids = [app.enqueue(3) for _ in range(3)]

    def two_running():
        states = [state for state, _ in fresh_db.statuses(ids).values()]
        return states.count("PENDING") == 2

    wait_until(two_running, 15, "two workflows to run")
    assert app.get("/metrics/taskQueue").json() == {"queue_length": 3}
