"""The sample app's durable workflow: sleep a given number of seconds.

``api.py`` enqueues it on the task queue; any replica's queue worker runs it. The sleep
is a DBOS durable sleep: its wake-up time is checkpointed when it starts, so a workflow
recovered or handed over to another replica sleeps only for the time that remains. The
output reports both durations, which makes that visible from ``/workflows/{id}``.
"""

from __future__ import annotations

import time

from dbos import DBOS


@DBOS.workflow(name="sleep_workflow")
def sleep_workflow(seconds: float) -> dict:
    """Sleep durably for ``seconds``; return the requested and the actually slept time."""
    # Measured around the durable sleep only to report it; nothing branches on it.
    started = time.monotonic()
    DBOS.sleep(seconds)
    return {"requested_s": seconds, "slept_s": round(time.monotonic() - started, 3)}
