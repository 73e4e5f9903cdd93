"""Start-up and shutdown of DBOS inside the sample app, including the drain on SIGTERM.

``main.py`` creates one :class:`AppRuntime`; ``api.py`` asks it for the phase (for
``/healthz``) and whether DBOS may be called. The runtime launches DBOS on a background
thread so the HTTP server answers ``503 starting`` meanwhile, and on SIGTERM it drains:

1. ``/healthz`` turns 503 at once (the drain flag is an Event, safe to set from a signal
   handler);
2. the queue workers stop and are joined, so this process claims nothing more;
3. in-flight workflows get until ``DRAIN_TIMEOUT_SECONDS`` after the signal to finish;
4. what is still PENDING under this executor ID is handed back: set ENQUEUED on its own
   queue, where the other replicas pick it up. A durable sleep resumes there with only
   the time that remains.

Why the hand-back: executor IDs come from pod names, which never return after a rollout
or a scale-down, so recovery at the next start of "the same" executor never happens. The
hand-back comes only after step 2: a queue worker still polling here would re-claim
what was just handed back and strand it again. An execution still running here after
the hand-back no longer owns its workflow: DBOS 3.4 fences its next checkpoint and its
outcome by owner token, so the replica that dequeues it is the only one that records.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable

from dbos import DBOS
from settings import Settings

log = logging.getLogger("dbos_app.lifecycle")

# Queue worker threads finish their current dequeue transaction within this bound.
QUEUE_STOP_TIMEOUT_S = 5.0
# How long DBOS.destroy may take before the process exits regardless.
DESTROY_TIMEOUT_S = 5.0
# Poll interval while waiting for in-flight workflows.
DRAIN_POLL_S = 0.25
# Thread name prefix DBOS 3.4 gives its per-queue worker threads.
QUEUE_WORKER_PREFIX = "queue-worker-"


def describe_error(exc: BaseException) -> str:
    """One line naming an exception; DBOS and driver messages carry no credentials."""
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first_line}" if first_line else type(exc).__name__


class AppRuntime:
    """The DBOS instance of this process and its phase: starting, ready, draining, stopped."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.exit_code = 0
        # Called once the process should exit (drain finished or launch failed).
        self.on_finished: Callable[[], None] = lambda: None
        self._launched = threading.Event()
        self._launch_ended = threading.Event()
        self._ready = threading.Event()
        self._drain_requested = threading.Event()
        self._failed = threading.Event()
        self._stopped = threading.Event()
        self._dbos: DBOS | None = None

    # -- phase ---------------------------------------------------------------------------

    @property
    def phase(self) -> str:
        if self._failed.is_set():
            return "failed"
        if self._stopped.is_set():
            return "stopped"
        if self._drain_requested.is_set():
            return "draining"
        if self._ready.is_set():
            return "ready"
        return "starting"

    @property
    def dbos_available(self) -> bool:
        """True while DBOS may be called: launched and not yet destroyed."""
        return self._launched.is_set() and not self._stopped.is_set()

    @property
    def drain_requested(self) -> bool:
        return self._drain_requested.is_set()

    @property
    def accepting_work(self) -> bool:
        return self.phase == "ready"

    # -- start-up ------------------------------------------------------------------------

    def start(self) -> None:
        """Launch DBOS in the background; the HTTP server keeps answering meanwhile."""
        threading.Thread(target=self._launch, name="dbos-launch", daemon=True).start()

    def _launch(self) -> None:
        settings = self.settings
        try:
            self._dbos = DBOS(config=settings.dbos_config())
            DBOS.launch()
            self._launched.set()
            # Queues live in the database and can only be registered after launch.
            DBOS.register_queue(settings.queue_name, worker_concurrency=settings.worker_concurrency)
        except Exception as exc:  # noqa: BLE001 - any launch failure must end the process
            log.error("DBOS failed to start: %s", describe_error(exc))
            self.exit_code = 1
            self._failed.set()
            self._launch_ended.set()
            self.on_finished()
            return
        self._launch_ended.set()
        self._ready.set()
        if not settings.executor_id:
            # Replicas sharing one ID would hand back each other's work when one drains.
            log.warning(
                "DBOS__VMID is not set: executor ID is %r; give each replica its own "
                "(the Deployment sets it from the pod name)",
                DBOS.executor_id,
            )
        log.info(
            "ready: executor %s, application version %s, queue %s (worker concurrency %d)",
            DBOS.executor_id,
            DBOS.application_version,
            settings.queue_name,
            settings.worker_concurrency,
        )

    # -- drain ---------------------------------------------------------------------------

    def begin_drain(self) -> None:
        """Start draining; safe to call from a signal handler, and more than once."""
        if self._drain_requested.is_set():
            return
        self._drain_requested.set()
        threading.Thread(target=self._drain, name="dbos-drain", daemon=True).start()

    def _drain(self) -> None:
        deadline = time.monotonic() + self.settings.drain_timeout_s
        log.info("draining: readiness is now 503, stopping queue workers")
        try:
            # A drain during start-up waits for launch to settle before stopping its workers.
            if not self._launch_ended.wait(timeout=max(0.0, deadline - time.monotonic())):
                log.warning("draining: DBOS is still launching; exiting without it")
            elif self._launched.is_set() and not self._stopped.is_set():
                workers_stopped = self._stop_dequeuing()
                self._wait_for_in_flight(deadline)
                self._hand_back()
                if not workers_stopped and self._join_queue_workers():
                    # A late worker may have claimed work after the first hand-back.
                    self._hand_back()
        except Exception as exc:  # noqa: BLE001 - the server must still be told to exit
            log.error("drain failed: %s", describe_error(exc))
            self.exit_code = 1
        self.on_finished()

    def _stop_dequeuing(self) -> bool:
        """Stop every DBOS polling thread; True once the queue workers have exited."""
        assert self._dbos is not None
        for event in list(self._dbos.background_thread_stop_events):
            event.set()
        return self._join_queue_workers()

    def _join_queue_workers(self) -> bool:
        """Wait for the queue workers to exit (bounded); True if they all did."""
        limit = time.monotonic() + QUEUE_STOP_TIMEOUT_S
        stopped = True
        for thread in threading.enumerate():
            if thread.name.startswith(QUEUE_WORKER_PREFIX):
                thread.join(timeout=max(0.0, limit - time.monotonic()))
                if thread.is_alive():
                    log.warning("queue worker %s did not stop in time", thread.name)
                    stopped = False
        return stopped

    def _own_pending(self) -> list:
        return DBOS.list_workflows(
            status="PENDING",
            executor_id=DBOS.executor_id,
            load_input=False,
            load_output=False,
        )

    def _wait_for_in_flight(self, deadline: float) -> None:
        pending = self._own_pending()
        if pending:
            log.info(
                "draining: %d workflow(s) in flight, waiting up to %.1f s",
                len(pending),
                max(0.0, deadline - time.monotonic()),
            )
        while pending and time.monotonic() < deadline:
            time.sleep(min(DRAIN_POLL_S, max(0.0, deadline - time.monotonic())))
            pending = self._own_pending()

    def _hand_back(self) -> None:
        """Set this executor's unfinished workflows ENQUEUED on their own queues."""
        by_queue: dict[str | None, list[str]] = defaultdict(list)
        for status in self._own_pending():
            by_queue[status.queue_name].append(status.workflow_id)
        if not by_queue:
            log.info("drained: no workflow left in flight")
            return
        for queue_name, workflow_ids in by_queue.items():
            # queue_name None (not enqueued) lands on DBOS's internal queue, which every
            # replica polls.
            DBOS.resume_workflows(workflow_ids, queue_name=queue_name)
            log.info(
                "handed back %d unfinished workflow(s) to queue %s: %s",
                len(workflow_ids),
                queue_name,
                ", ".join(workflow_ids),
            )

    # -- shutdown ------------------------------------------------------------------------

    def stop(self) -> None:
        """Destroy DBOS, bounded in time; in-flight work was handed back by the drain."""
        if self._stopped.is_set():
            return
        self._launch_ended.wait(timeout=DESTROY_TIMEOUT_S)
        self._stopped.set()
        if not self._launched.is_set() and not self._failed.is_set():
            return
        worker = threading.Thread(
            target=DBOS.destroy,
            kwargs={"workflow_completion_timeout_sec": 0},
            name="dbos-destroy",
            daemon=True,
        )
        worker.start()
        worker.join(timeout=DESTROY_TIMEOUT_S)
        if worker.is_alive():
            log.warning("DBOS did not shut down within %.0f s; exiting anyway", DESTROY_TIMEOUT_S)
