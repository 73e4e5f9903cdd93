"""A stage notebook stepped through in real JupyterLab, in headless Chromium, as a person would.

The notebook is a copy of ``notebooks/10_infrastructure.ipynb``, run against this session's
sandbox. The test enters a secret in the form (the sandbox's RDS master password then comes from
it), makes a value invalid and valid again, runs all cells, checks that the gate holds every cell
after it until Confirm is clicked, that progress bars rendered, that no cell failed, and that the
notebook JupyterLab saves (widget state included) keeps readable lines and nothing of the
secret. Screenshots go to test-artifacts/browser/.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from urllib.parse import quote

import nbformat
import pytest

from .harness import ARTIFACTS, PROJECT_ROOT

TYPED_SECRET = "Typed-In-Browser-7731"
NOTEBOOK = "10_infrastructure.ipynb"

# How JupyterLab renders an error output (a traceback).
ERROR_OUTPUT = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"

# Records which of the runbook's widgets ever appeared, however briefly.
SEEN_SCRIPT = """
window.__runbookSeen = {};
new MutationObserver(() => {
  for (const name of ["runbook-form", "runbook-progress", "runbook-gate"]) {
    if (document.querySelector("." + name)) { window.__runbookSeen[name] = true; }
  }
}).observe(document, {subtree: true, childList: true});
"""

def stage_notebook(path: Path) -> None:
    """A copy of the stage notebook, outputs cleared (JupyterLab saves into the copy)."""
    source = nbformat.read(str(PROJECT_ROOT / "notebooks" / NOTEBOOK), as_version=4)
    for cell in source.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.write(source, str(path))


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def secret_forms(value: str) -> list[str]:
    return [value, quote(value, safe=""), base64.b64encode(value.encode()).decode()]


def open_notebook(browser, lab, name: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.set_default_timeout(60_000)
    page.add_init_script(SEEN_SCRIPT)
    page.goto(lab.page_url(name))
    page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=120_000)
    return page


def fill_field(page, css: str, value: str) -> None:
    """Type into a form field and commit it (the fields sync on Enter)."""
    field = page.locator(f"{css} input")
    field.fill(value)
    field.press("Enter")


def outputs_text(page) -> str:
    return page.locator(".jp-Notebook").inner_text()


def test_stage_notebook_in_jupyterlab(lab, browser):
    started = time.monotonic()
    path = lab.root_dir / NOTEBOOK
    stage_notebook(path)
    page = open_notebook(browser, lab, NOTEBOOK)
    try:
        _step_through(page, path)
    except Exception:
        shot(page, "failure")
        raise
    finally:
        page.close()
    # What the run took, for the report (the whole test includes JupyterLab and the sandbox).
    print(f"notebook stepped through in {time.monotonic() - started:.1f} s")


def _step_through(page, path: Path) -> None:
    # The parameters cell and the form, run one by one as a person starts.
    page.locator(".jp-Cell").first.click()
    for _ in range(3):
        page.keyboard.press("Shift+Enter")
    form = page.locator(".runbook-form")
    form.wait_for()
    assert "valid (sandbox.yaml)" in form.inner_text()
    shot(page, "form")

    # A secret typed into the form: taken into the kernel, the field cleared at once.
    secret = page.locator(".runbook-secret-POSTGRES_PASSWORD")
    fill_field(page, ".runbook-secret-POSTGRES_PASSWORD", TYPED_SECRET)
    page.wait_for_function(
        "() => document.querySelector('.runbook-secret-POSTGRES_PASSWORD input').value === ''")
    form.get_by_text("set in this kernel's environment (POSTGRES_PASSWORD)").wait_for()
    assert secret.locator("input").input_value() == ""

    # A wrong value shows its message beside the field, and the group counts it.
    form.locator('.jupyter-widget-Collapse-header:has(span:text-is("cluster"))').click()
    fill_field(page, ".runbook-field-cluster-nodes", "0")
    form.get_by_text("0 nodes is outside 1..100").wait_for()
    form.get_by_text("cluster (2 problems)").wait_for()
    assert "2 problems" in form.inner_text()
    shot(page, "form-problem")
    fill_field(page, ".runbook-field-cluster-nodes", "2")
    form.get_by_text("0 nodes is outside 1..100").wait_for(state="detached")
    assert "valid (sandbox.yaml)" in form.inner_text()

    # Run All: the gate blocks every cell after it until Confirm is clicked.
    page.locator('.lm-MenuBar-itemLabel:text-is("Run")').click()
    page.locator('.lm-Menu-itemLabel:text-is("Run All Cells")').click()
    confirm = page.locator(".runbook-gate-confirm")
    confirm.or_(page.locator(ERROR_OUTPUT)).first.wait_for(timeout=120_000)
    assert not page.locator(ERROR_OUTPUT).count(), outputs_text(page)
    assert "This will create the EKS cluster" in page.locator(".runbook-gate").inner_text()
    assert "Cost class: billable on AWS" in page.locator(".runbook-gate").inner_text()
    time.sleep(3)
    assert page.locator(".runbook-gate-confirm").is_visible()
    text = outputs_text(page)
    assert "waiting for" not in text and "finished in" not in text
    prompts = page.locator(".jp-InputArea-prompt").all_inner_texts()
    assert prompts[-1].strip() == "[*]:", prompts
    shot(page, "gate-waiting")

    confirm.click()
    page.locator(".runbook-progress").wait_for(state="attached", timeout=60_000)
    shot(page, "progress")
    page.locator(".jp-Notebook").get_by_text("Next:", exact=True).wait_for(timeout=120_000)
    page.get_by_text("Python 3 (ipykernel) | Idle").wait_for()
    seen = page.evaluate("() => window.__runbookSeen")
    assert seen.get("runbook-progress") and seen.get("runbook-gate"), seen
    text = outputs_text(page)
    assert "Gate answered: confirmed by a click" in text
    assert "VPC of cluster dbos-app-cluster: done after" in text
    assert "Traceback" not in text
    # The form shown again by "Run All" reads the kernel: the secret is still there.
    assert "set in this kernel's environment (POSTGRES_PASSWORD)" in text
    page.locator(".jp-Cell").last.scroll_into_view_if_needed()
    shot(page, "finished")

    _save_and_check(page, path)


def _save_and_check(page, path: Path) -> None:
    before = path.stat().st_mtime
    page.locator(".jp-Notebook").click(position={"x": 5, "y": 5})
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + 30
    while path.stat().st_mtime == before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert path.stat().st_mtime != before, "the notebook was not saved"
    time.sleep(0.5)
    raw = path.read_text()
    saved = nbformat.reads(raw, as_version=4)

    # Not a byte of the typed secret, in any of its usual encodings, widget state included.
    assert "widgets" in saved.metadata, "widget state was not saved: nothing was checked"
    widget_state = json.dumps(saved.metadata["widgets"])
    for form in secret_forms(TYPED_SECRET):
        assert form not in raw
        assert form not in widget_state

    outputs = [o for c in saved.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    texts = [o.get("data", {}).get("text/plain", "") or o.get("text", "") for o in outputs]
    texts = ["".join(t) if isinstance(t, list) else t for t in texts]
    # The wait and the gate left readable lines, not widget placeholders.
    wait_lines = [o for o in outputs
                  if ": done after" in str(o.get("data", {}).get("text/plain"))]
    assert wait_lines, texts
    assert all("application/vnd.jupyter.widget-view+json" not in o["data"] for o in wait_lines)
    assert any("confirmed at" in t for t in texts), texts
    assert any("Stage 10 Infrastructure finished in" in t for t in texts), texts


@pytest.fixture(autouse=True)
def _artifacts_folder():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "failure.png").unlink(missing_ok=True)
