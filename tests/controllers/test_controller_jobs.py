"""Jobs in the sandbox: completion with readable logs, the backoff limit under both restart
policies, the active deadline, and deletion after ttlSecondsAfterFinished."""

from __future__ import annotations

import pytest
from controller_harness import condition, job, pods_of, wait_for

pytestmark = pytest.mark.timeout(60)


def finished(sandbox, namespace, name, kind):
    j = sandbox.batch.read_namespaced_job(name, namespace)
    cond = condition(j, kind)
    return j if cond and cond.status == "True" else None


def test_job_completes_and_its_logs_are_readable(sandbox, namespace):
    code = "import sys; print('migrated', 3, 'tables'); print('to stderr', file=sys.stderr)"
    sandbox.batch.create_namespaced_job(namespace, job("migrate", code))
    j = wait_for(lambda: finished(sandbox, namespace, "migrate", "Complete"), timeout=10,
                 what="the Job to complete")
    assert j.status.succeeded == 1 and not j.status.failed and not j.status.active
    assert j.status.start_time and j.status.completion_time
    assert condition(j, "SuccessCriteriaMet").reason == "CompletionsReached"
    assert condition(j, "Complete").reason == "CompletionsReached"

    (pod,) = pods_of(sandbox, namespace, "job-name=migrate")
    assert pod.status.phase == "Succeeded"
    terminated = pod.status.container_statuses[0].state.terminated
    assert terminated.exit_code == 0 and terminated.reason == "Completed"
    text = sandbox.core.read_namespaced_pod_log(pod.metadata.name, namespace)
    assert "migrated 3 tables" in text and "to stderr" in text

    result = sandbox.kubectl("-n", namespace, "logs", "job/migrate")
    assert result.returncode == 0, result.stderr
    assert "migrated 3 tables" in result.stdout
    result = sandbox.kubectl("-n", namespace, "wait", "--for=condition=complete", "job/migrate",
                             "--timeout=5s")
    assert result.returncode == 0, result.stderr


def test_failing_job_with_restart_never_hits_the_backoff_limit(sandbox, namespace):
    sandbox.batch.create_namespaced_job(
        namespace, job("broken", "print('cannot connect'); raise SystemExit(1)",
                       restart="Never", backoff_limit=1))
    j = wait_for(lambda: finished(sandbox, namespace, "broken", "Failed"), timeout=15,
                 what="the Job to fail")
    assert condition(j, "Failed").reason == "BackoffLimitExceeded"
    assert condition(j, "FailureTarget").reason == "BackoffLimitExceeded"
    assert j.status.failed == 2 and not j.status.succeeded
    pods = pods_of(sandbox, namespace, "job-name=broken")
    assert len(pods) == 2 and {p.status.phase for p in pods} == {"Failed"}
    for pod in pods:
        assert pod.status.container_statuses[0].state.terminated.exit_code == 1


def test_failing_job_with_restart_on_failure_counts_restarts(sandbox, namespace):
    sandbox.batch.create_namespaced_job(
        namespace, job("flaky", "raise SystemExit(2)", restart="OnFailure", backoff_limit=2))
    seen_restarts = 0

    def failed():
        nonlocal seen_restarts
        for pod in pods_of(sandbox, namespace, "job-name=flaky", active_only=False):
            for status in pod.status.container_statuses or []:
                seen_restarts = max(seen_restarts, status.restart_count)
        return finished(sandbox, namespace, "flaky", "Failed")

    j = wait_for(failed, timeout=15, what="the Job to fail")
    assert condition(j, "Failed").reason == "BackoffLimitExceeded"
    assert seen_restarts >= 1
    assert j.status.failed == 1
    wait_for(lambda: not pods_of(sandbox, namespace, "job-name=flaky", active_only=False),
             timeout=10, what="the failed Job's pod to be deleted")
    created = [e for e in sandbox.core.list_namespaced_event(namespace).items
               if e.reason == "SuccessfulCreate" and e.involved_object.name == "flaky"]
    assert len(created) == 1


def test_job_past_its_active_deadline_fails(sandbox, namespace):
    sandbox.batch.create_namespaced_job(
        namespace, job("slow", "import time; time.sleep(60)", activeDeadlineSeconds=1))
    j = wait_for(lambda: finished(sandbox, namespace, "slow", "Failed"), timeout=10,
                 what="the deadline to pass")
    assert condition(j, "Failed").reason == "DeadlineExceeded"
    wait_for(lambda: not pods_of(sandbox, namespace, "job-name=slow", active_only=False),
             timeout=10, what="the Job's pod to be stopped")


def test_finished_job_is_deleted_after_its_ttl(sandbox, namespace):
    sandbox.batch.create_namespaced_job(
        namespace, job("brief", "print('done')", ttlSecondsAfterFinished=0))

    def deleted():
        return not sandbox.batch.list_namespaced_job(namespace).items

    wait_for(deleted, timeout=10, what="the finished Job to be deleted")
    wait_for(lambda: not pods_of(sandbox, namespace, "job-name=brief", active_only=False),
             timeout=10, what="its pod to be collected")
