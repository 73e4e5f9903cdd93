"""Benchmark: per-stage wall time of a sandbox rehearsal, and the chain's own overhead.

Runs the whole chain against a fresh sandbox (papermill, a kernel per stage), then runs the same
notebooks' code cells directly in this one process against another fresh sandbox, and reports
per stage: chain time, direct time, and the difference (kernel start, papermill, notebook I/O).
Targets on a two-core machine: the rehearsal within 90 s, the overhead within 1.5 s a stage.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def fresh_environment(label: str) -> Path:
    root = Path(tempfile.mkdtemp(prefix=f"bench-{label}-"))
    os.environ["RUNBOOK_SANDBOX_DIR"] = str(root / "sandbox")
    os.environ["RUNBOOK_STATE_DIR"] = str(root / "state")
    return root


def chain_run() -> tuple[float, dict[str, float]]:
    from runbook_lib import chain

    root = fresh_environment("chain")
    start = time.monotonic()
    record = chain.run(ROOT / "parameters" / "sandbox.yaml", records_dir=root / "records")
    total = time.monotonic() - start
    return total, {s.name: s.duration_s for s in record.stages}


def direct_run() -> tuple[float, dict[str, float]]:
    """Execute every notebook's code cells in this process, as one long script."""
    from runbook_lib import chain, sandbox

    fresh_environment("direct")
    os.environ["RUNBOOK_HEADLESS"] = "1"
    os.environ.pop("RUNBOOK_RECORD_DIR", None)
    start = time.monotonic()
    sandbox.up()
    times = {}
    try:
        for name in chain.available_stages():
            nb_path = next((ROOT / "notebooks").glob(f"*_{name}.ipynb"))
            nb = nbformat.read(str(nb_path), as_version=4)
            namespace: dict = {}
            began = time.monotonic()
            for cell in nb.cells:
                if cell.cell_type == "code":
                    exec(compile(cell.source, f"{nb_path.name}", "exec"), namespace)
            times[name] = round(time.monotonic() - began, 2)
    finally:
        sandbox.down()
    return time.monotonic() - start, times


def main() -> None:
    chain_total, chain_times = chain_run()
    direct_total, direct_times = direct_run()
    print(f"\n{'stage':<16}{'chain s':>10}{'direct s':>10}{'overhead s':>12}")
    for name, seconds in chain_times.items():
        direct = direct_times.get(name, 0.0)
        print(f"{name:<16}{seconds:>10.2f}{direct:>10.2f}{seconds - direct:>12.2f}")
    overheads = [chain_times[n] - direct_times.get(n, 0.0) for n in chain_times]
    print(f"\nrehearsal (chain, sandbox up and down included): {chain_total:.1f} s "
          f"(target 90 s)")
    print(f"same cells in one process: {direct_total:.1f} s")
    print(f"chain overhead per stage: mean {sum(overheads) / len(overheads):.2f} s, "
          f"max {max(overheads):.2f} s (target 1.5 s)")
    print(json.dumps({"chain_total_s": round(chain_total, 1), "stages": chain_times,
                      "direct": direct_times}))


if __name__ == "__main__":
    main()
