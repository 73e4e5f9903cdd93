# The two commands a fresh machine needs (see README.md). Both run the set-up first.
.PHONY: setup rehearse test benchmark notebooks

PY := .venv/bin/python

setup:
	@bash scripts/setup.sh

# Rehearse the whole runbook against the local sandbox, cleanup included; writes records/.
rehearse: setup
	$(PY) -m runbook_lib run -f parameters/sandbox.yaml

# Every test: the unit and integration suites, then the stage notebooks re-run by nbval (its
# own session, so that it starts from a fresh sandbox of its own).
test: setup
	$(PY) -m pytest tests
	$(PY) -m pytest notebooks --nbval --nbval-cell-timeout=300 \
		--nbval-sanitize-with tests/nbval-sanitize.cfg

benchmark: setup
	$(PY) benchmarks/run_all.py

# Rewrite the stage notebooks from scripts/stage_cells.py and store a fresh sandbox run's outputs.
notebooks: setup
	$(PY) scripts/build_notebooks.py
	$(PY) scripts/refresh_notebook_outputs.py
