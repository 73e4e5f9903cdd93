"""The sandbox's KEDA operator, which also plays the Kubernetes HPA controller.

The sandbox's helm stand-in installs the ``kedacore/keda`` chart as Deployment ``keda-operator``
in namespace ``keda``; the sandbox kubelet runs that pod (image ``ghcr.io/kedacore/keda``) as
``python -m runbook_lib.sandbox.addons.keda`` with ``KUBECONFIG`` and ``PORT`` in its environment.
The program does, for every ``keda.sh/v1alpha1`` ScaledObject, what KEDA's operator and metrics
server do, and what the controller manager's HPA controller does with the HPA that KEDA creates
(the sandbox has no controller manager, so nothing else scales on an HPA):

- create and keep ``keda-hpa-<name>`` (``autoscaling/v2``) owned by the ScaledObject, with one
  External metric per trigger, and write the ScaledObject's status as KEDA does;
- read each ``metrics-api`` trigger's URL (cluster URLs through the API server's service proxy),
  take KEDA's 0 ↔ min step (activation and ``cooldownPeriod``);
- every sync period run the HPA's arithmetic on the metric: recommendation with tolerance,
  stabilization windows, rate policies, clamps; write ``/scale``, the HPA status, a
  ``SuccessfulRescale`` Event, and one JSON line per decision on stdout (the pod log the runbook
  reads).

The module reads top to bottom in three layers. First the HPA arithmetic: pure functions over an
explicit clock, unit-tested against worked examples in ``tests/keda``. Then the KEDA side: what a
ScaledObject asks for, how a trigger's value is read, what the HPA object looks like. Last the
process: a small API client, the ScaledObject watch, one loop per ScaledObject, the health
endpoint and clean exit on SIGTERM.

Environment: ``KUBECONFIG``, ``PORT`` (health endpoint on 127.0.0.1), ``HPA_SYNC_PERIOD_SECONDS``
(the stand-in for ``--horizontal-pod-autoscaler-sync-period``, default 15),
``HPA_DOWNSCALE_STABILIZATION_SECONDS`` (``--horizontal-pod-autoscaler-downscale-stabilization``,
default 300), ``LOG_LEVEL``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import math
import os
import re
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

log = logging.getLogger("runbook_lib.sandbox.addons.keda")

# ---------------------------------------------------------------------------------------------
# The HPA arithmetic (pure: no I/O, the clock is an argument)
# ---------------------------------------------------------------------------------------------

TOLERANCE = 0.1

# The (reason, message) pairs the HPA controller writes into its conditions.
SCALE_UP_STABILIZED = (
    "ScaleUpStabilized",
    "recent recommendations were lower than current one, applying the lowest recent recommendation",
)
SCALE_DOWN_STABILIZED = (
    "ScaleDownStabilized",
    (
        "recent recommendations were higher than current one, applying the highest recent "
        "recommendation"
    ),
)
SCALE_UP_LIMIT = (
    "ScaleUpLimit",
    "the desired replica count is increasing faster than the maximum scale rate",
)
SCALE_DOWN_LIMIT = (
    "ScaleDownLimit",
    "the desired replica count is decreasing faster than the maximum scale rate",
)
TOO_MANY = ("TooManyReplicas", "the desired replica count is more than the maximum replica count")
TOO_FEW = ("TooFewReplicas", "the desired replica count is less than the minimum replica count")
WITHIN_RANGE = ("DesiredWithinRange", "the desired count is within the acceptable range")
# The controller manager's --horizontal-pod-autoscaler-downscale-stabilization default.
DEFAULT_DOWNSCALE_WINDOW_S = 300


@dataclass(frozen=True)
class ScalingPolicy:
    """One HPAScalingPolicy: at most ``value`` pods (or percent) per ``period_s`` seconds."""

    type: str  # "Pods" or "Percent"
    value: int
    period_s: int


@dataclass(frozen=True)
class ScalingRules:
    """HPAScalingRules with the API server's defaults already filled in."""

    window_s: int
    select: str = "Max"  # "Max", "Min" or "Disabled"
    policies: tuple[ScalingPolicy, ...] = ()


@dataclass(frozen=True)
class Behavior:
    scale_up: ScalingRules
    scale_down: ScalingRules


DEFAULT_SCALE_UP = ScalingRules(
    0, "Max", (ScalingPolicy("Pods", 4, 15), ScalingPolicy("Percent", 100, 15))
)
DEFAULT_SCALE_DOWN_POLICIES = (ScalingPolicy("Percent", 100, 15),)


def behavior_from_spec(
    spec: dict | None, downscale_window_s: int = DEFAULT_DOWNSCALE_WINDOW_S
) -> Behavior | None:
    """The effective behavior of an HPA whose ``spec.behavior`` is ``spec``.

    None stays None: the controller then takes its older path (a downscale window and a fixed
    scale-up limit, no policies). A given behavior gets every missing field from the defaults, as
    the API server fills them; a missing scale-down window is the controller's flag value.
    """
    if spec is None:
        return None
    up = _rules(spec.get("scaleUp"), DEFAULT_SCALE_UP)
    down = _rules(
        spec.get("scaleDown"), ScalingRules(downscale_window_s, "Max", DEFAULT_SCALE_DOWN_POLICIES)
    )
    return Behavior(up, down)


def _rules(spec: dict | None, default: ScalingRules) -> ScalingRules:
    if not spec:
        return default
    window = spec.get("stabilizationWindowSeconds")
    policies = spec.get("policies")
    return ScalingRules(
        default.window_s if window is None else int(window),
        spec.get("selectPolicy") or default.select,
        tuple(ScalingPolicy(p["type"], int(p["value"]), int(p["periodSeconds"])) for p in policies)
        if policies
        else default.policies,
    )


def milli(value: float) -> int:
    """A number as the integer milli-units a Kubernetes Quantity carries."""
    return round(value * 1000)


def external_metric_replicas(
    metric: float,
    target: float,
    current: int,
    metric_type: str = "AverageValue",
    tolerance: float = TOLERANCE,
) -> int:
    """The replica count one External metric asks for, before stabilization and limits.

    AverageValue: ``ceil(metric / target)``; Value: ``ceil(current × metric / target)``. Either
    way the count stays at ``current`` while the usage ratio is within ``tolerance`` of 1.
    """
    usage, target_m = milli(metric), milli(target)
    if target_m <= 0:
        raise ValueError("the metric target must be positive")
    if metric_type == "Value":
        ratio = usage / target_m
        if current == 0:
            return math.ceil(ratio)
        if abs(1.0 - ratio) <= tolerance:
            return current
        return math.ceil(ratio * current)
    if current == 0:
        return math.ceil(usage / target_m)
    ratio = usage / (target_m * current)
    if abs(1.0 - ratio) > tolerance:
        return math.ceil(usage / target_m)
    return current


@dataclass
class ScaleEvent:
    at: float
    change: int


@dataclass
class History:
    """What the HPA controller remembers about one HPA between syncs."""

    recommendations: list[tuple[float, int]] = field(default_factory=list)
    scale_up_events: list[ScaleEvent] = field(default_factory=list)
    scale_down_events: list[ScaleEvent] = field(default_factory=list)


def stabilize_legacy(history: History, now: float, desired: int, window_s: float) -> int:
    """The older path (no behavior): the highest recommendation within the downscale window."""
    cutoff = now - window_s
    recent = [(t, r) for t, r in history.recommendations if t >= cutoff]
    stabilized = max([desired] + [r for _, r in recent])
    history.recommendations = recent + [(now, desired)]
    return stabilized


def stabilize_with_behavior(
    history: History, now: float, current: int, desired: int, behavior: Behavior
) -> tuple[int, str, str]:
    """Stabilize ``desired`` between the lowest recommendation of the scale-up window and the
    highest of the scale-down window, starting from ``current``; records ``desired``.

    Returns the stabilized count and the AbleToScale reason and message to use when it differs
    from ``desired``.
    """
    up_cutoff = now - behavior.scale_up.window_s
    down_cutoff = now - behavior.scale_down.window_s
    up_limit = down_limit = desired
    for at, rec in history.recommendations:
        if at > up_cutoff:
            up_limit = min(up_limit, rec)
        if at > down_cutoff:
            down_limit = max(down_limit, rec)
    stabilized = min(max(current, up_limit), down_limit)

    oldest_kept = min(up_cutoff, down_cutoff)
    history.recommendations = [(t, r) for t, r in history.recommendations if t >= oldest_kept]
    history.recommendations.append((now, desired))

    return (stabilized, *(SCALE_UP_STABILIZED if desired >= current else SCALE_DOWN_STABILIZED))


def limit_legacy(
    current: int, desired: int, min_replicas: int, max_replicas: int
) -> tuple[int, str, str]:
    """The older path's clamp: [min, max] and at most max(2 × current, 4) when scaling up."""
    scale_up_limit = max(2 * current, 4)
    if max_replicas > scale_up_limit:
        upper, why = scale_up_limit, SCALE_UP_LIMIT
    else:
        upper, why = max_replicas, TOO_MANY
    if desired < min_replicas:
        return (min_replicas, *TOO_FEW)
    if desired > upper:
        return (upper, *why)
    return (desired, *WITHIN_RANGE)


def _changed_within(events: list[ScaleEvent], period_s: int, now: float) -> int:
    return sum(e.change for e in events if e.at > now - period_s)


def scale_up_limit(current: int, history: History, rules: ScalingRules, now: float) -> int:
    """The highest count the scale-up policies allow now (``current`` when Disabled)."""
    if rules.select == "Disabled":
        return current
    proposals = []
    for policy in rules.policies:
        start = (
            current
            - _changed_within(history.scale_up_events, policy.period_s, now)
            + _changed_within(history.scale_down_events, policy.period_s, now)
        )
        if policy.type == "Pods":
            proposals.append(start + policy.value)
        else:
            # Rounded up, or a small deployment could never grow by a percentage.
            proposals.append(math.ceil(start * (1 + policy.value / 100)))
    if not proposals:
        return current
    return min(proposals) if rules.select == "Min" else max(proposals)


def scale_down_limit(current: int, history: History, rules: ScalingRules, now: float) -> int:
    """The lowest count the scale-down policies allow now (``current`` when Disabled)."""
    if rules.select == "Disabled":
        return current
    proposals = []
    for policy in rules.policies:
        start = (
            current
            - _changed_within(history.scale_up_events, policy.period_s, now)
            + _changed_within(history.scale_down_events, policy.period_s, now)
        )
        if policy.type == "Pods":
            proposals.append(start - policy.value)
        else:
            proposals.append(int(start * (1 - policy.value / 100)))
    if not proposals:
        return current
    # The "Min" policy is the smallest change, which for a scale-down is the highest count.
    return max(proposals) if rules.select == "Min" else min(proposals)


def limit_with_behavior(
    history: History,
    now: float,
    current: int,
    desired: int,
    min_replicas: int,
    max_replicas: int,
    behavior: Behavior,
) -> tuple[int, str, str]:
    """Clamp ``desired`` to [min, max] and to what the rate policies allow; with the
    ScalingLimited reason and message."""
    if desired > current:
        limit = max(scale_up_limit(current, history, behavior.scale_up, now), current)
        upper, why = (limit, SCALE_UP_LIMIT) if max_replicas > limit else (max_replicas, TOO_MANY)
        if desired > upper:
            return (upper, *why)
    elif desired < current:
        limit = min(scale_down_limit(current, history, behavior.scale_down, now), current)
        lower, why = (limit, SCALE_DOWN_LIMIT) if min_replicas < limit else (min_replicas, TOO_FEW)
        if desired < lower:
            return (lower, *why)
    return (desired, *WITHIN_RANGE)


def record_scale_event(
    history: History, behavior: Behavior | None, now: float, previous: int, new: int
) -> None:
    """Remember a rescale for the rate policies (only the behavior path uses them)."""
    if behavior is None or new == previous:
        return
    if new > previous:
        longest = max((p.period_s for p in behavior.scale_up.policies), default=0)
        events = [e for e in history.scale_up_events if e.at > now - longest]
        history.scale_up_events = events + [ScaleEvent(now, new - previous)]
    else:
        longest = max((p.period_s for p in behavior.scale_down.policies), default=0)
        events = [e for e in history.scale_down_events if e.at > now - longest]
        history.scale_down_events = events + [ScaleEvent(now, previous - new)]


@dataclass
class Proposal:
    """What one metric asks for: a replica count, or the reason none could be computed."""

    label: str  # as the HPA names it in messages, e.g. "external metric s0-…(…)"
    replicas: int | None
    error: str = ""


Condition = tuple[str, str, str]  # (status, reason, message)


@dataclass
class Decision:
    """One HPA sync's outcome, before anything is written."""

    current: int
    recommendation: int | None  # what the metrics ask for
    stabilized: int | None  # after the stabilization windows
    desired: int  # after limits; equals current when there is nothing to do
    rescale: bool
    reason: str  # the rescale reason, or why nothing changes
    metric_label: str = ""
    conditions: dict[str, Condition] = field(default_factory=dict)


def decide(
    history: History,
    now: float,
    *,
    current: int,
    proposals: list[Proposal],
    min_replicas: int,
    max_replicas: int,
    behavior: Behavior | None,
    downscale_window_s: float = DEFAULT_DOWNSCALE_WINDOW_S,
) -> Decision:
    """One sync of the HPA controller for a target at ``current`` replicas.

    Mirrors the controller's order: out-of-range targets are brought back first; otherwise the
    highest metric proposal is stabilized, then limited by [min, max] and the rate rules. The
    caller writes the scale when ``rescale`` is set, then calls :func:`record_scale_event`.
    """
    conditions: dict[str, Condition] = {
        "AbleToScale": (
            "True",
            "SucceededGetScale",
            "the HPA controller was able to get the target's current scale",
        ),
    }

    # A target scaled to zero by hand (or by KEDA) is left alone.
    if current == 0 and min_replicas != 0:
        conditions["ScalingActive"] = (
            "False",
            "ScalingDisabled",
            "scaling is disabled since the replica count of the target is zero",
        )
        return Decision(
            current, None, None, current, False, "ScalingDisabled", conditions=conditions
        )
    if current > max_replicas or current < min_replicas:
        desired = max_replicas if current > max_replicas else min_replicas
        reason = (
            "Current number of replicas above Spec.MaxReplicas"
            if current > max_replicas
            else "Current number of replicas below Spec.MinReplicas"
        )
        _rescaled(conditions, desired)
        return Decision(current, None, None, desired, True, reason, conditions=conditions)

    # The metrics: the highest valid proposal wins; failures block only when they might matter.
    best: Proposal | None = None
    failed = [p for p in proposals if p.replicas is None]
    for p in proposals:
        if p.replicas is not None and (
            best is None or best.replicas == 0 or p.replicas > best.replicas
        ):
            best = p
    if best is None or (failed and best.replicas < current):
        error = failed[0].error if failed else "no metrics"
        conditions["ScalingActive"] = (
            "False",
            "FailedGetExternalMetric",
            f"the HPA was unable to compute the replica count: {error}",
        )
        return Decision(
            current, None, None, current, False, "FailedGetExternalMetric", conditions=conditions
        )
    conditions["ScalingActive"] = (
        "True",
        "ValidMetricFound",
        f"the HPA was able to successfully calculate a replica count from {best.label}",
    )
    recommendation = best.replicas
    if recommendation > current:
        reason = f"{best.label} above target"
    elif recommendation < current:
        reason = "All metrics below target"
    else:
        reason = ""

    # Stabilize, then limit.
    if behavior is None:
        stabilized = stabilize_legacy(history, now, recommendation, downscale_window_s)
        if stabilized != recommendation:
            conditions["AbleToScale"] = ("True", *SCALE_DOWN_STABILIZED)
        desired, lim_reason, lim_message = limit_legacy(
            current, stabilized, min_replicas, max_replicas
        )
    else:
        stabilized, st_reason, st_message = stabilize_with_behavior(
            history, now, current, recommendation, behavior
        )
        if stabilized != recommendation:
            conditions["AbleToScale"] = ("True", st_reason, st_message)
        desired, lim_reason, lim_message = limit_with_behavior(
            history, now, current, stabilized, min_replicas, max_replicas, behavior
        )
    if stabilized == recommendation:
        conditions["AbleToScale"] = (
            "True",
            "ReadyForNewScale",
            "recommended size matches current size",
        )
    limited = "True" if desired != stabilized else "False"
    conditions["ScalingLimited"] = (limited, lim_reason, lim_message)

    if desired == current:
        why = lim_reason if limited == "True" else conditions["AbleToScale"][1]
        return Decision(
            current, recommendation, stabilized, current, False, why, best.label, conditions
        )
    _rescaled(conditions, desired)
    return Decision(
        current, recommendation, stabilized, desired, True, reason, best.label, conditions
    )


def _rescaled(conditions: dict[str, Condition], desired: int) -> None:
    conditions["AbleToScale"] = (
        "True",
        "SucceededRescale",
        f"the HPA controller was able to update the target scale to {desired}",
    )


# ---------------------------------------------------------------------------------------------
# The KEDA side: ScaledObjects, metrics-api triggers, the HPA object
# ---------------------------------------------------------------------------------------------

SCALED_OBJECTS = "/apis/keda.sh/v1alpha1/scaledobjects"
LABEL_SCALED_OBJECT = "scaledobject.keda.sh/name"
DEFAULT_POLLING_S = 30
DEFAULT_COOLDOWN_S = 300
DEFAULT_MAX_REPLICAS = 100
METRICS_HTTP_TIMEOUT_S = 3.0  # KEDA's default HTTP timeout for scalers

READY_MESSAGE = "ScaledObject is defined correctly and is ready for scaling"
TRIGGER_ERROR_MESSAGE = "Triggers defined in ScaledObject are not working correctly"
PARTIAL_ERROR_MESSAGE = "Some triggers defined in ScaledObject are not working correctly"


class SpecError(Exception):
    """The ScaledObject cannot be acted on as written; the message goes to its Ready condition."""


@dataclass(frozen=True)
class Trigger:
    """One metrics-api trigger, read from the ScaledObject."""

    metric_name: str  # the External metric name KEDA gives it, e.g. "s0-metric-api-queue_length"
    url: str
    value_location: str
    target: float
    activation: float
    metric_type: str  # "AverageValue" or "Value"


@dataclass(frozen=True)
class TargetRef:
    api_version: str
    kind: str
    name: str

    @property
    def group(self) -> str:
        return self.api_version.split("/")[0] if "/" in self.api_version else ""

    @property
    def version(self) -> str:
        return self.api_version.split("/")[-1]


@dataclass(frozen=True)
class ScaledObjectSpec:
    """What a ScaledObject asks for, with KEDA's defaults applied."""

    namespace: str
    name: str
    target: TargetRef
    polling_s: float
    cooldown_s: float
    initial_cooldown_s: float
    min_replicas: int  # the ScaledObject's own (0 allows scale to zero)
    max_replicas: int
    hpa_name: str
    behavior: dict | None  # copied verbatim into the HPA
    triggers: tuple[Trigger, ...]
    fallback_failures: int | None
    fallback_replicas: int | None
    restore_original: bool

    @property
    def hpa_min_replicas(self) -> int:
        return max(self.min_replicas, 1)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def normalize_metric_name(text: str) -> str:
    """Characters KEDA replaces by '-' when it builds a metric name."""
    return re.sub(r'[/.:%()" <>${}]', "-", text)


def _number(text: Any, what: str) -> float:
    try:
        return parse_quantity(str(text))
    except ValueError:
        raise SpecError(f"{what} must be a number, got {text!r}") from None


def _int(value: Any, default: int, what: str) -> int:
    if value is None:
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise SpecError(f"{what} must be an integer, got {value!r}") from None


def parse_scaled_object(obj: dict) -> ScaledObjectSpec:
    """Read a ScaledObject as KEDA does; raises :class:`SpecError` for what KEDA rejects."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    namespace, name = meta.get("namespace", "default"), meta.get("name", "")

    ref = spec.get("scaleTargetRef") or {}
    if not ref.get("name"):
        raise SpecError("ScaledObject doesn't have correct scaleTargetRef specification")
    target = TargetRef(
        ref.get("apiVersion") or "apps/v1", ref.get("kind") or "Deployment", ref["name"]
    )

    min_replicas = _int(spec.get("minReplicaCount"), 0, "minReplicaCount")
    max_replicas = _int(spec.get("maxReplicaCount"), DEFAULT_MAX_REPLICAS, "maxReplicaCount")
    if min_replicas < 0 or max_replicas < 1:
        raise SpecError("minReplicaCount must be >= 0 and maxReplicaCount >= 1")
    if min_replicas > max_replicas:
        raise SpecError(
            f"MinReplicaCount={min_replicas} must be less than MaxReplicaCount={max_replicas}"
        )

    advanced = spec.get("advanced") or {}
    hpa_config = advanced.get("horizontalPodAutoscalerConfig") or {}
    hpa_name = hpa_config.get("name") or f"keda-hpa-{name}"

    raw_triggers = spec.get("triggers") or []
    if not raw_triggers:
        raise SpecError("no triggers defined in the ScaledObject/ScaledJob")
    triggers = tuple(_parse_trigger(i, t) for i, t in enumerate(raw_triggers))

    fallback = spec.get("fallback")
    fallback_failures = fallback_replicas = None
    if fallback:
        fallback_failures = _int(fallback.get("failureThreshold"), 3, "fallback.failureThreshold")
        fallback_replicas = _int(fallback.get("replicas"), 1, "fallback.replicas")
        if any(t.metric_type != "AverageValue" for t in triggers):
            raise SpecError("type for the fallback must be 'AverageValue'")

    return ScaledObjectSpec(
        namespace=namespace,
        name=name,
        target=target,
        polling_s=float(_int(spec.get("pollingInterval"), DEFAULT_POLLING_S, "pollingInterval")),
        cooldown_s=float(_int(spec.get("cooldownPeriod"), DEFAULT_COOLDOWN_S, "cooldownPeriod")),
        initial_cooldown_s=float(
            _int(spec.get("initialCooldownPeriod"), 0, "initialCooldownPeriod")
        ),
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        hpa_name=hpa_name,
        behavior=hpa_config.get("behavior"),
        triggers=triggers,
        fallback_failures=fallback_failures,
        fallback_replicas=fallback_replicas,
        restore_original=bool(advanced.get("restoreToOriginalReplicaCount")),
    )


def _parse_trigger(index: int, trigger: dict) -> Trigger:
    kind = trigger.get("type")
    if kind != "metrics-api":
        raise SpecError(
            f"no scaler found for type: {kind} (the sandbox's KEDA runs metrics-api triggers only)"
        )
    metadata = trigger.get("metadata") or {}
    metric_type = trigger.get("metricType") or "AverageValue"
    if metric_type not in ("AverageValue", "Value"):
        raise SpecError(f"metricType {metric_type} is not supported by metrics-api")
    for key in ("url", "valueLocation", "targetValue"):
        if not metadata.get(key):
            raise SpecError(f"error parsing metric API metadata: no {key} given in metadata")
    if (metadata.get("format") or "json") != "json":
        raise SpecError("the sandbox's metrics-api reads format json only")
    target = _number(metadata["targetValue"], "targetValue")
    if milli(target) <= 0:
        raise SpecError("targetValue must be greater than 0")
    location = metadata["valueLocation"]
    return Trigger(
        metric_name=f"s{index}-" + normalize_metric_name(f"metric-api-{location}"),
        url=metadata["url"],
        value_location=location,
        target=target,
        activation=_number(metadata.get("activationTargetValue", "0"), "activationTargetValue"),
        metric_type=metric_type,
    )


_QUANTITY = re.compile(
    r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|"
    r"n|u|m|k|M|G|T|P|E)?$"
)
_SUFFIX = {
    None: 1.0,
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
    "Pi": 2.0**50,
    "Ei": 2.0**60,
}


def parse_quantity(text: str) -> float:
    """A Kubernetes Quantity (``2``, ``1.5``, ``500m``, ``2k``, ``1Ki``) as a float."""
    match = _QUANTITY.match(text.strip())
    if not match:
        raise ValueError(f"not a quantity: {text!r}")
    return float(match.group(1)) * _SUFFIX[match.group(2)]


def format_quantity(value: float) -> str:
    """A number written as the API server canonicalizes a decimal Quantity (``3500m``, ``2``,
    ``3k``)."""
    m = milli(value)
    if m % 1000:
        return f"{m}m"
    whole, suffix = m // 1000, ""
    for next_suffix in ("k", "M", "G", "T", "P", "E"):
        if whole == 0 or whole % 1000:
            break
        whole, suffix = whole // 1000, next_suffix
    return f"{whole}{suffix}"


def value_at(document: Any, location: str) -> float:
    """The number at a dotted ``location`` (``queue_length``, ``a.b.0.c``) of a JSON document.

    Numbers are taken as they are; strings must hold a Quantity, as KEDA's metrics-api reads
    them. Raises ValueError with KEDA's wording otherwise.
    """
    node = document
    for part in location.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            node = None
            break
    wrong = (
        "valueLocation must point to value of type number or a string representing a "
        "Quantity got: '{}'"
    )
    if isinstance(node, bool) or node is None:
        raise ValueError(wrong.format("Null" if node is None else "Boolean"))
    if isinstance(node, (int, float)):
        return float(node)
    if isinstance(node, str):
        try:
            return parse_quantity(node)
        except ValueError:
            raise ValueError(wrong.format(node)) from None
    raise ValueError(wrong.format("JSON"))


@dataclass(frozen=True)
class ClusterURL:
    """A URL that names a Service by its cluster DNS name, split for the service proxy."""

    namespace: str
    service: str
    port: int
    scheme: str
    path: str  # without the leading slash
    query: str
    strict: bool  # False for the short ``<svc>.<ns>`` form, which may also be a public name

    def proxy_path(self) -> str:
        prefix = "https:" if self.scheme == "https" else ""
        path = (
            f"/api/v1/namespaces/{self.namespace}/services/{prefix}{self.service}:"
            f"{self.port}/proxy/{self.path}"
        )
        return f"{path}?{self.query}" if self.query else path


def cluster_url(url: str) -> ClusterURL | None:
    """Split a Service's cluster URL (``http://<svc>.<ns>[.svc[.cluster.local]]:<port>/…``);
    None for any other URL, which is then read directly."""
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".")
    if not host:
        return None
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    labels = host.split(".")
    if (len(labels) == 5 and host.endswith(".svc.cluster.local")) or (
        len(labels) == 3 and host.endswith(".svc")
    ):
        strict = True
    elif len(labels) == 2:
        strict = False
    else:
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return ClusterURL(
        labels[1], labels[0], port, parts.scheme, parts.path.lstrip("/"), parts.query, strict
    )


def selector_text(scaled_object: str) -> str:
    """The metric selector as the HPA controller prints it in messages (Go's ``%+v``)."""
    return (
        f"&LabelSelector{{MatchLabels:map[string]string{{{LABEL_SCALED_OBJECT}: "
        f"{scaled_object},}},MatchExpressions:[]LabelSelectorRequirement{{}},}}"
    )


def metric_label(trigger: Trigger, scaled_object: str) -> str:
    return f"external metric {trigger.metric_name}({selector_text(scaled_object)})"


def hpa_manifest(so: ScaledObjectSpec, owner: dict) -> dict:
    """The HPA KEDA creates for a ScaledObject (``owner`` is the ScaledObject as read)."""
    meta = owner.get("metadata") or {}
    labels = {
        "app.kubernetes.io/managed-by": "keda-operator",
        "app.kubernetes.io/name": so.hpa_name,
        "app.kubernetes.io/part-of": so.name,
        LABEL_SCALED_OBJECT: so.name,
    }
    labels.update(meta.get("labels") or {})
    metrics = []
    for trigger in so.triggers:
        target: dict[str, Any] = {"type": trigger.metric_type}
        key = "averageValue" if trigger.metric_type == "AverageValue" else "value"
        target[key] = format_quantity(trigger.target)
        metrics.append(
            {
                "type": "External",
                "external": {
                    "metric": {
                        "name": trigger.metric_name,
                        "selector": {"matchLabels": {LABEL_SCALED_OBJECT: so.name}},
                    },
                    "target": target,
                },
            }
        )
    spec: dict[str, Any] = {
        "scaleTargetRef": {
            "apiVersion": so.target.api_version,
            "kind": so.target.kind,
            "name": so.target.name,
        },
        "minReplicas": so.hpa_min_replicas,
        "maxReplicas": so.max_replicas,
        "metrics": metrics,
    }
    if so.behavior is not None:
        spec["behavior"] = so.behavior
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {
            "name": so.hpa_name,
            "namespace": so.namespace,
            "labels": labels,
            "ownerReferences": [
                {
                    "apiVersion": "keda.sh/v1alpha1",
                    "kind": "ScaledObject",
                    "name": so.name,
                    "uid": meta.get("uid"),
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": spec,
    }


def contains(have: Any, want: Any) -> bool:
    """True when ``have`` holds everything ``want`` does (fields a server defaults may be
    extra)."""
    if isinstance(want, dict):
        return isinstance(have, dict) and all(contains(have.get(k), v) for k, v in want.items())
    if isinstance(want, list):
        return (
            isinstance(have, list)
            and len(have) == len(want)
            and all(contains(h, w) for h, w in zip(have, want, strict=False))
        )
    return have == want


def kube_conditions(
    previous: list[dict], wanted: dict[str, Condition], now: str, order: tuple[str, ...]
) -> list[dict]:
    """HPA-style conditions: ``lastTransitionTime`` moves only when a status changes; types not
    in ``wanted`` keep their previous value."""
    old = {c.get("type"): c for c in previous or []}
    result = []
    for kind in order:
        if kind not in wanted:
            if kind in old:
                result.append(old[kind])
            continue
        status, reason, message = wanted[kind]
        before = old.get(kind)
        since = (
            before.get("lastTransitionTime") if before and before.get("status") == status else now
        )
        result.append(
            {
                "type": kind,
                "status": status,
                "lastTransitionTime": since,
                "reason": reason,
                "message": message,
            }
        )
    return result


def rfc3339(at: float | None = None) -> str:
    moment = datetime.fromtimestamp(time.time() if at is None else at, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------
# The process: API client, watch, one loop per ScaledObject, health endpoint
# ---------------------------------------------------------------------------------------------


class ApiError(Exception):
    """The API server (or a metrics endpoint) answered with an error status."""

    def __init__(self, status: int, reason: str, message: str):
        self.status = status
        self.reason = reason
        self.message = message
        super().__init__(f"{status} {reason}: {message}" if reason else message)


class KubeClient:
    """JSON over HTTP to the API server named by a kubeconfig, with its credentials.

    Only the API server ever sees the credentials: metrics URLs outside the cluster are read
    with a separate session that carries none.
    """

    def __init__(self, server: str, headers: dict[str, str], ssl_context: Any):
        import aiohttp

        self.server = server.rstrip("/")
        self._ssl = ssl_context
        self._session = aiohttp.ClientSession(
            headers={
                "Accept": "application/json",
                "User-Agent": "keda-operator (sandbox)",
                **headers,
            },
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
        )
        self._plain = aiohttp.ClientSession(
            headers={"Accept": "application/json", "User-Agent": "keda-operator (sandbox)"}
        )

    @classmethod
    def from_kubeconfig(cls, path: str) -> KubeClient:
        server, headers, ssl_context = read_kubeconfig(path)
        return cls(server, headers, ssl_context)

    async def close(self) -> None:
        await self._session.close()
        await self._plain.close()

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        timeout_s: float = 10.0,
    ) -> dict:
        import aiohttp

        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else None
        async with self._session.request(
            method,
            self.server + path,
            data=data,
            headers=headers,
            ssl=self._ssl,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as resp:
            text = await resp.text()
            if resp.status >= 400:
                raise api_error(resp.status, text)
            return json.loads(text) if text else {}

    async def get(self, path: str) -> dict | None:
        try:
            return await self.request("GET", path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def merge_patch(self, path: str, body: dict) -> dict:
        return await self.request("PATCH", path, body, content_type="application/merge-patch+json")

    async def fetch(self, url: str, via_api: bool, timeout_s: float) -> str:
        """GET a metrics URL (an API path when ``via_api``); the body text, or ApiError."""
        import aiohttp

        session = self._session if via_api else self._plain
        full = self.server + url if via_api else url
        async with session.get(
            full, ssl=self._ssl if via_api else None, timeout=aiohttp.ClientTimeout(total=timeout_s)
        ) as resp:
            text = await resp.text()
            if resp.status >= 400:
                raise ApiError(resp.status, "", f"api returned {resp.status}")
            return text

    async def watch(self, path: str, resource_version: str, timeout_s: int):
        """Yield watch events until the server closes the stream."""
        import aiohttp

        url = (
            f"{self.server}{path}?watch=true&allowWatchBookmarks=true"
            f"&resourceVersion={quote(resource_version)}&timeoutSeconds={timeout_s}"
        )
        async with self._session.get(
            url, ssl=self._ssl, timeout=aiohttp.ClientTimeout(total=timeout_s + 15, sock_connect=5)
        ) as resp:
            if resp.status >= 400:
                raise api_error(resp.status, await resp.text())
            async for line in resp.content:
                if line.strip():
                    yield json.loads(line)


def api_error(status: int, text: str) -> ApiError:
    try:
        body = json.loads(text)
        return ApiError(status, body.get("reason", ""), body.get("message", ""))
    except (ValueError, AttributeError):
        return ApiError(status, "", text[:200])


def read_kubeconfig(path: str) -> tuple[str, dict[str, str], Any]:
    """The current context's server URL, auth headers and TLS context (None for plain http)."""
    import base64
    import ssl
    import tempfile

    import yaml

    with open(path, encoding="utf-8") as handle:
        config = yaml.safe_load(handle) or {}
    current = config.get("current-context")
    contexts = {c.get("name"): c.get("context") or {} for c in config.get("contexts") or []}
    context = contexts.get(current) or next(iter(contexts.values()), {})
    clusters = {c.get("name"): c.get("cluster") or {} for c in config.get("clusters") or []}
    users = {u.get("name"): u.get("user") or {} for u in config.get("users") or []}
    cluster = clusters.get(context.get("cluster")) or next(iter(clusters.values()), {})
    user = users.get(context.get("user")) or {}
    server = cluster.get("server")
    if not server:
        raise ValueError("the kubeconfig names no server for its current context")

    headers: dict[str, str] = {}
    token = user.get("token")
    if not token and user.get("tokenFile"):
        with open(user["tokenFile"], encoding="utf-8") as handle:
            token = handle.read().strip()
    if token:
        headers["Authorization"] = f"Bearer {token}"
    elif user.get("username"):
        pair = f"{user['username']}:{user.get('password', '')}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()

    if not server.startswith("https://"):
        return server, headers, None
    context_tls = ssl.create_default_context()
    if cluster.get("insecure-skip-tls-verify"):
        context_tls.check_hostname = False
        context_tls.verify_mode = ssl.CERT_NONE
    elif cluster.get("certificate-authority-data"):
        context_tls.load_verify_locations(
            cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
        )
    elif cluster.get("certificate-authority"):
        context_tls.load_verify_locations(cafile=cluster["certificate-authority"])
    cert, key = user.get("client-certificate"), user.get("client-key")
    if user.get("client-certificate-data") and user.get("client-key-data"):
        # The chain loader reads files only: a private directory, removed at once.
        with tempfile.TemporaryDirectory() as private:
            cert, key = os.path.join(private, "cert.pem"), os.path.join(private, "key.pem")
            for target, data in (
                (cert, user["client-certificate-data"]),
                (key, user["client-key-data"]),
            ):
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(base64.b64decode(data))
            context_tls.load_cert_chain(cert, key)
    elif cert and key:
        context_tls.load_cert_chain(cert, key)
    return server, headers, context_tls


class Recorder:
    """Core v1 Events, aggregated as the real recorder does (a repeat bumps ``count``)."""

    def __init__(self, kube: KubeClient):
        self.kube = kube
        self._seen: dict[tuple, tuple[str, int]] = {}

    async def event(
        self, obj: dict, reason: str, message: str, component: str, event_type: str = "Normal"
    ) -> None:
        meta = obj.get("metadata") or {}
        namespace = meta.get("namespace", "default")
        now = rfc3339()
        key = (meta.get("uid"), reason, message, event_type)
        try:
            seen = self._seen.get(key)
            if seen is not None:
                name, count = seen
                try:
                    await self.kube.merge_patch(
                        f"/api/v1/namespaces/{namespace}/events/{name}",
                        {"count": count + 1, "lastTimestamp": now},
                    )
                    self._seen[key] = (name, count + 1)
                    return
                except ApiError as exc:
                    if exc.status != 404:
                        raise
            name = f"{meta.get('name')}.{time.time_ns():x}"
            await self.kube.request(
                "POST",
                f"/api/v1/namespaces/{namespace}/events",
                {
                    "apiVersion": "v1",
                    "kind": "Event",
                    "metadata": {"name": name, "namespace": namespace},
                    "involvedObject": {
                        "apiVersion": obj.get("apiVersion"),
                        "kind": obj.get("kind"),
                        "name": meta.get("name"),
                        "namespace": namespace,
                        "uid": meta.get("uid"),
                        "resourceVersion": meta.get("resourceVersion"),
                    },
                    "reason": reason,
                    "message": message,
                    "type": event_type,
                    "source": {"component": component},
                    "firstTimestamp": now,
                    "lastTimestamp": now,
                    "count": 1,
                    "reportingComponent": component,
                    "reportingInstance": "",
                },
            )
            if len(self._seen) > 2000:
                self._seen.clear()
            self._seen[key] = (name, 1)
        except (TimeoutError, ApiError, OSError) as exc:
            log.debug("could not record event %s: %s", reason, exc)


@dataclass
class TriggerState:
    """What KEDA keeps about one trigger between reads."""

    failures: int = 0
    last_good: float | None = None
    last_error: str = ""


class Discovery:
    """Maps a kind in a group/version to its plural resource name (cached)."""

    def __init__(self, kube: KubeClient):
        self.kube = kube
        self._cache: dict[tuple[str, str], str] = {}

    async def resource(self, api_version: str, kind: str) -> str:
        key = (api_version, kind)
        if key not in self._cache:
            path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            listing = await self.kube.get(path) or {}
            for res in listing.get("resources") or []:
                if res.get("kind") == kind and "/" not in res.get("name", ""):
                    self._cache[key] = res["name"]
                    break
            else:
                raise SpecError(f'no matches for kind "{kind}" in version "{api_version}"')
        return self._cache[key]


class ScaledObjectLoop:
    """KEDA's scale loop and the HPA controller's sync for one ScaledObject.

    One tick every ``min(HPA sync period, pollingInterval)``: reconcile the HPA, read the
    triggers, take KEDA's activation step, run the HPA decision, write status.
    """

    def __init__(self, operator: Operator, obj: dict):
        self.op = operator
        self.obj = obj
        self.history = History()
        self.triggers: dict[str, TriggerState] = {}
        self.last_active: float | None = parse_rfc3339(
            (obj.get("status") or {}).get("lastActiveTime")
        )
        self.original_replicas: int | None = (obj.get("status") or {}).get("originalReplicaCount")
        self.hpa: dict | None = None
        self.last_status: dict | None = None
        self.was_ready: bool | None = None
        self.wake = asyncio.Event()
        self.last_failure = ""
        self.created = (
            parse_rfc3339((obj.get("metadata") or {}).get("creationTimestamp")) or time.time()
        )

    @property
    def key(self) -> tuple[str, str]:
        meta = self.obj.get("metadata") or {}
        return meta.get("namespace", "default"), meta.get("name", "")

    def update(self, obj: dict) -> None:
        """A newer version of the ScaledObject arrived; tick early when its spec changed."""
        old, self.obj = self.obj, obj
        if old.get("spec") != obj.get("spec") or (old.get("metadata") or {}).get("labels") != (
            obj.get("metadata") or {}
        ).get("labels"):
            self.wake.set()

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            period = self.op.sync_period_s
            try:
                period = await self.tick()
                self.last_failure = ""
            except asyncio.CancelledError:
                raise
            except (TimeoutError, ApiError, OSError) as exc:
                # The API server is away or refused a write: say it once per streak, retry.
                if str(exc) != self.last_failure:
                    log.warning("sync of ScaledObject %s/%s failed: %s", *self.key, exc)
                self.last_failure = str(exc)
            except Exception:  # one bad tick must not end the ScaledObject's loop
                log.exception("sync of ScaledObject %s/%s failed", *self.key)
            delay = max(0.05, period - (time.monotonic() - started))
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), timeout=delay)
            except TimeoutError:
                pass

    async def tick(self) -> float:
        """One sync; returns the period until the next one."""
        obj = self.obj
        now = time.time()
        try:
            so = parse_scaled_object(obj)
        except SpecError as exc:
            await self.not_ready("ScaledObjectCheckFailed", str(exc))
            return self.op.sync_period_s
        period = max(0.2, min(self.op.sync_period_s, so.polling_s))
        await self.ensure_label(so)

        # The scale target, through its /scale subresource.
        try:
            resource = await self.op.discovery.resource(so.target.api_version, so.target.kind)
        except (SpecError, ApiError) as exc:
            await self.not_ready("ScaledObjectCheckFailed", str(exc))
            return period
        prefix = "/api/v1" if so.target.api_version == "v1" else f"/apis/{so.target.api_version}"
        scale_path = f"{prefix}/namespaces/{so.namespace}/{resource}/{so.target.name}/scale"
        scale = await self.op.kube.get(scale_path)
        if scale is None:
            qualified = f"{resource}.{so.target.group}" if so.target.group else resource
            await self.not_ready(
                "ScaledObjectCheckFailed", f'{qualified} "{so.target.name}" not found'
            )
            return period
        current = int((scale.get("spec") or {}).get("replicas") or 0)
        status_replicas = int((scale.get("status") or {}).get("replicas") or 0)
        if self.original_replicas is None:
            self.original_replicas = current

        # The HPA KEDA owns.
        try:
            self.hpa = await self.ensure_hpa(so)
        except ApiError as exc:
            await self.not_ready(
                "ScaledObjectCheckFailed",
                f"Failed to ensure HPA is correctly created for ScaledObject: {exc}",
            )
            return period

        # The triggers (KEDA's side), then the 0 <-> min step KEDA takes itself.
        values = await self.read_triggers(so)
        ok = [v for v in values.values() if v is not None]
        any_error = len(ok) < len(so.triggers)
        active = any(
            values[t.metric_name] is not None and values[t.metric_name] > t.activation
            for t in so.triggers
        )
        if active:
            self.last_active = now
        current = await self.keda_step(so, scale_path, current, active, any_error, now)

        # The HPA controller's sync.
        metric_values = self.hpa_metric_values(so, values)
        behavior = behavior_from_spec(so.behavior, self.op.downscale_window_s)
        decision = decide(
            self.history,
            now,
            current=current,
            proposals=self.proposals(so, metric_values, current),
            min_replicas=so.hpa_min_replicas,
            max_replicas=so.max_replicas,
            behavior=behavior,
            downscale_window_s=self.op.downscale_window_s,
        )
        await self.apply(so, decision, behavior, scale_path, metric_values, status_replicas, now)

        await self.write_status(so, resource, values, active, now)
        return period

    # -- KEDA ----------------------------------------------------------------------------------

    async def ensure_label(self, so: ScaledObjectSpec) -> None:
        labels = (self.obj.get("metadata") or {}).get("labels") or {}
        if labels.get(LABEL_SCALED_OBJECT) != so.name:
            await self.op.kube.merge_patch(
                f"/apis/keda.sh/v1alpha1/namespaces/{so.namespace}/scaledobjects/{so.name}",
                {"metadata": {"labels": {LABEL_SCALED_OBJECT: so.name}}},
            )

    async def ensure_hpa(self, so: ScaledObjectSpec) -> dict:
        """Create the HPA, or bring it back to what the ScaledObject says."""
        wanted = hpa_manifest(so, self.obj)
        base = f"/apis/autoscaling/v2/namespaces/{so.namespace}/horizontalpodautoscalers"
        have = await self.op.kube.get(f"{base}/{so.hpa_name}")
        if have is None:
            log.info("creating HPA %s/%s for ScaledObject %s", so.namespace, so.hpa_name, so.name)
            return await self.op.kube.request("POST", base, wanted)
        have_meta = have.get("metadata") or {}
        same = (
            contains(have.get("spec"), wanted["spec"])
            and ("behavior" in (have.get("spec") or {})) == ("behavior" in wanted["spec"])
            and contains(have_meta.get("labels") or {}, wanted["metadata"]["labels"])
            and contains(
                have_meta.get("ownerReferences") or [], wanted["metadata"]["ownerReferences"]
            )
        )
        if same:
            return have
        log.info("updating HPA %s/%s from ScaledObject %s", so.namespace, so.hpa_name, so.name)
        body = dict(have)
        body["metadata"] = {
            **have_meta,
            "labels": {**(have_meta.get("labels") or {}), **wanted["metadata"]["labels"]},
            "ownerReferences": wanted["metadata"]["ownerReferences"],
        }
        body["spec"] = wanted["spec"]
        return await self.op.kube.request("PUT", f"{base}/{so.hpa_name}", body)

    async def read_triggers(self, so: ScaledObjectSpec) -> dict[str, float | None]:
        """Each trigger's current value (None when the read failed)."""
        results = await asyncio.gather(*(self.read_one(so, t) for t in so.triggers))
        return {t.metric_name: v for t, v in zip(so.triggers, results, strict=False)}

    async def read_one(self, so: ScaledObjectSpec, trigger: Trigger) -> float | None:
        state = self.triggers.setdefault(trigger.metric_name, TriggerState())
        try:
            text = await self.fetch(trigger.url)
            value = value_at(json.loads(text), trigger.value_location)
        except (TimeoutError, ApiError, OSError, ValueError) as exc:
            state.failures += 1
            state.last_error = f"error requesting metrics endpoint: {_describe(exc)}"
            if state.failures == 1:
                log.warning(
                    "ScaledObject %s: trigger %s failed: %s",
                    so.key,
                    trigger.metric_name,
                    state.last_error,
                )
                await self.op.recorder.event(
                    self.obj, "KEDAScalerFailed", state.last_error, "keda-operator", "Warning"
                )
            return None
        if state.failures:
            log.info(
                "ScaledObject %s: trigger %s reads again after %d failures",
                so.key,
                trigger.metric_name,
                state.failures,
            )
        state.failures, state.last_good, state.last_error = 0, value, ""
        return value

    async def fetch(self, url: str) -> str:
        target = cluster_url(url)
        if target is None:
            return await self.op.kube.fetch(url, False, METRICS_HTTP_TIMEOUT_S)
        try:
            return await self.op.kube.fetch(target.proxy_path(), True, METRICS_HTTP_TIMEOUT_S)
        except ApiError as exc:
            # A two-label name that is no Service of the cluster may be a public host name.
            if exc.status == 404 and not target.strict:
                return await self.op.kube.fetch(url, False, METRICS_HTTP_TIMEOUT_S)
            raise

    async def keda_step(
        self,
        so: ScaledObjectSpec,
        scale_path: str,
        current: int,
        active: bool,
        any_error: bool,
        now: float,
    ) -> int:
        """KEDA's own scaling: from zero when active, to zero after the cooldown (min 0 only)."""
        new = None
        if current == 0 and active:
            new, reason = so.hpa_min_replicas, "KEDAScaleTargetActivated"
        elif current > 0 and not active and not any_error and so.min_replicas == 0:
            # Never active: only the initial cooldown counts, from the ScaledObject's creation.
            if self.last_active is not None:
                due = self.last_active + so.cooldown_s
            else:
                due = self.created + so.initial_cooldown_s
            if now >= due:
                new, reason = 0, "KEDAScaleTargetDeactivated"
        elif not active and current < so.min_replicas:
            new, reason = so.min_replicas, "KEDAScaleTargetActivated"
        if new is None or new == current:
            return current
        try:
            await self.op.kube.merge_patch(scale_path, {"spec": {"replicas": new}})
        except (TimeoutError, ApiError, OSError) as exc:
            log.warning(
                "ScaledObject %s: could not scale %s to %d: %s", so.key, so.target.name, new, exc
            )
            return current
        verb = "Scaled" if new else "Deactivated"
        message = (
            f"{verb} {so.target.api_version}.{so.target.kind} {so.namespace}/"
            f"{so.target.name} from {current} to {new}"
        )
        log.info("ScaledObject %s: %s", so.key, message)
        await self.op.recorder.event(self.obj, reason, message, "keda-operator")
        self.op.emit(
            {
                "time": rfc3339(now),
                "scaledobject": so.key,
                "keda": reason,
                "current": current,
                "desired": new,
            }
        )
        return new

    def hpa_metric_values(
        self, so: ScaledObjectSpec, values: dict[str, float | None]
    ) -> dict[str, float | None]:
        """What KEDA's metrics server answers the HPA: the value, or the fallback's stand-in."""
        answered = dict(values)
        if so.fallback_failures is None:
            return answered
        for trigger in so.triggers:
            state = self.triggers.get(trigger.metric_name)
            if (
                values[trigger.metric_name] is None
                and state
                and state.failures > so.fallback_failures
            ):
                answered[trigger.metric_name] = so.fallback_replicas * trigger.target
        return answered

    def fallback_active(self, so: ScaledObjectSpec) -> bool:
        if so.fallback_failures is None:
            return False
        return any(s.failures > so.fallback_failures for s in self.triggers.values())

    # -- the HPA controller --------------------------------------------------------------------

    def proposals(
        self, so: ScaledObjectSpec, values: dict[str, float | None], current: int
    ) -> list[Proposal]:
        result = []
        for trigger in so.triggers:
            label = metric_label(trigger, so.name)
            value = values[trigger.metric_name]
            if value is None:
                state = self.triggers.get(trigger.metric_name) or TriggerState()
                error = (
                    f"unable to get external metric {so.namespace}/{trigger.metric_name}/"
                    f"{selector_text(so.name)}: unable to fetch metrics from external "
                    f"metrics API: {state.last_error}"
                )
                result.append(Proposal(label, None, error))
            else:
                result.append(
                    Proposal(
                        label,
                        external_metric_replicas(
                            value, trigger.target, current, trigger.metric_type
                        ),
                    )
                )
        return result

    async def apply(
        self,
        so: ScaledObjectSpec,
        decision: Decision,
        behavior: Behavior | None,
        scale_path: str,
        values: dict[str, float | None],
        status_replicas: int,
        now: float,
    ) -> None:
        """Write the scale (when rescaling), the Event, the HPA status and the log line."""
        hpa = self.hpa or {}
        conditions = dict(decision.conditions)
        rescaled = False
        if decision.rescale:
            try:
                await self.op.kube.merge_patch(scale_path, {"spec": {"replicas": decision.desired}})
                rescaled = True
            except (TimeoutError, ApiError, OSError) as exc:
                conditions["AbleToScale"] = (
                    "False",
                    "FailedUpdateScale",
                    f"the HPA controller was unable to update the target scale: {exc}",
                )
                await self.op.recorder.event(
                    hpa,
                    "FailedRescale",
                    f"New size: {decision.desired}; reason: {decision.reason}; error: {exc}",
                    "horizontal-pod-autoscaler",
                    "Warning",
                )
        if rescaled:
            record_scale_event(self.history, behavior, now, decision.current, decision.desired)
            message = f"New size: {decision.desired}; reason: {decision.reason}"
            log.info("HPA %s/%s: %s", so.namespace, so.hpa_name, message)
            await self.op.recorder.event(
                hpa, "SuccessfulRescale", message, "horizontal-pod-autoscaler"
            )
        elif (
            decision.conditions.get("ScalingActive", ("",))[0] == "False"
            and decision.reason == "FailedGetExternalMetric"
        ):
            await self.op.recorder.event(
                hpa,
                "FailedGetExternalMetric",
                conditions["ScalingActive"][2].split(": ", 1)[-1],
                "horizontal-pod-autoscaler",
                "Warning",
            )

        await self.write_hpa_status(
            so, decision, conditions, values, status_replicas, rescaled, now
        )

        chosen = next(
            (t for t in so.triggers if metric_label(t, so.name) == decision.metric_label),
            so.triggers[0],
        )
        self.op.emit(
            {
                "time": rfc3339(now),
                "scaledobject": so.key,
                "hpa": so.hpa_name,
                "metric_name": chosen.metric_name,
                "metric": values.get(chosen.metric_name),
                "target": chosen.target,
                "current": decision.current,
                "recommendation": decision.recommendation,
                "stabilized": decision.stabilized,
                "desired": decision.desired if rescaled else decision.current,
                "rescaled": rescaled,
                "reason": decision.reason,
                **self.trigger_trouble(chosen),
            }
        )

    def trigger_trouble(self, trigger: Trigger) -> dict:
        """For the log line of a failed read: the error, the count, and the last good value."""
        state = self.triggers.get(trigger.metric_name)
        if state is None or not state.failures:
            return {}
        return {"error": state.last_error, "failures": state.failures, "last_good": state.last_good}

    async def write_hpa_status(
        self,
        so: ScaledObjectSpec,
        decision: Decision,
        conditions: dict[str, Condition],
        values: dict[str, float | None],
        status_replicas: int,
        rescaled: bool,
        now: float,
    ) -> None:
        hpa = self.hpa or {}
        old = hpa.get("status") or {}
        metrics = []
        pods = status_replicas or decision.current or 1
        for trigger in so.triggers:
            value = values.get(trigger.metric_name)
            if value is None:
                continue
            if trigger.metric_type == "AverageValue":
                current = {"averageValue": format_quantity(math.ceil(milli(value) / pods) / 1000)}
            else:
                current = {"value": format_quantity(value)}
            metrics.append(
                {
                    "type": "External",
                    "external": {
                        "metric": {
                            "name": trigger.metric_name,
                            "selector": {"matchLabels": {LABEL_SCALED_OBJECT: so.name}},
                        },
                        "current": current,
                    },
                }
            )
        status: dict[str, Any] = {
            "currentReplicas": decision.current,
            "desiredReplicas": decision.desired if rescaled else decision.current,
            "currentMetrics": metrics or None,
            "conditions": kube_conditions(
                old.get("conditions") or [],
                conditions,
                rfc3339(now),
                ("AbleToScale", "ScalingActive", "ScalingLimited"),
            ),
        }
        generation = (hpa.get("metadata") or {}).get("generation")
        if generation is not None:
            status["observedGeneration"] = generation
        status["lastScaleTime"] = rfc3339(now) if rescaled else old.get("lastScaleTime")
        if all(old.get(k) == v for k, v in status.items()):
            return
        path = (
            f"/apis/autoscaling/v2/namespaces/{so.namespace}/horizontalpodautoscalers/"
            f"{so.hpa_name}/status"
        )
        try:
            self.hpa = await self.op.kube.merge_patch(path, {"status": status})
        except (TimeoutError, ApiError, OSError) as exc:
            log.warning(
                "could not write the status of HPA %s/%s: %s", so.namespace, so.hpa_name, exc
            )

    # -- ScaledObject status ---------------------------------------------------------------------

    async def write_status(
        self,
        so: ScaledObjectSpec,
        resource: str,
        values: dict[str, float | None],
        active: bool,
        now: float,
    ) -> None:
        failed = [name for name, v in values.items() if v is None]
        if not failed:
            ready = ("True", "ScaledObjectReady", READY_MESSAGE)
        elif len(failed) < len(values):
            ready = ("Unknown", "PartialTriggerError", PARTIAL_ERROR_MESSAGE)
        else:
            ready = ("False", "TriggerError", TRIGGER_ERROR_MESSAGE)
        active_cond = (
            ("True", "ScalerActive", "Scaling is performed because triggers are active")
            if active
            else (
                "False",
                "ScalerNotActive",
                "Scaling is not performed because triggers are not active",
            )
        )
        fallback = (
            ("True", "FallbackExists", "At least one trigger is falling back on this scaled object")
            if self.fallback_active(so)
            else ("False", "NoFallbackFound", "No fallbacks are active on this scaled object")
        )
        health = {}
        for trigger in so.triggers:
            state = self.triggers.get(trigger.metric_name) or TriggerState()
            health[trigger.metric_name] = {
                "numberOfFailures": state.failures,
                "status": "Failing" if state.failures else "Happy",
            }
        status = {
            "scaleTargetKind": f"{so.target.api_version}.{so.target.kind}",
            "scaleTargetGVKR": {
                "group": so.target.group,
                "version": so.target.version,
                "kind": so.target.kind,
                "resource": resource,
            },
            "originalReplicaCount": self.original_replicas,
            "hpaName": so.hpa_name,
            "externalMetricNames": [t.metric_name for t in so.triggers],
            "triggersTypes": "metrics-api",
            "conditions": [
                _keda_condition("Ready", ready),
                _keda_condition("Active", active_cond),
                _keda_condition("Fallback", fallback),
            ],
            "health": health,
        }
        if self.last_active is not None:
            status["lastActiveTime"] = rfc3339(self.last_active)
        await self.put_status(status)
        if ready[0] == "True" and self.was_ready is not True:
            await self.op.recorder.event(
                self.obj, "ScaledObjectReady", "ScaledObject is ready for scaling", "keda-operator"
            )
        self.was_ready = ready[0] == "True"

    async def not_ready(self, reason: str, message: str) -> None:
        """The ScaledObject cannot be acted on: say so in its Ready condition (once)."""
        old = (self.obj.get("status") or {}).get("conditions") or []
        status = {
            "conditions": [
                _keda_condition("Ready", ("False", reason, message)),
                *[c for c in old if c.get("type") in ("Active", "Fallback")],
            ]
        }
        if self.was_ready is not False or self.last_status != status:
            log.warning("ScaledObject %s/%s: %s", *self.key, message)
            await self.op.recorder.event(self.obj, reason, message, "keda-operator", "Warning")
        self.was_ready = False
        await self.put_status(status)

    async def put_status(self, status: dict) -> None:
        if status == self.last_status:
            return
        namespace, name = self.key
        path = f"/apis/keda.sh/v1alpha1/namespaces/{namespace}/scaledobjects/{name}/status"
        try:
            self.obj = await self.op.kube.merge_patch(path, {"status": status})
            self.last_status = status
        except ApiError as exc:
            log.warning(
                "could not write the status of ScaledObject %s/%s: %s", namespace, name, exc
            )


def _keda_condition(kind: str, condition: Condition) -> dict:
    status, reason, message = condition
    return {"type": kind, "status": status, "reason": reason, "message": message}


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
    return str(exc) or type(exc).__name__


class Operator:
    """Watches ScaledObjects in all namespaces and runs one loop per ScaledObject."""

    def __init__(
        self,
        kube: KubeClient,
        sync_period_s: float = 15.0,
        downscale_window_s: float = DEFAULT_DOWNSCALE_WINDOW_S,
        out: Any = None,
    ):
        self.kube = kube
        self.sync_period_s = sync_period_s
        self.downscale_window_s = downscale_window_s
        self.out = out or sys.stdout
        self.recorder = Recorder(kube)
        self.discovery = Discovery(kube)
        self.loops: dict[tuple[str, str], tuple[ScaledObjectLoop, asyncio.Task]] = {}
        self.watch_timeout_s = 60
        self._removals: set[asyncio.Task] = set()

    def emit(self, record: dict) -> None:
        """One decision as a JSON line on stdout: the pod log the runbook reads."""
        self.out.write(json.dumps(record, separators=(", ", ": ")) + "\n")
        self.out.flush()

    async def run(self) -> None:
        """List and watch ScaledObjects until cancelled; waits for the CRD when it is absent."""
        waiting_logged = unreachable_logged = False
        try:
            while True:
                try:
                    listing = await self.kube.request("GET", SCALED_OBJECTS)
                except ApiError as exc:
                    if exc.status == 404 and not waiting_logged:
                        log.info("the ScaledObject CRD is not installed yet; waiting for it")
                        waiting_logged = True
                    elif exc.status != 404 and not unreachable_logged:
                        log.warning("cannot list ScaledObjects: %s", exc)
                        unreachable_logged = True
                    await asyncio.sleep(1.0)
                    continue
                except (TimeoutError, OSError) as exc:
                    # The API server is away: say it once per outage, keep trying.
                    if not unreachable_logged:
                        log.warning("cannot list ScaledObjects: %s", exc)
                        unreachable_logged = True
                    await asyncio.sleep(1.0)
                    continue
                waiting_logged = unreachable_logged = False
                self.resync(listing.get("items") or [])
                version = (listing.get("metadata") or {}).get("resourceVersion") or "0"
                await self.follow(version)
        finally:
            await self.stop_loops()

    async def follow(self, version: str) -> None:
        """Apply watch events until the stream ends or fails (then the caller lists again)."""
        try:
            async for event in self.kube.watch(SCALED_OBJECTS, version, self.watch_timeout_s):
                kind, obj = event.get("type"), event.get("object") or {}
                if kind in ("ADDED", "MODIFIED"):
                    self.upsert(obj)
                elif kind == "DELETED":
                    await self.remove(obj)
                elif kind == "ERROR":
                    log.debug("watch of ScaledObjects ended: %s", obj.get("message"))
                    return
        except ApiError as exc:
            log.debug("watch of ScaledObjects refused: %s", exc)
            await asyncio.sleep(1.0)
        except (TimeoutError, OSError, ValueError) as exc:
            log.debug("watch of ScaledObjects broke: %s", exc)
            await asyncio.sleep(0.5)

    def resync(self, items: list[dict]) -> None:
        keys = set()
        for obj in items:
            meta = obj.get("metadata") or {}
            keys.add((meta.get("namespace", "default"), meta.get("name", "")))
            self.upsert(obj)
        for key in list(self.loops):
            if key not in keys:
                loop, _ = self.loops[key]
                self.schedule_removal(loop.obj)

    def upsert(self, obj: dict) -> None:
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace", "default"), meta.get("name", ""))
        if meta.get("deletionTimestamp"):
            self.schedule_removal(obj)
            return
        existing = self.loops.get(key)
        if existing is not None:
            loop, task = existing
            if (loop.obj.get("metadata") or {}).get("uid") == meta.get("uid"):
                loop.update(obj)
                return
            task.cancel()
        log.info("watching ScaledObject %s/%s", *key)
        loop = ScaledObjectLoop(self, obj)
        self.loops[key] = (loop, asyncio.create_task(loop.run()))

    def schedule_removal(self, obj: dict) -> None:
        """Run :meth:`remove` in the background, keeping the task referenced until it ends."""
        task = asyncio.create_task(self.remove(obj))
        self._removals.add(task)
        task.add_done_callback(self._removals.discard)

    async def remove(self, obj: dict) -> None:
        """The ScaledObject is gone: stop its loop, restore the target if asked, and make sure
        its HPA goes (the API server's owner GC normally has removed it already)."""
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace", "default"), meta.get("name", ""))
        entry = self.loops.pop(key, None)
        if entry is None:
            return
        loop, task = entry
        task.cancel()
        log.info("ScaledObject %s/%s deleted; its scale loop stopped", *key)
        try:
            so = parse_scaled_object(obj)
        except SpecError:
            return
        try:
            if so.restore_original and loop.original_replicas is not None:
                resource = await self.discovery.resource(so.target.api_version, so.target.kind)
                prefix = (
                    "/api/v1" if so.target.api_version == "v1" else f"/apis/{so.target.api_version}"
                )
                await self.kube.merge_patch(
                    f"{prefix}/namespaces/{so.namespace}/{resource}/{so.target.name}/scale",
                    {"spec": {"replicas": loop.original_replicas}},
                )
            path = (
                f"/apis/autoscaling/v2/namespaces/{so.namespace}/horizontalpodautoscalers/"
                f"{so.hpa_name}"
            )
            hpa = await self.kube.get(path)
            owners = ((hpa or {}).get("metadata") or {}).get("ownerReferences") or []
            if hpa is not None and any(o.get("uid") == meta.get("uid") for o in owners):
                await self.kube.request("DELETE", path)
        except (TimeoutError, ApiError, SpecError, OSError) as exc:
            log.debug("cleanup after ScaledObject %s/%s: %s", *key, exc)

    async def stop_loops(self) -> None:
        tasks = [task for _, task in self.loops.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.loops.clear()


async def serve_health(port: int, host: str = "127.0.0.1") -> asyncio.AbstractServer:
    """``GET /healthz`` (and ``/readyz``) answer 200; anything else 404."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
            target = request.split(b" ", 2)[1].split(b"?")[0] if b" " in request else b""
            ok = target in (b"/healthz", b"/readyz")
            body = b"ok" if ok else b"not found"
            status = b"200 OK" if ok else b"404 Not Found"
            writer.write(
                b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain\r\n"
                b"Content-Length: "
                + str(len(body)).encode()
                + b"\r\nConnection: close\r\n\r\n"
                + body
            )
            await writer.drain()
        except (
            TimeoutError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ConnectionError,
            IndexError,
        ):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)


async def amain(kubeconfig: str, port: int, sync_period_s: float, downscale_window_s: float) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    health = await serve_health(port)
    kube = KubeClient.from_kubeconfig(kubeconfig)
    operator = Operator(kube, sync_period_s, downscale_window_s)
    log.info(
        "keda-operator (sandbox) serving /healthz on 127.0.0.1:%d; HPA sync every %g s",
        port,
        sync_period_s,
    )
    work = asyncio.create_task(operator.run())
    stopped = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({work, stopped}, return_when=asyncio.FIRST_COMPLETED)

    work.cancel()
    stopped.cancel()
    await asyncio.gather(work, stopped, return_exceptions=True)
    health.close()
    await health.wait_closed()
    await kube.close()
    if work in done and work.exception() is not None:
        log.error("keda-operator stopped: %s", work.exception())
        return 1
    log.info("keda-operator stopped")
    return 0


def main() -> int:
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    kubeconfig = os.environ.get("KUBECONFIG")
    if not kubeconfig:
        log.error("KUBECONFIG is not set")
        return 2
    port = int(os.environ.get("PORT", "8080"))
    sync_period_s = float(os.environ.get("HPA_SYNC_PERIOD_SECONDS", "15"))
    window_s = float(
        os.environ.get("HPA_DOWNSCALE_STABILIZATION_SECONDS", str(DEFAULT_DOWNSCALE_WINDOW_S))
    )
    return asyncio.run(amain(kubeconfig.split(os.pathsep)[0], port, sync_period_s, window_s))


if __name__ == "__main__":
    sys.exit(main())
