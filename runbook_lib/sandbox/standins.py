"""The sandbox's helm and docker: the same interfaces as the real tools, on the sandbox's parts.

``runbook_lib.sandbox.target`` hands these to stage code in place of the command-line tools
(see :mod:`runbook_lib.tools` for the interfaces):

- :class:`SandboxHelm` installs the two charts the runbook uses, recognised by chart name:
  ``sealed-secrets/sealed-secrets`` and ``kedacore/keda``. It creates, through the Kubernetes
  API with the official client, what the real chart creates, with the same names, labels and
  namespaces and the real image names (the sandbox's image registry maps those images to the
  add-on programs in ``runbook_lib.sandbox.addons``), and it keeps a release record as helm 3
  does (Secret ``sh.helm.release.v1.<release>.v<N>``, type ``helm.sh/release.v1``), so
  ``release_status`` works and a second identical install is "unchanged".
- :class:`SandboxDocker` logs in to the sandbox's ECR registry (checking the name only),
  "builds" by recording the build in the sandbox's image registry, and pushes by putting an
  image manifest into moto's ECR repository, so ECR lists the image and its tag.

Deliberate differences from the real charts, each because of how the sandbox runs pods:
containers have no ``command`` (Kubernetes would run it instead of the image's entrypoint, which
is what starts the add-on program); KEDA's operator is probed on its first declared port (the
only port the sandbox add-on serves; the chart probes 8081); the KEDA APIService and admission
webhook configuration are not created (the sandbox API server does not serve those groups), nor
are the certificate volumes. On uninstall, the Sealed Secrets CRD stays (the chart ships it in
``crds/``, which helm never deletes) while KEDA's CRDs go (that chart templates them).
"""

from __future__ import annotations

import base64
import copy
import gzip
import hashlib
import json
import logging
import re
import string
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from runbook_lib.errors import TargetError

log = logging.getLogger("runbook_lib.sandbox.standins")

HELM_NAME = "helm (sandbox stand-in)"
DOCKER_NAME = "docker (sandbox stand-in)"
HELM_VERSION = "v3.16.0+sandbox"
DOCKER_VERSION = "27.0.0+sandbox"
RELEASE_TYPE = "helm.sh/release.v1"
HISTORY_MAX = 10


# =============================================================================================
# helm


@dataclass
class _Chart:
    name: str
    version: str
    app_version: str
    description: str


SEALED_SECRETS_CHART = _Chart(
    "sealed-secrets", "2.18.4", "0.36.1", "Helm chart for the sealed-secrets controller."
)
KEDA_CHART = _Chart(
    "keda", "2.18.0", "2.18.0", "Event-based autoscaler for workloads on Kubernetes"
)
# Chart versions the stand-in knows the app version of; other versions keep the default's.
SEALED_SECRETS_APP_VERSIONS = {"2.18.4": "0.36.1", "2.17.3": "0.30.0", "2.19.3": "0.39.1"}


class SandboxHelm:
    """helm 3 for the two charts the runbook installs, played on the sandbox's API server."""

    name = HELM_NAME

    def __init__(self, info: Any = None):
        self.info = info

    def version(self) -> str:
        return HELM_VERSION

    def upgrade_install(
        self,
        release: str,
        chart: str,
        *,
        namespace: str,
        repo_url: str,
        kubeconfig: Path,
        version: str | None = None,
        values: dict | None = None,
        create_namespace: bool = True,
        timeout_s: int = 300,
    ) -> str:
        """Install or upgrade ``release``; "installed", "upgraded" or "unchanged"."""
        spec = _chart_spec(chart, version)
        values = copy.deepcopy(values or {})
        with _Kube(kubeconfig, timeout_s) as kube:
            history = _history(kube, release, namespace)
            latest = history[-1] if history else None
            if latest is not None and _same_release(latest, spec, values):
                objects = _render(spec, release, namespace, values)
                if all(kube.exists(o) for o in objects.tracked):
                    log.info("helm release %s in %s is unchanged", release, namespace)
                    return "unchanged"

            # Namespace, CRDs from crds/ (only when absent, as helm does), then the templates.
            kube.ensure_namespace(namespace, create_namespace)
            objects = _render(spec, release, namespace, values)
            for crd in objects.crds:
                if not kube.exists(crd):
                    kube.apply(crd)
            for obj in objects.tracked:
                kube.apply(obj)
            if latest is not None:
                prev = {_key(o) for o in _manifest_objects(latest)}
                now = {_key(o) for o in objects.tracked}
                for obj in reversed(_manifest_objects(latest)):
                    if _key(obj) in prev - now:
                        kube.delete(obj)

            revision = (latest["version"] + 1) if latest else 1
            record = _release_record(release, namespace, spec, values, objects, revision, latest)
            for old in history:
                if old["info"]["status"] == "deployed":
                    old["info"]["status"] = "superseded"
                    kube.write_release(old)
            kube.write_release(record)
            for old in history[: max(0, len(history) + 1 - HISTORY_MAX)]:
                kube.delete_release(old)
        action = "upgraded" if latest else "installed"
        log.info(
            "helm release %s (%s %s) %s in %s", release, spec.name, spec.version, action, namespace
        )
        return action

    def release_status(self, release: str, *, namespace: str, kubeconfig: Path) -> str | None:
        with _Kube(kubeconfig, 60) as kube:
            history = _history(kube, release, namespace)
        return history[-1]["info"]["status"] if history else None

    def uninstall(self, release: str, *, namespace: str, kubeconfig: Path) -> bool:
        with _Kube(kubeconfig, 120) as kube:
            history = _history(kube, release, namespace)
            if not history:
                return False
            for obj in reversed(_manifest_objects(history[-1])):
                kube.delete(obj)
            for record in history:
                kube.delete_release(record)
        log.info("helm release %s uninstalled from %s", release, namespace)
        return True


@dataclass
class _Rendered:
    crds: list[dict]  # from the chart's crds/ directory: created once, never tracked
    tracked: list[dict]  # the release's manifest


def _chart_spec(chart: str, version: str | None) -> _Chart:
    name = chart.rsplit("/", 1)[-1]
    if name == "sealed-secrets":
        base = SEALED_SECRETS_CHART
        if version and version != base.version:
            app = SEALED_SECRETS_APP_VERSIONS.get(version, base.app_version)
            return _Chart(base.name, version, app, base.description)
        return base
    if name == "keda":
        base = KEDA_CHART
        if version and version != base.version:
            return _Chart(base.name, version, version.lstrip("v"), base.description)
        return base
    raise TargetError(
        f"{HELM_NAME} knows the charts sealed-secrets/sealed-secrets and kedacore/keda, not {chart}"
    )


def _value(values: dict, path: str, default: Any) -> Any:
    node: Any = values
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return default if node in (None, "") else node


def _flow(mapping: dict[str, str]) -> str:
    """A YAML flow mapping, for label sets substituted into the templates."""
    return "{" + ", ".join(f"{k}: {json.dumps(v)}" for k, v in mapping.items()) + "}"


def _load(template: str, **fields: str) -> list[dict]:
    import yaml

    text = string.Template(template).substitute(fields)
    return [doc for doc in yaml.safe_load_all(text) if doc]


def _render(spec: _Chart, release: str, namespace: str, values: dict) -> _Rendered:
    """The chart's objects for this release, with helm's own annotations on tracked ones."""
    if spec.name == "sealed-secrets":
        rendered = _sealed_secrets(spec, release, namespace, values)
    else:
        rendered = _keda(spec, release, namespace, values)
    for obj in rendered.tracked:
        annotations = obj["metadata"].setdefault("annotations", {})
        annotations["meta.helm.sh/release-name"] = release
        annotations["meta.helm.sh/release-namespace"] = namespace
        if obj.get("kind") == "Deployment":
            _quick_probes(obj)
    return rendered


def _quick_probes(deployment: dict) -> None:
    """Probe timing for local processes that start in a second or two.

    The real charts wait 5-25 s before the first probe and probe every 3-10 s, sized for image
    pulls and JVM-free Go binaries on real nodes; kept as they are, the add-ons would sit
    unready for up to half a minute in every rehearsal. Only the timing changes: the probes
    still run and still gate readiness.
    """
    for container in deployment["spec"]["template"]["spec"].get("containers", []):
        if "readinessProbe" in container:
            container["readinessProbe"].update(initialDelaySeconds=0, periodSeconds=1)
        if "livenessProbe" in container:
            probe = container["livenessProbe"]
            probe["initialDelaySeconds"] = min(probe.get("initialDelaySeconds", 0), 10)


# -- Sealed Secrets ------------------------------------------------------------------------------

# What ``helm install sealed-secrets sealed-secrets/sealed-secrets -n kube-system`` creates
# (chart defaults; descriptions and empty settings left out).
_SEALED_SECRETS = """
apiVersion: v1
kind: ServiceAccount
metadata: {name: $fullname, namespace: $namespace, labels: $labels}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: secrets-unsealer, labels: $labels}
rules:
- {apiGroups: [bitnami.com], resources: [sealedsecrets], verbs: [get, list, watch]}
- {apiGroups: [bitnami.com], resources: [sealedsecrets/status], verbs: [update]}
- {apiGroups: [""], resources: [secrets], verbs: [get, list, create, update, delete, watch]}
- {apiGroups: [""], resources: [events], verbs: [create, patch]}
- {apiGroups: [""], resources: [namespaces], verbs: [get]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: $fullname, labels: $labels}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: secrets-unsealer}
subjects: [{kind: ServiceAccount, name: $fullname, namespace: $namespace}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: $fullname-key-admin, namespace: $namespace, labels: $labels}
rules:
- {apiGroups: [""], resources: [secrets], verbs: [create, list]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: $fullname-key-admin, namespace: $namespace, labels: $labels}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: $fullname-key-admin}
subjects: [{kind: ServiceAccount, name: $fullname, namespace: $namespace}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: $fullname-service-proxier, namespace: $namespace, labels: $labels}
rules:
- {apiGroups: [""], resources: [services], verbs: [get]}
- {apiGroups: [""], resources: [services/proxy], verbs: [create, get]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: $fullname-service-proxier, namespace: $namespace, labels: $labels}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: $fullname-service-proxier}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: "system:authenticated"}]
---
apiVersion: v1
kind: Service
metadata: {name: $fullname, namespace: $namespace, labels: $labels}
spec:
  type: ClusterIP
  ports: [{name: http, port: 8080, targetPort: http, protocol: TCP}]
  selector: $match
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: $fullname, namespace: $namespace, labels: $labels}
spec:
  replicas: 1
  revisionHistoryLimit: 10
  selector: {matchLabels: $match}
  template:
    metadata: {labels: $match}
    spec:
      serviceAccountName: $fullname
      securityContext: {fsGroup: 65534}
      containers:
      - name: controller
        image: $image
        imagePullPolicy: IfNotPresent
        args: [--update-status, --key-prefix, $key_prefix, --listen-addr, ":8080",
               --listen-metrics-addr, ":8081"]
        ports:
        - {containerPort: 8080, name: http, protocol: TCP}
        - {containerPort: 8081, name: metrics, protocol: TCP}
        livenessProbe: {httpGet: {path: /healthz, port: http}, initialDelaySeconds: 0,
                        periodSeconds: 10, timeoutSeconds: 1, failureThreshold: 3}
        readinessProbe: {httpGet: {path: /healthz, port: http}, initialDelaySeconds: 0,
                         periodSeconds: 10, timeoutSeconds: 1, failureThreshold: 3}
        securityContext:
          readOnlyRootFilesystem: true
          runAsNonRoot: true
          runAsUser: 1001
          allowPrivilegeEscalation: false
          capabilities: {drop: [ALL]}
        volumeMounts: [{mountPath: /tmp, name: tmp}]
      volumes: [{name: tmp, emptyDir: {}}]
"""

# The chart's crds/ directory: helm creates it when absent and never updates or deletes it.
_SEALED_SECRET_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: sealedsecrets.bitnami.com
  annotations: {controller-gen.kubebuilder.io/version: v0.16.3}
spec:
  group: bitnami.com
  names: {kind: SealedSecret, listKind: SealedSecretList, plural: sealedsecrets,
          singular: sealedsecret}
  scope: Namespaced
  versions:
  - name: v1alpha1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Status, type: string, jsonPath: ".status.conditions[0].message"}
    - {name: Synced, type: string, jsonPath: ".status.conditions[0].status"}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    schema:
      openAPIV3Schema:
        type: object
        required: [spec]
        properties:
          apiVersion: {type: string}
          kind: {type: string}
          metadata: {type: object}
          spec:
            type: object
            required: [encryptedData]
            properties:
              data: {type: string, format: byte}
              encryptedData:
                type: object
                additionalProperties: {type: string}
                x-kubernetes-preserve-unknown-fields: true
              template:
                type: object
                properties:
                  data: {type: object, nullable: true, additionalProperties: {type: string}}
                  immutable: {type: boolean}
                  metadata: {type: object, nullable: true,
                             x-kubernetes-preserve-unknown-fields: true}
                  type: {type: string}
          status:
            type: object
            properties:
              observedGeneration: {type: integer, format: int64}
              conditions:
                type: array
                items:
                  type: object
                  required: [status, type]
                  properties:
                    lastTransitionTime: {type: string, format: date-time}
                    lastUpdateTime: {type: string, format: date-time}
                    message: {type: string}
                    reason: {type: string}
                    status: {type: string}
                    type: {type: string}
"""


def _sealed_secrets(spec: _Chart, release: str, namespace: str, values: dict) -> _Rendered:
    # The chart's fullname: the release name when it contains the chart name.
    fullname = _value(values, "fullnameOverride", "")
    if not fullname:
        fullname = release if spec.name in release else f"{release}-{spec.name}"
    match = {"app.kubernetes.io/name": spec.name, "app.kubernetes.io/instance": release}
    labels = {
        "app.kubernetes.io/name": spec.name,
        "helm.sh/chart": f"{spec.name}-{spec.version}",
        "app.kubernetes.io/instance": release,
        "app.kubernetes.io/managed-by": "Helm",
        "app.kubernetes.io/version": spec.app_version,
        "app.kubernetes.io/part-of": spec.name,
    }
    image = "{}/{}:{}".format(
        _value(values, "image.registry", "docker.io"),
        _value(values, "image.repository", "bitnami/sealed-secrets-controller"),
        _value(values, "image.tag", spec.app_version),
    )
    tracked = _load(
        _SEALED_SECRETS,
        fullname=fullname[:63].rstrip("-"),
        namespace=namespace,
        labels=_flow(labels),
        match=_flow(match),
        image=json.dumps(image),
        key_prefix=json.dumps(_value(values, "secretName", "sealed-secrets-key")),
    )
    return _Rendered(crds=_load(_SEALED_SECRET_CRD), tracked=tracked)


# -- KEDA ----------------------------------------------------------------------------------------

# What ``helm install keda kedacore/keda -n keda --create-namespace`` creates, minus the
# APIService and the ValidatingWebhookConfiguration (groups the sandbox API does not serve) and
# the certificate volumes. KEDA templates its CRDs, so they belong to the release.
_KEDA = """
apiVersion: v1
kind: ServiceAccount
metadata: {name: keda-operator, namespace: $namespace, labels: $l_operator_sa}
automountServiceAccountToken: true
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: keda-metrics-server, namespace: $namespace, labels: $l_metrics_sa}
automountServiceAccountToken: true
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: keda-webhook, namespace: $namespace, labels: $l_webhook_sa}
automountServiceAccountToken: true
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: keda-operator, labels: $l_operator_sa}
rules:
- apiGroups: [""]
  resources: [configmaps, configmaps/status, limitranges, pods, services, serviceaccounts,
              secrets]
  verbs: [get, list, watch]
- {apiGroups: [""], resources: [events], verbs: [create, patch]}
- {apiGroups: ["*"], resources: ["*/scale"], verbs: [get, list, patch, update, watch]}
- {apiGroups: [apps], resources: [deployments, statefulsets], verbs: [get, list, watch]}
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [create, delete, get, list, patch, update, watch]
- {apiGroups: [batch], resources: [jobs], verbs: [create, delete, get, list, patch, update, watch]}
- apiGroups: [keda.sh]
  resources: [scaledobjects, scaledobjects/finalizers, scaledobjects/status, scaledjobs,
              scaledjobs/finalizers, scaledjobs/status, triggerauthentications,
              triggerauthentications/status, clustertriggerauthentications,
              clustertriggerauthentications/status]
  verbs: ["*"]
- {apiGroups: [coordination.k8s.io], resources: [leases], verbs: ["*"]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: keda-operator, labels: $l_operator_sa}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: keda-operator}
subjects: [{kind: ServiceAccount, name: keda-operator, namespace: $namespace}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: keda-operator-external-metrics-reader, labels: $l_metrics_reader}
rules: [{apiGroups: [external.metrics.k8s.io], resources: ["*"], verbs: [get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: keda-operator-hpa-controller-external-metrics, labels: $l_hpa_binding}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole,
          name: keda-operator-external-metrics-reader}
subjects: [{kind: ServiceAccount, name: horizontal-pod-autoscaler, namespace: kube-system}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: keda-operator-system-auth-delegator, labels: $l_auth_delegator}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:auth-delegator"}
subjects: [{kind: ServiceAccount, name: keda-metrics-server, namespace: $namespace}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: keda-operator-auth-reader, namespace: kube-system, labels: $l_auth_reader}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role,
          name: extension-apiserver-authentication-reader}
subjects: [{kind: ServiceAccount, name: keda-metrics-server, namespace: $namespace}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: keda-operator-webhook, labels: $l_webhook_role}
rules:
- apiGroups: [keda.sh]
  resources: [scaledobjects, triggerauthentications, clustertriggerauthentications]
  verbs: [list, watch]
- {apiGroups: [apps], resources: [deployments, statefulsets], verbs: [list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: keda-operator-webhook, labels: $l_webhook_role}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: keda-operator-webhook}
subjects: [{kind: ServiceAccount, name: keda-webhook, namespace: $namespace}]
---
apiVersion: v1
kind: Service
metadata: {name: keda-operator, namespace: $namespace, labels: $l_operator_sa}
spec:
  ports: [{name: metricsservice, port: 9666, targetPort: 9666}]
  selector: {app: keda-operator}
---
apiVersion: v1
kind: Service
metadata: {name: keda-operator-metrics-apiserver, namespace: $namespace, labels: $l_metrics_svc}
spec:
  ports:
  - {name: https, port: 443, targetPort: 6443, protocol: TCP}
  - {name: metrics, port: 8080, targetPort: 8080, protocol: TCP}
  selector: {app: keda-operator-metrics-apiserver}
---
apiVersion: v1
kind: Service
metadata: {name: keda-admission-webhooks, namespace: $namespace, labels: $l_webhook_svc}
spec:
  ports: [{name: https, port: 443, targetPort: 9443, protocol: TCP}]
  selector: {app: keda-admission-webhooks}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: keda-operator, namespace: $namespace, labels: $l_operator}
spec:
  revisionHistoryLimit: 10
  replicas: 1
  selector: {matchLabels: {app: keda-operator}}
  template:
    metadata: {labels: $l_operator}
    spec:
      serviceAccountName: keda-operator
      automountServiceAccountToken: true
      securityContext: {runAsNonRoot: true}
      nodeSelector: {kubernetes.io/os: linux}
      containers:
      - name: keda-operator
        image: $image_operator
        imagePullPolicy: Always
        args: [--leader-elect, --disable-compression=true, --zap-log-level=info,
               --zap-encoder=console, --zap-time-encoding=rfc3339,
               --operator-service-name=keda-operator,
               --metrics-server-service-name=keda-operator-metrics-apiserver,
               --webhooks-service-name=keda-admission-webhooks,
               --k8s-cluster-domain=cluster.local]
        ports:
        - {containerPort: 8080, name: http, protocol: TCP}
        - {containerPort: 9666, name: metricsservice, protocol: TCP}
        # The chart probes 8081; the sandbox's add-on serves health on its first port.
        livenessProbe: {httpGet: {path: /healthz, port: 8080},
                        initialDelaySeconds: 25, periodSeconds: 10,
                        timeoutSeconds: 1, failureThreshold: 3}
        readinessProbe: {httpGet: {path: /readyz, port: 8080},
                         initialDelaySeconds: 20, periodSeconds: 3,
                         timeoutSeconds: 1, failureThreshold: 3}
        env:
        - {name: WATCH_NAMESPACE, value: ""}
        - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        - {name: POD_NAMESPACE, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
        - {name: OPERATOR_NAME, value: keda-operator}
        - {name: KEDA_HTTP_DEFAULT_TIMEOUT, value: "3000"}
        - {name: KEDA_HTTP_MIN_TLS_VERSION, value: TLS12}
        resources:
          requests: {cpu: 100m, memory: 100Mi}
          limits: {cpu: "1", memory: 1000Mi}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: keda-operator-metrics-apiserver, namespace: $namespace, labels: $l_metrics}
spec:
  revisionHistoryLimit: 10
  replicas: 1
  selector: {matchLabels: {app: keda-operator-metrics-apiserver}}
  template:
    metadata: {labels: $l_metrics}
    spec:
      serviceAccountName: keda-metrics-server
      automountServiceAccountToken: true
      securityContext: {runAsNonRoot: true}
      nodeSelector: {kubernetes.io/os: linux}
      containers:
      - name: keda-operator-metrics-apiserver
        image: $image_metrics
        imagePullPolicy: Always
        args: [--port=8080, --secure-port=6443, --logtostderr=true, --stderrthreshold=ERROR,
               --disable-compression=true,
               "--metrics-service-address=keda-operator.$namespace.svc.cluster.local:9666",
               --v=0]
        ports:
        - {containerPort: 6443, name: https, protocol: TCP}
        - {containerPort: 8080, name: metrics, protocol: TCP}
        livenessProbe: {httpGet: {path: /healthz, port: 6443, scheme: HTTPS},
                        initialDelaySeconds: 5, periodSeconds: 10,
                        timeoutSeconds: 1, failureThreshold: 3}
        readinessProbe: {httpGet: {path: /readyz, port: 6443, scheme: HTTPS},
                         initialDelaySeconds: 5, periodSeconds: 3,
                         timeoutSeconds: 1, failureThreshold: 3}
        env:
        - {name: WATCH_NAMESPACE, value: ""}
        - {name: POD_NAMESPACE, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
        - {name: KEDA_HTTP_DEFAULT_TIMEOUT, value: "3000"}
        resources:
          requests: {cpu: 100m, memory: 100Mi}
          limits: {cpu: "1", memory: 1000Mi}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: keda-admission-webhooks, namespace: $namespace, labels: $l_webhooks}
spec:
  revisionHistoryLimit: 10
  replicas: 1
  selector: {matchLabels: {app: keda-admission-webhooks}}
  template:
    metadata: {labels: $l_webhooks}
    spec:
      serviceAccountName: keda-webhook
      automountServiceAccountToken: true
      securityContext: {runAsNonRoot: true}
      nodeSelector: {kubernetes.io/os: linux}
      containers:
      - name: keda-admission-webhooks
        image: $image_webhooks
        imagePullPolicy: Always
        args: [--zap-log-level=info, --zap-encoder=console, --zap-time-encoding=rfc3339,
               --cert-dir=/certs, "--health-probe-bind-address=:8081",
               "--metrics-bind-address=:8080"]
        ports: [{containerPort: 9443, name: http, protocol: TCP}]
        livenessProbe: {httpGet: {path: /healthz, port: 8081},
                        initialDelaySeconds: 25, periodSeconds: 10,
                        timeoutSeconds: 1, failureThreshold: 3}
        readinessProbe: {httpGet: {path: /readyz, port: 8081},
                         initialDelaySeconds: 5, periodSeconds: 3,
                         timeoutSeconds: 1, failureThreshold: 3}
        env:
        - {name: WATCH_NAMESPACE, value: ""}
        - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        - {name: POD_NAMESPACE, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
        resources:
          requests: {cpu: 100m, memory: 100Mi}
          limits: {cpu: "1", memory: 1000Mi}
"""

# KEDA's four CRDs (schemas reduced to the fields KEDA documents; status kept whole).
_KEDA_CRDS = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: scaledobjects.keda.sh
  labels: $l_crd
  annotations: {controller-gen.kubebuilder.io/version: v0.18.0}
spec:
  group: keda.sh
  names: {kind: ScaledObject, listKind: ScaledObjectList, plural: scaledobjects,
          singular: scaledobject, shortNames: [so]}
  scope: Namespaced
  versions:
  - name: v1alpha1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: ScaleTargetKind, type: string, jsonPath: .status.scaleTargetKind}
    - {name: ScaleTargetName, type: string, jsonPath: .spec.scaleTargetRef.name}
    - {name: Min, type: integer, jsonPath: .spec.minReplicaCount}
    - {name: Max, type: integer, jsonPath: .spec.maxReplicaCount}
    - {name: Ready, type: string, jsonPath: '.status.conditions[?(@.type=="Ready")].status'}
    - {name: Active, type: string, jsonPath: '.status.conditions[?(@.type=="Active")].status'}
    - {name: Fallback, type: string,
       jsonPath: '.status.conditions[?(@.type=="Fallback")].status'}
    - {name: Paused, type: string, jsonPath: '.status.conditions[?(@.type=="Paused")].status'}
    - {name: Triggers, type: string, jsonPath: '.spec.triggers[*].type'}
    - {name: Authentications, type: string,
       jsonPath: '.spec.triggers[*].authenticationRef.name'}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    schema:
      openAPIV3Schema:
        type: object
        required: [spec]
        properties:
          apiVersion: {type: string}
          kind: {type: string}
          metadata: {type: object}
          spec:
            type: object
            required: [scaleTargetRef, triggers]
            properties:
              advanced:
                type: object
                properties:
                  horizontalPodAutoscalerConfig:
                    type: object
                    properties:
                      behavior: {type: object, x-kubernetes-preserve-unknown-fields: true}
                      name: {type: string}
                  restoreToOriginalReplicaCount: {type: boolean}
                  scalingModifiers: {type: object, x-kubernetes-preserve-unknown-fields: true}
              cooldownPeriod: {type: integer, format: int32}
              fallback:
                type: object
                required: [failureThreshold, replicas]
                properties:
                  behavior: {type: string}
                  failureThreshold: {type: integer, format: int32}
                  replicas: {type: integer, format: int32}
              idleReplicaCount: {type: integer, format: int32}
              initialCooldownPeriod: {type: integer, format: int32}
              maxReplicaCount: {type: integer, format: int32}
              minReplicaCount: {type: integer, format: int32}
              pollingInterval: {type: integer, format: int32}
              scaleTargetRef:
                type: object
                required: [name]
                properties:
                  apiVersion: {type: string}
                  envSourceContainerName: {type: string}
                  kind: {type: string}
                  name: {type: string}
              triggers:
                type: array
                items:
                  type: object
                  required: [metadata, type]
                  properties:
                    authenticationRef:
                      type: object
                      required: [name]
                      properties: {kind: {type: string}, name: {type: string}}
                    metadata: {type: object, additionalProperties: {type: string}}
                    metricType: {type: string}
                    name: {type: string}
                    type: {type: string}
                    useCachedMetrics: {type: boolean}
          status: {type: object, x-kubernetes-preserve-unknown-fields: true}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: scaledjobs.keda.sh
  labels: $l_crd
  annotations: {controller-gen.kubebuilder.io/version: v0.18.0}
spec:
  group: keda.sh
  names: {kind: ScaledJob, listKind: ScaledJobList, plural: scaledjobs, singular: scaledjob,
          shortNames: [sj]}
  scope: Namespaced
  versions:
  - name: v1alpha1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Min, type: integer, jsonPath: .spec.minReplicaCount}
    - {name: Max, type: integer, jsonPath: .spec.maxReplicaCount}
    - {name: Ready, type: string, jsonPath: '.status.conditions[?(@.type=="Ready")].status'}
    - {name: Active, type: string, jsonPath: '.status.conditions[?(@.type=="Active")].status'}
    - {name: Paused, type: string, jsonPath: '.status.conditions[?(@.type=="Paused")].status'}
    - {name: Triggers, type: string, jsonPath: '.spec.triggers[*].type'}
    - {name: Authentications, type: string,
       jsonPath: '.spec.triggers[*].authenticationRef.name'}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    schema:
      openAPIV3Schema:
        type: object
        required: [spec]
        properties:
          apiVersion: {type: string}
          kind: {type: string}
          metadata: {type: object}
          spec:
            type: object
            required: [jobTargetRef, triggers]
            properties:
              envSourceContainerName: {type: string}
              failedJobsHistoryLimit: {type: integer, format: int32}
              jobTargetRef: {type: object, x-kubernetes-preserve-unknown-fields: true}
              maxReplicaCount: {type: integer, format: int32}
              minReplicaCount: {type: integer, format: int32}
              pollingInterval: {type: integer, format: int32}
              rollout: {type: object, x-kubernetes-preserve-unknown-fields: true}
              scalingStrategy: {type: object, x-kubernetes-preserve-unknown-fields: true}
              successfulJobsHistoryLimit: {type: integer, format: int32}
              triggers: {type: array}  # the same schema as ScaledObject's, set below
          status: {type: object, x-kubernetes-preserve-unknown-fields: true}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: triggerauthentications.keda.sh
  labels: $l_crd
  annotations: {controller-gen.kubebuilder.io/version: v0.18.0}
spec:
  group: keda.sh
  names: {kind: TriggerAuthentication, listKind: TriggerAuthenticationList,
          plural: triggerauthentications, singular: triggerauthentication,
          shortNames: [ta, triggerauth]}
  scope: Namespaced
  versions:
  - name: v1alpha1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: PodIdentity, type: string, jsonPath: .spec.podIdentity.provider}
    - {name: Secret, type: string, jsonPath: '.spec.secretTargetRef[*].name'}
    - {name: Env, type: string, jsonPath: '.spec.env[*].name'}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    schema:
      openAPIV3Schema:
        type: object
        required: [spec]
        properties:
          apiVersion: {type: string}
          kind: {type: string}
          metadata: {type: object}
          spec: {type: object, x-kubernetes-preserve-unknown-fields: true}
          status: {type: object, x-kubernetes-preserve-unknown-fields: true}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: clustertriggerauthentications.keda.sh
  labels: $l_crd
  annotations: {controller-gen.kubebuilder.io/version: v0.18.0}
spec:
  group: keda.sh
  names: {kind: ClusterTriggerAuthentication, listKind: ClusterTriggerAuthenticationList,
          plural: clustertriggerauthentications, singular: clustertriggerauthentication,
          shortNames: [cta, clustertriggerauth]}
  scope: Cluster
  versions:
  - name: v1alpha1
    served: true
    storage: true
    subresources: {status: {}}
    # columns and schema: the same as TriggerAuthentication's, set below
"""


def _keda(spec: _Chart, release: str, namespace: str, values: dict) -> _Rendered:
    common = {
        "helm.sh/chart": f"{spec.name}-{spec.version}",
        "app.kubernetes.io/component": "operator",
        "app.kubernetes.io/managed-by": "Helm",
        "app.kubernetes.io/instance": release,
        "app.kubernetes.io/part-of": "keda-operator",
        "app.kubernetes.io/version": spec.app_version,
    }

    def labels(name: str, app: bool = False) -> str:
        extra = {"app": name, "name": name} if app else {}
        return _flow({**extra, "app.kubernetes.io/name": name, **common})

    def image(key: str, repository: str) -> str:
        registry = _value(values, f"image.{key}.registry", "ghcr.io")
        repo = _value(values, f"image.{key}.repository", repository)
        tag = _value(values, f"image.{key}.tag", spec.app_version)
        return json.dumps(f"{registry}/{repo}:{tag}")

    crd_labels = _flow(
        {
            "app.kubernetes.io/name": "keda-operator",
            "app.kubernetes.io/part-of": "keda-operator",
            "app.kubernetes.io/version": spec.app_version,
            "app.kubernetes.io/managed-by": "Helm",
            "app.kubernetes.io/instance": release,
            "helm.sh/chart": f"{spec.name}-{spec.version}",
        }
    )
    crds = _load(_KEDA_CRDS, l_crd=crd_labels)
    by_name = {c["metadata"]["name"]: c["spec"]["versions"][0] for c in crds}
    so = by_name["scaledobjects.keda.sh"]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    sj = by_name["scaledjobs.keda.sh"]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    sj["properties"]["triggers"] = copy.deepcopy(so["properties"]["triggers"])
    ta, cta = (
        by_name["triggerauthentications.keda.sh"],
        by_name["clustertriggerauthentications.keda.sh"],
    )
    cta["additionalPrinterColumns"] = copy.deepcopy(ta["additionalPrinterColumns"])
    cta["schema"] = copy.deepcopy(ta["schema"])

    tracked = _load(
        _KEDA,
        namespace=namespace,
        l_operator=labels("keda-operator", app=True),
        l_metrics=labels("keda-operator-metrics-apiserver", app=True),
        l_webhooks=labels("keda-admission-webhooks", app=True),
        l_operator_sa=labels("keda-operator"),
        l_metrics_sa=labels("keda-metrics-server"),
        l_webhook_sa=labels("keda-webhook"),
        l_metrics_reader=labels("keda-operator-external-metrics-reader"),
        l_hpa_binding=labels("keda-operator-hpa-controller-external-metrics"),
        l_auth_delegator=labels("keda-operator-system-auth-delegator"),
        l_auth_reader=labels("keda-operator-auth-reader"),
        l_webhook_role=labels("keda-operator-webhook"),
        l_metrics_svc=labels("keda-operator-metrics-apiserver"),
        l_webhook_svc=labels("keda-admission-webhooks"),
        image_operator=image("keda", "kedacore/keda"),
        image_metrics=image("metricsApiServer", "kedacore/keda-metrics-apiserver"),
        image_webhooks=image("webhooks", "kedacore/keda-admission-webhooks"),
    )
    # The chart templates its CRDs: they are part of the release, after the service accounts.
    return _Rendered(crds=[], tracked=tracked[:3] + crds + tracked[3:])


# -- the release record --------------------------------------------------------------------------


def _key(obj: dict) -> tuple[str, str, str, str]:
    meta = obj.get("metadata") or {}
    return (obj["apiVersion"], obj["kind"], meta.get("namespace") or "", meta["name"])


def _manifest_text(spec: _Chart, objects: list[dict]) -> str:
    import yaml

    docs = []
    for obj in objects:
        source = f"{spec.name}/templates/{obj['kind'].lower()}.yaml"
        docs.append(f"---\n# Source: {source}\n" + yaml.safe_dump(obj, sort_keys=False))
    return "".join(docs)


def _manifest_objects(record: dict) -> list[dict]:
    import yaml

    return [d for d in yaml.safe_load_all(record.get("manifest") or "") if d]


def _same_release(record: dict, spec: _Chart, values: dict) -> bool:
    chart = (record.get("chart") or {}).get("metadata") or {}
    return (
        record["info"]["status"] == "deployed"
        and chart.get("name") == spec.name
        and chart.get("version") == spec.version
        and (record.get("config") or {}) == values
    )


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime())


def _release_record(
    release, namespace, spec: _Chart, values, objects: _Rendered, revision, previous
) -> dict:
    now = _now()
    first = previous["info"]["first_deployed"] if previous else now
    return {
        "name": release,
        "namespace": namespace,
        "version": revision,
        "info": {
            "first_deployed": first,
            "last_deployed": now,
            "deleted": "",
            "description": "Upgrade complete" if previous else "Install complete",
            "status": "deployed",
            "notes": f"{spec.name} {spec.app_version} installed by the sandbox's helm stand-in",
        },
        "chart": {
            "metadata": {
                "name": spec.name,
                "version": spec.version,
                "appVersion": spec.app_version,
                "description": spec.description,
                "apiVersion": "v2",
                "type": "application",
            },
            "lock": None,
            "templates": [],
            "values": {},
            "schema": None,
            "files": [],
        },
        "config": values,
        "manifest": _manifest_text(spec, objects.tracked),
        "hooks": [],
    }


def encode_release(record: dict) -> str:
    """Helm 3's storage encoding of a release: gzip of the JSON, then base64."""
    raw = json.dumps(record, separators=(",", ":")).encode()
    return base64.b64encode(gzip.compress(raw, mtime=0)).decode()


def decode_release(data: str) -> dict:
    raw = base64.b64decode(data)
    if raw[:3] == b"\x1f\x8b\x08":
        raw = gzip.decompress(raw)
    return json.loads(raw)


def _history(kube: _Kube, release: str, namespace: str) -> list[dict]:
    """Every stored revision of ``release``, oldest first."""
    records = []
    for secret in kube.release_secrets(release, namespace):
        data = (secret.data or {}).get("release")
        if not data:
            continue
        try:
            records.append(decode_release(base64.b64decode(data).decode()))
        except (ValueError, OSError):
            log.warning("unreadable helm release record %s", secret.metadata.name)
    return sorted(records, key=lambda r: r["version"])


# -- the Kubernetes side -------------------------------------------------------------------------

# (apiVersion, kind) → (API class, method suffix, namespaced)
_KINDS = {
    ("v1", "Namespace"): ("CoreV1Api", "namespace", False),
    ("v1", "ServiceAccount"): ("CoreV1Api", "namespaced_service_account", True),
    ("v1", "Service"): ("CoreV1Api", "namespaced_service", True),
    ("v1", "Secret"): ("CoreV1Api", "namespaced_secret", True),
    ("apps/v1", "Deployment"): ("AppsV1Api", "namespaced_deployment", True),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): (
        "RbacAuthorizationV1Api",
        "cluster_role",
        False,
    ),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): (
        "RbacAuthorizationV1Api",
        "cluster_role_binding",
        False,
    ),
    ("rbac.authorization.k8s.io/v1", "Role"): ("RbacAuthorizationV1Api", "namespaced_role", True),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): (
        "RbacAuthorizationV1Api",
        "namespaced_role_binding",
        True,
    ),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): (
        "ApiextensionsV1Api",
        "custom_resource_definition",
        False,
    ),
}


class _Kube:
    """The few API calls the helm stand-in makes, on the official client."""

    def __init__(self, kubeconfig: Path, timeout_s: float):
        self.kubeconfig = Path(kubeconfig)
        self.timeout_s = timeout_s

    def __enter__(self) -> Self:
        from kubernetes import client, config

        self._client_mod = client
        self.api_client = config.new_client_from_config(config_file=str(self.kubeconfig))
        self._apis: dict[str, Any] = {}
        return self

    def __exit__(self, *exc) -> None:
        self.api_client.close()

    def _api(self, name: str):
        if name not in self._apis:
            self._apis[name] = getattr(self._client_mod, name)(self.api_client)
        return self._apis[name]

    def _call(self, verb: str, obj: dict, **kwargs):
        api_name, suffix, namespaced = _KINDS[(obj["apiVersion"], obj["kind"])]
        meta = obj["metadata"]
        fn = getattr(self._api(api_name), f"{verb}_{suffix}")
        args = []
        if verb != "create":
            args.append(meta["name"])
        if namespaced:
            args.append(meta["namespace"])
        if verb in ("create", "replace"):
            args.append(obj)
        return fn(*args, _request_timeout=self.timeout_s, **kwargs)

    def exists(self, obj: dict) -> bool:
        from kubernetes.client.rest import ApiException

        try:
            self._call("read", obj)
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise _target_error("read", obj, exc) from None

    def apply(self, obj: dict) -> None:
        """Create ``obj``, or replace the existing object with it."""
        from kubernetes.client.rest import ApiException

        try:
            self._call("create", obj)
            log.info("created %s %s", obj["kind"], _name(obj))
            return
        except ApiException as exc:
            if exc.status != 409:
                raise _target_error("create", obj, exc) from None
        try:
            current = self.api_client.sanitize_for_serialization(self._call("read", obj))
            body = copy.deepcopy(obj)
            body["metadata"]["resourceVersion"] = current["metadata"].get("resourceVersion")
            if obj["kind"] == "Service":
                # A Service keeps the cluster IP it was given.
                for field in ("clusterIP", "clusterIPs"):
                    if current.get("spec", {}).get(field):
                        body["spec"][field] = current["spec"][field]
            self._call("replace", body)
            log.info("updated %s %s", obj["kind"], _name(obj))
        except ApiException as exc:
            raise _target_error("replace", obj, exc) from None

    def delete(self, obj: dict) -> None:
        from kubernetes.client.rest import ApiException

        try:
            self._call("delete", obj)
            log.info("deleted %s %s", obj["kind"], _name(obj))
        except ApiException as exc:
            if exc.status != 404:
                raise _target_error("delete", obj, exc) from None

    def ensure_namespace(self, namespace: str, create: bool) -> None:
        ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
        if self.exists(ns):
            return
        if not create:
            raise TargetError(f'{HELM_NAME}: namespaces "{namespace}" not found')
        self.apply(ns)

    def release_secrets(self, release: str, namespace: str) -> list:
        from kubernetes.client.rest import ApiException

        try:
            return (
                self._api("CoreV1Api")
                .list_namespaced_secret(
                    namespace,
                    label_selector=f"owner=helm,name={release}",
                    _request_timeout=self.timeout_s,
                )
                .items
            )
        except ApiException as exc:
            if exc.status == 404:
                return []
            raise TargetError(f"{HELM_NAME}: listing releases: {_message(exc)}") from None

    def write_release(self, record: dict) -> None:
        name = f"sh.helm.release.v1.{record['name']}.v{record['version']}"
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": RELEASE_TYPE,
            "metadata": {
                "name": name,
                "namespace": record["namespace"],
                "labels": {
                    "name": record["name"],
                    "owner": "helm",
                    "status": record["info"]["status"],
                    "version": str(record["version"]),
                    "modifiedAt": str(int(time.time())),
                },
            },
            "data": {"release": base64.b64encode(encode_release(record).encode()).decode()},
        }
        self.apply(secret)

    def delete_release(self, record: dict) -> None:
        name = f"sh.helm.release.v1.{record['name']}.v{record['version']}"
        self.delete(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name, "namespace": record["namespace"]},
            }
        )


def _name(obj: dict) -> str:
    meta = obj["metadata"]
    return f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]


def _message(exc) -> str:
    try:
        return json.loads(exc.body).get("message") or exc.reason
    except (TypeError, ValueError):
        return str(exc.reason)


def _target_error(verb: str, obj: dict, exc) -> TargetError:
    return TargetError(
        f"{HELM_NAME}: {verb} {obj['kind']} {_name(obj)}: {exc.status} {_message(exc)}"
    )


# =============================================================================================
# docker

_ECR_HOST = re.compile(r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com$")
MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"


class SandboxDocker:
    """docker for build and push, with the sandbox's image registry and moto's ECR."""

    name = DOCKER_NAME

    def __init__(self, info: Any):
        from runbook_lib.sandbox.images import ImageResolver

        self.info = info
        self.images = ImageResolver(Path(info.directory))

    def version(self) -> str:
        return DOCKER_VERSION

    def login(self, registry: str, username: str, password: str) -> None:
        """Accept a login to this sandbox's ECR registry; store nothing."""
        host = _registry_host(registry)
        m = _ECR_HOST.match(host)
        if m is None or m.group("account") != self.info.account_id:
            raise TargetError(
                f"{DOCKER_NAME}: {host} is not an ECR registry of the sandbox's account "
                f"{self.info.account_id}"
            )
        if username != "AWS" or not password:
            raise TargetError(f"{DOCKER_NAME}: ECR expects user AWS and a token from ECR")
        log.info("logged in to %s", host)

    def build(
        self, context: Path, dockerfile: Path, image_ref: str, *, platform: str = "linux/amd64"
    ) -> None:
        """Record the build; the image's command comes from the Dockerfile's final stage."""
        try:
            digest = self.images.record_build(image_ref, Path(context), Path(dockerfile))
        except (OSError, ValueError) as exc:
            raise TargetError(f"{DOCKER_NAME}: build of {image_ref} failed: {exc}") from None
        log.info("built %s (%s, %s)", image_ref, digest[:19], platform)

    def push(self, image_ref: str) -> str:
        """Put the image's manifest into its ECR repository; return the manifest digest."""
        from runbook_lib.sandbox.images import normalize_ref

        build = self.images.built(image_ref)
        if build is None:
            raise TargetError(
                f"{DOCKER_NAME}: An image does not exist locally with the tag: {image_ref}"
            )
        repository, tag, _ = normalize_ref(image_ref)
        host, _, repo_name = repository.partition("/")
        m = _ECR_HOST.match(host)
        if m is None or m.group("account") != self.info.account_id:
            raise TargetError(f"{DOCKER_NAME}: {host} is not this sandbox's ECR registry")

        manifest = _manifest(build["digest"])
        digest = "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()
        ecr = self._ecr(m.group("region"))
        try:
            ecr.describe_repositories(repositoryNames=[repo_name])
        except ecr.exceptions.RepositoryNotFoundException:
            raise TargetError(
                f"{DOCKER_NAME}: name unknown: The repository with name '{repo_name}' does "
                f"not exist in the registry with id '{self.info.account_id}'"
            ) from None
        try:
            ecr.put_image(
                repositoryName=repo_name,
                imageManifest=manifest,
                imageManifestMediaType=MANIFEST_TYPE,
                imageTag=tag or "latest",
                imageDigest=digest,
            )
        except ecr.exceptions.ImageAlreadyExistsException:
            log.info("%s is already in ECR", image_ref)
        self.images.record_push(image_ref, digest)
        log.info("pushed %s (%s)", image_ref, digest[:19])
        return digest

    def _ecr(self, region: str):
        import boto3

        return boto3.client(
            "ecr",
            endpoint_url=self.info.aws_endpoint_url,
            region_name=region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            aws_session_token="testing",
        )


def _registry_host(registry: str) -> str:
    host = registry.strip()
    for prefix in ("https://", "http://"):
        host = host.removeprefix(prefix)
    return host.split("/", 1)[0].lower()


def _manifest(build_digest: str) -> str:
    """A Docker v2 image manifest for a build (deterministic, so the digest is too)."""
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": 0,
            "digest": build_digest,
        },
        "layers": [
            {
                "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "size": 0,
                "digest": build_digest,
            }
        ],
    }
    return json.dumps(manifest, indent=3)
