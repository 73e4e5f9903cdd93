"""The parameters form at the top of every stage notebook, and the driving notebook's chain run.

``parameters_form(globals())`` follows the ``parameters`` cell of each notebook. In JupyterLab it
shows a form: pick a parameters file from ``parameters/`` (sandbox.yaml unless the notebook says
otherwise), see and edit its values group by group, and read the validation messages beside the
fields, refreshed on every change by :func:`runbook_lib.parameters.validate`. The values are
written at once into the notebook's own variables (``target`` and each group its parameters cell
declares), exactly as papermill would inject them, so the next cell's ``begin()`` uses them.
"Run All" without touching the form therefore runs the defaults: the sandbox.

Secret values never become parameters. The form has password fields for the walkthrough's
variables (``POSTGRES_PASSWORD``, ``APP_ROLE_PASSWORD``, ``CONDUCTOR_API_KEY``): a value entered
there is put into this kernel's environment, registered for scrubbing, and the field is cleared
at once, so neither the notebook, its outputs nor the widget state saved with it holds it; the
secret's source parameter becomes ``env:NAME``.

Headless (papermill, the chain runner, nbval: see :func:`runbook_lib.gates.interactive`) the
form shows nothing and changes nothing.

:func:`run_chain` is the driving notebook's step: it runs :func:`runbook_lib.chain.run` with the
form's file and edits, after a confirmation, and shows the record's summary.
"""

from __future__ import annotations

import copy
import html
import logging
import os
import re
import types
import typing
from pathlib import Path

import yaml
from pydantic import BaseModel

from runbook_lib import parameters as params_mod
from runbook_lib import redact
from runbook_lib.errors import ParameterError

log = logging.getLogger("runbook_lib.form")

# Secret parameter -> the environment variable its value is kept in (kernel memory only).
SECRET_VARIABLES = {
    "postgres_password": "POSTGRES_PASSWORD",
    "app_role_password": "APP_ROLE_PASSWORD",
    "conductor_api_key": "CONDUCTOR_API_KEY",
}

# The form shown last for each notebook namespace (the driving notebook reads its choices).
_forms: dict[int, ParametersForm] = {}


def parameters_form(namespace: dict) -> None:
    """Show the parameters form when a person runs the notebook; do nothing headless."""
    from runbook_lib.gates import interactive

    if not interactive():
        return
    form = ParametersForm(namespace)
    _forms[id(namespace)] = form
    form.show()


def current_form(namespace: dict) -> ParametersForm | None:
    """The form last shown for this notebook namespace, if any."""
    return _forms.get(id(namespace))


def declared_groups(namespace: dict) -> list[str]:
    """The parameter groups a notebook's parameters cell declares (``target`` excluded)."""
    return [g for g in params_mod.GROUPS
            if g != "target" and g in namespace
            and (namespace[g] is None or isinstance(namespace[g], (dict, str)))]


def parameter_files() -> list[Path]:
    """The parameters files to choose from: every YAML file in parameters/ but the base."""
    files = sorted(params_mod.PARAMETERS_DIR.glob("*.yaml"))
    files = [f for f in files if f.name != params_mod.BASE_FILE.name]
    return sorted(files, key=lambda f: (f != params_mod.SANDBOX_FILE, f.name))


# Fields ---------------------------------------------------------------------------------------


class Field:
    """One editable leaf of the parameters: its dotted path and the model's type for it."""

    def __init__(self, path: str, annotation):
        self.path = path
        self.annotation = annotation
        args = typing.get_args(annotation)
        origin = typing.get_origin(annotation)
        self.choices = list(args) if origin is typing.Literal else None
        union = origin in (typing.Union, types.UnionType)
        self.types = {a for a in args if a is not type(None)} if union else {annotation}
        self.optional = union and type(None) in args

    @property
    def is_bool(self) -> bool:
        return self.types == {bool}

    def to_text(self, value) -> str:
        return "" if value is None else str(value)

    def from_text(self, text: str):
        """The value for ``text``: strings stay strings, numbers and durations are read as YAML
        (so ``15m`` stays text for the duration check), empty means null where null is allowed."""
        if text.strip() == "" and self.optional:
            return None
        if self.types <= {str}:
            return text
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            return text
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            return value
        return text


def _fields(model: type[BaseModel], prefix: str) -> list[Field]:
    found = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        path = f"{prefix}.{name}" if prefix else name
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found += _fields(annotation, path)
        else:
            found.append(Field(path, annotation))
    return found


def group_fields(group: str) -> list[Field]:
    """The editable fields of one parameter group (a top-level scalar is its own field)."""
    info = params_mod.Parameters.model_fields[group]
    annotation = info.annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _fields(annotation, group)
    return [Field(group, annotation)]


def _get(values: dict, path: str):
    current = values
    for key in path.split("."):
        if not isinstance(current, dict):
            return None
        current = current.get(key)
    return current


def _set(values: dict, path: str, value) -> None:
    keys = path.split(".")
    current = values
    for key in keys[:-1]:
        if not isinstance(current.get(key), dict):
            current[key] = {}
        current = current[key]
    current[keys[-1]] = value


_PATH = re.compile(r"^([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)")


def locate(problem: str, known: set[str]) -> str | None:
    """The field or group a ``ParameterError`` problem line is about, if it names one."""
    match = _PATH.match(problem)
    if not match:
        return None
    parts = match.group(1).split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in known:
            return candidate
        parts.pop()
    return None


def problems_by_place(problems: list[str], known: set[str]) -> dict[str | None, list[str]]:
    """Problem lines grouped by field path (or group, or None for the rest), each without its
    leading ``path:``."""
    placed: dict[str | None, list[str]] = {}
    for problem in problems:
        place = locate(problem, known)
        text = problem
        if place and problem.startswith(place + ":"):
            text = problem[len(place) + 1:].strip()
        placed.setdefault(place, []).append(text)
    return placed


def difference(new: dict, old: dict) -> dict:
    """The leaves of ``new`` that differ from ``old``, as a nested dict (for overrides)."""
    changed = {}
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(old.get(key), dict):
            inner = difference(value, old[key])
            if inner:
                changed[key] = inner
        elif key not in old or old[key] != value:
            changed[key] = copy.deepcopy(value)
    return changed


# The form -------------------------------------------------------------------------------------


class ParametersForm:
    """The widgets of the form and the values they edit (see the module docstring)."""

    def __init__(self, namespace: dict, file: Path | None = None):
        self.namespace = namespace
        self.groups = declared_groups(namespace)
        self.files = parameter_files()
        self.problems: list[str] = []
        self._entered: set[str] = set()
        given = {g: namespace[g] for g in self.groups if isinstance(namespace.get(g), dict)}
        self.file = file or self._initial_file(namespace.get("target"))
        self.values = self._load(self.file, given)
        self._build()
        self.apply()

    # What the form edits ----------------------------------------------------------------------

    def _initial_file(self, target) -> Path:
        previous = current_form(self.namespace)
        if previous is not None and previous.file in self.files:
            return previous.file
        named = params_mod.PARAMETERS_DIR / f"{target}.yaml"
        return named if named in self.files else params_mod.SANDBOX_FILE

    def _load(self, file: Path, given: dict | None = None) -> dict:
        values = params_mod.merged_values(file, [given] if given else None)
        defaults = params_mod.Parameters().model_dump(mode="json")
        values = params_mod.deep_merge(defaults, values)
        for key in self._entered:
            _set(values, f"secrets.{key}", f"env:{SECRET_VARIABLES[key]}")
        return values

    def given(self) -> dict:
        """What the form writes into the notebook: ``target`` and each declared group."""
        given = {"target": self.values.get("target")}
        given.update({g: copy.deepcopy(self.values.get(g)) for g in self.groups})
        return given

    def apply(self) -> None:
        """Write the values into the notebook's variables, then validate as ``begin()`` will."""
        given = self.given()
        self.namespace.update(given)
        try:
            params_mod.validate(params_mod.merged_values(None, [given]), self.file.name)
            self.problems = []
        except ParameterError as exc:
            self.problems = list(exc.problems)
        self._show_problems()

    # Widgets ----------------------------------------------------------------------------------

    def _build(self) -> None:
        import ipywidgets as widgets

        self._file = widgets.Dropdown(
            options=[(f.name, f) for f in self.files], value=self.file,
            description="Parameters file", style={"description_width": "initial"})
        self._file.observe(self._file_changed, names="value")
        self._status = widgets.HTML()
        self._general = widgets.HTML()
        self._scalars = widgets.VBox()
        self._sections = widgets.Accordion()
        self._secret_box = self._secret_fields() if "secrets" in self.groups else None
        note = widgets.HTML(
            "<small>The values go into this notebook's variables "
            f"({html.escape(', '.join(['target'] + self.groups))}); the next cell's "
            "<code>begin()</code> uses them. Secret values stay in this kernel's memory.</small>")
        children = [widgets.HBox([self._file, self._status]), self._general, self._scalars,
                    self._sections]
        if self._secret_box is not None:
            children.append(self._secret_box)
        self.widget = widgets.VBox(children + [note])
        self.widget.add_class("runbook-form")
        self._fill_sections()

    def _fill_sections(self) -> None:
        import ipywidgets as widgets

        # Widgets of a file shown before are closed, so their models do not pile up.
        for old in getattr(self, "_section_widgets", []):
            old.close()
        self._section_widgets: list[widgets.Widget] = []
        self._inputs: dict[str, widgets.Widget] = {}
        self._messages: dict[str, widgets.HTML] = {}
        self._fields = {}
        scalars, sections, titles = [], [], []
        for group in ["target"] + self.groups:
            fields = group_fields(group)
            if len(fields) == 1 and fields[0].path == group:
                # A top-level value (target, deployment) sits above the groups.
                self._fields[group] = fields[0]
                scalars.append(self._row(fields[0]))
                continue
            # Problems about the group as a whole (cross-field checks) go first.
            self._messages[group] = widgets.HTML()
            rows = [self._messages[group]]
            for field in fields:
                self._fields[field.path] = field
                rows.append(self._row(field))
            sections.append(widgets.VBox(rows))
            titles.append(group)
        self._section_widgets += sections + list(self._messages.values())
        self._titles = titles
        self._scalars.children = scalars
        self._sections.children = sections
        self._sections.titles = tuple(titles)

    def _row(self, field: Field):
        import ipywidgets as widgets

        value = _get(self.values, field.path)
        label = field.path.split(".", 1)[-1]
        layout = widgets.Layout(width="420px")
        if field.choices:
            choices = [str(c) for c in field.choices]
            current = str(value) if str(value) in choices else choices[0]
            box = widgets.Dropdown(options=choices, value=current, description=label,
                                   layout=layout)
        elif field.is_bool:
            box = widgets.Checkbox(value=bool(value), description=label, indent=True)
        else:
            box = widgets.Text(value=field.to_text(value), description=label,
                               continuous_update=False, layout=layout)
        box.style = {"description_width": "200px"}
        box.add_class("runbook-field")
        box.add_class("runbook-field-" + field.path.replace(".", "-"))
        box.observe(lambda change, f=field: self._edited(f, change["new"]), names="value")
        message = widgets.HTML()
        message.add_class("runbook-problem")
        self._inputs[field.path] = box
        self._messages[field.path] = message
        row = widgets.HBox([box, message])
        self._section_widgets += [box, row]
        return row

    def _secret_fields(self):
        import ipywidgets as widgets

        rows = [widgets.HTML(
            "<b>Secret values</b> (optional): typed here, a value is kept only in this "
            "kernel's environment and the field is cleared. Its source becomes "
            "<code>env:NAME</code>.")]
        self._secret_status: dict[str, widgets.HTML] = {}
        for key, variable in SECRET_VARIABLES.items():
            box = widgets.Password(value="", description=variable, continuous_update=False,
                                   placeholder="type, then press Enter",
                                   layout=widgets.Layout(width="420px"),
                                   style={"description_width": "200px"})
            box.add_class("runbook-secret")
            box.add_class("runbook-secret-" + variable)
            status = widgets.HTML(self._secret_state(variable))
            box.observe(lambda change, k=key, b=box: self._secret_entered(k, b, change["new"]),
                        names="value")
            self._secret_status[variable] = status
            rows.append(widgets.HBox([box, status]))
        return widgets.VBox(rows)

    @staticmethod
    def _secret_state(variable: str) -> str:
        if os.environ.get(variable):
            return f"set in this kernel's environment ({variable})"
        return "not set"

    # Events -----------------------------------------------------------------------------------

    def _edited(self, field: Field, new) -> None:
        value = new if field.is_bool else (
            new if field.choices else field.from_text(new))
        _set(self.values, field.path, value)
        self.apply()

    def _secret_entered(self, key: str, box, value: str) -> None:
        if not value:
            return
        variable = SECRET_VARIABLES[key]
        # Take the value and clear the field at once: only the kernel's memory keeps it.
        redact.register(value)
        os.environ[variable] = value
        box.value = ""
        self._entered.add(key)
        source = f"env:{variable}"
        _set(self.values, f"secrets.{key}", source)
        field_box = self._inputs.get(f"secrets.{key}")
        if field_box is not None and field_box.value != source:
            field_box.value = source  # its observer applies the values
        else:
            self.apply()
        self._secret_status[variable].value = self._secret_state(variable)
        log.info("%s set in the kernel's environment from the form", variable)

    def _file_changed(self, change) -> None:
        self.file = change["new"]
        self.values = self._load(self.file)
        self._fill_sections()
        self.apply()

    # Showing ----------------------------------------------------------------------------------

    def _show_problems(self) -> None:
        known = set(self._messages)
        placed = problems_by_place(self.problems, known)
        for place, message in self._messages.items():
            lines = placed.get(place, [])
            message.value = "".join(
                f'<div style="color:#c62828">{html.escape(line)}</div>' for line in lines)
        general = placed.get(None, [])
        self._general.value = "".join(
            f'<div style="color:#c62828">{html.escape(line)}</div>' for line in general)
        titles = []
        for group in self._titles:
            count = sum(len(v) for k, v in placed.items()
                        if k and (k == group or k.startswith(group + ".")))
            titles.append(f"{group} ({count} problem{'s' if count != 1 else ''})"
                          if count else group)
        self._sections.titles = tuple(titles)
        count = len(self.problems)
        self._status.value = (
            f'<span style="color:#2e7d32">valid ({html.escape(self.file.name)})</span>'
            if not count else
            f'<span style="color:#c62828">{count} problem{"s" if count != 1 else ""}'
            "</span>")

    def show(self) -> None:
        from IPython.display import display

        bundle = self.widget._repr_mimebundle_()
        bundle["text/plain"] = (f"Parameters form ({self.file.name}); run this cell in "
                                "JupyterLab to edit the values.")
        display(bundle, raw=True)


# The driving notebook -------------------------------------------------------------------------


def run_chain(namespace: dict, stages: list[str] | str | None = None,
              records_dir: Path | None = None):
    """Run the chain with the form's parameters file and edits; show the record's summary.

    In JupyterLab a confirmation states what will run on which target and its cost class, and
    nothing starts until it is clicked. Returns the :class:`~runbook_lib.record.RunRecord`;
    a failing stage raises :class:`~runbook_lib.chain.StageFailed` after the summary is shown.
    """
    from runbook_lib import chain, gates
    from runbook_lib.stage import GateNotAnswered, given_values

    # The parameters: the form's file and edits, else what the notebook's variables say.
    form = current_form(namespace)
    if form is not None:
        file, values = form.file, form.values
    else:
        target = namespace.get("target") or "sandbox"
        file = params_mod.PARAMETERS_DIR / f"{target}.yaml"
        values = params_mod.merged_values(file, [given_values(namespace)])
    defaults = params_mod.Parameters().model_dump(mode="json")
    overrides = difference(values, params_mod.deep_merge(defaults, params_mod.merged_values(file)))
    params = params_mod.validate(params_mod.merged_values(file, [overrides]), file.name)
    if isinstance(stages, str):
        stages = [name.strip() for name in stages.split(",") if name.strip()]
    selection = chain.Selection(only=list(stages) if stages else None)
    names = chain.select(chain.available_stages(), selection, params)

    if gates.interactive():
        action = (f"run the stages {', '.join(names)} on target {params.target} "
                  f"(deployment {params.deployment_id})")
        cost = ("free: everything runs on this machine" if params.target == "sandbox" else
                "billable on AWS (EKS, RDS, ECR: dollars per day while they exist)")
        if "cleanup" in names:
            cost += "; destructive: cleanup deletes the deployment and its data"
        answer = gates.confirm(action, cost=cost, timeout_s=gates.gate_timeout(params),
                               key="run_chain", title="Run the chain")
        if answer != "confirmed":
            raise GateNotAnswered(f"the chain was not started ({answer})")

    # The chain marks this process headless for its kernels; give the notebook its state back.
    saved = {k: os.environ.get(k) for k in ("RUNBOOK_HEADLESS", "RUNBOOK_RECORD_DIR")}
    try:
        record = chain.run(file, [overrides] if overrides else None, selection,
                           records_dir=records_dir or chain.RECORDS_DIR)
    except chain.StageFailed as exc:
        show_summary(exc.record_dir)
        raise
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    show_summary(record.directory)
    return record


def show_summary(record_dir: Path) -> None:
    """Show a record's summary (Markdown in JupyterLab, text elsewhere)."""
    path = Path(record_dir) / "summary.md"
    if not path.exists():
        print(f"No summary in {record_dir}")
        return
    text = path.read_text()
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:
        print(text)
        return
    if get_ipython() is None:
        print(text)
    else:
        display(Markdown(text))
