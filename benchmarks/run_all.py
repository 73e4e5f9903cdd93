"""Run every benchmark script in turn and print their reports."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

for script in ("sandbox_up.py", "app_bench.py", "chain_bench.py"):
    path = HERE / script
    if path.exists():
        print(f"=== {script}", flush=True)
        subprocess.run([sys.executable, str(path)], check=False)
