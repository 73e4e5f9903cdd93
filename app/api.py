"""The sample app's HTTP interface, a FastAPI app over one :class:`AppRuntime`.

``main.py`` serves it with uvicorn. Routes:

- ``GET /healthz``: 200 once DBOS is launched and the queue registered; 503 while
  starting, draining or stopped. Readiness and liveness probe.
- ``GET /metrics/{queue}``: ``{"queue_length": N}``, the ENQUEUED plus PENDING workflows
  of a queue, which KEDA divides by the worker concurrency. 404 for an unknown queue.
- ``GET /enqueue/{seconds}``: enqueue a durable sleep on the task queue; returns its ID.
- ``GET /workflows/{workflow_id}``: a workflow's status, for load tests and operators.
- ``GET /workflows?version=V&status=S1,S2``: how many workflows of an application version
  are in those statuses (an upgrade keeps the old version while it has any ENQUEUED or
  PENDING).
- ``GET /version``: application version, executor ID and dbos version.

Handlers that call DBOS are plain ``def``: DBOS's synchronous API refuses to run inside
the event loop, and FastAPI runs plain handlers on its thread pool.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import logging
import math
from contextlib import asynccontextmanager

from dbos import DBOS
from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse
from lifecycle import AppRuntime
from workflows import sleep_workflow

log = logging.getLogger("dbos_app.api")

# What KEDA must count: waiting work plus work a worker is running.
QUEUE_DEPTH_STATUSES = ["ENQUEUED", "PENDING"]
WORKFLOW_STATUSES = {"ENQUEUED", "PENDING", "SUCCESS", "ERROR", "CANCELLED",
                     "MAX_RECOVERY_ATTEMPTS_EXCEEDED"}


def parse_seconds(raw: str, max_seconds: float) -> float:
    """The sleep duration from the URL; HTTPException 400 saying what is wrong."""
    try:
        seconds = float(raw)
    except ValueError:
        raise HTTPException(
            status_code=400, detail=f"seconds must be a number, got {raw!r}"
        ) from None
    if not math.isfinite(seconds):
        raise HTTPException(status_code=400, detail=f"seconds must be finite, got {raw!r}")
    if seconds < 0:
        raise HTTPException(status_code=400, detail=f"seconds must not be negative, got {raw}")
    if seconds > max_seconds:
        raise HTTPException(
            status_code=400,
            detail=f"seconds must be at most {max_seconds:g} (MAX_SLEEP_SECONDS), got {raw}",
        )
    return seconds


def _is_json(value: object) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def create_api(runtime: AppRuntime) -> FastAPI:
    """Build the FastAPI app; its lifespan launches DBOS and destroys it at the end."""
    settings = runtime.settings

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        runtime.start()
        yield
        await asyncio.to_thread(runtime.stop)

    api = FastAPI(title="dbos-app", lifespan=lifespan, docs_url=None, redoc_url=None)

    def require_dbos() -> None:
        if not runtime.dbos_available:
            raise HTTPException(status_code=503, detail=f"DBOS is not available ({runtime.phase})")

    @api.get("/healthz")
    def healthz() -> JSONResponse:
        phase = runtime.phase
        if phase != "ready":
            return JSONResponse({"status": phase}, status_code=503)
        return JSONResponse({"status": phase})

    @api.get("/metrics/{queue}")
    def queue_metrics(queue: str) -> dict:
        require_dbos()
        if DBOS.retrieve_queue(queue) is None:
            raise HTTPException(status_code=404, detail=f"queue {queue!r} is not registered")
        workflows = DBOS.list_queued_workflows(
            queue_name=queue,
            status=QUEUE_DEPTH_STATUSES,
            load_input=False,
            load_output=False,
        )
        return {"queue_length": len(workflows)}

    @api.get("/enqueue/{seconds}")
    def enqueue(seconds: str) -> dict:
        duration = parse_seconds(seconds, settings.max_sleep_s)
        if not runtime.accepting_work:
            raise HTTPException(status_code=503, detail=f"not accepting work while {runtime.phase}")
        handle = DBOS.enqueue_workflow(settings.queue_name, sleep_workflow, duration)
        workflow_id = handle.get_workflow_id()
        log.info("enqueued %s: sleep %g s on %s", workflow_id, duration, settings.queue_name)
        return {"workflow_id": workflow_id, "queue": settings.queue_name, "seconds": duration}

    @api.get("/workflows")
    def count_workflows(version: str, status: str = "ENQUEUED,PENDING") -> dict:
        require_dbos()
        statuses = [s.strip().upper() for s in status.split(",") if s.strip()]
        unknown = sorted(set(statuses) - WORKFLOW_STATUSES)
        if unknown or not statuses:
            raise HTTPException(
                status_code=400,
                detail=f"status must list some of {sorted(WORKFLOW_STATUSES)}; got {unknown}",
            )
        workflows = DBOS.list_workflows(
            app_version=version, status=statuses, load_input=False, load_output=False
        )
        return {"version": version, "status": statuses, "count": len(workflows)}

    @api.get("/workflows/{workflow_id}")
    def workflow_status(workflow_id: str) -> dict:
        require_dbos()
        status = DBOS.get_workflow_status(workflow_id)
        if status is None:
            raise HTTPException(status_code=404, detail=f"no workflow with ID {workflow_id!r}")
        output = status.output if _is_json(status.output) else repr(status.output)
        return {
            "workflow_id": status.workflow_id,
            "status": status.status,
            "name": status.name,
            "queue_name": status.queue_name,
            "executor_id": status.executor_id,
            "app_version": status.app_version,
            "created_at": status.created_at,
            "updated_at": status.updated_at,
            "output": output,
            "error": str(status.error) if status.error is not None else None,
        }

    @api.get("/version")
    def version() -> dict:
        require_dbos()
        return {
            "app_version": DBOS.application_version,
            "executor_id": DBOS.executor_id,
            "dbos_version": importlib.metadata.version("dbos"),
        }

    return api
