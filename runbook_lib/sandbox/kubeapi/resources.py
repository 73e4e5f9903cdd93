"""The kinds the sandbox API server serves, and the registry that maps URLs and kinds to them.

Built-in kinds are declared here once, with what discovery reports about them (short names,
verbs, categories, subresources) and the few facts the server's behaviour depends on (how names
are validated, whether ``metadata.generation`` is kept, what a delete returns). Custom resources
join the registry when their CustomResourceDefinition is created and leave with it. The server
(``cluster.py`` and ``server.py``) is the only user.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
SUB_VERBS = ("get", "patch", "update")


@dataclass
class ResourceType:
    """One resource (a plural name in one API group), as discovery and the handlers see it."""

    group: str
    versions: tuple[str, ...]
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    # Subresources: "status", "scale", "log", "proxy".
    subresources: frozenset[str] = frozenset()
    # How metadata.name is validated: "subdomain", "label" (RFC 1123), "dns1035", "path".
    name_rule: str = "subdomain"
    max_name_length: int | None = None
    # Whether the server keeps metadata.generation (bumped on spec changes).
    generation: bool = False
    # Whether DELETE answers with the object instead of a Status.
    return_deleted: bool = False
    # Propagation policy when the client names none.
    default_propagation: str = "Background"
    # Set for custom resources: the CRD object that defines them.
    crd: dict[str, Any] | None = None
    # For custom resources with a scale subresource: the JSON paths it maps.
    scale_paths: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return (self.group, self.plural)

    @property
    def storage_version(self) -> str:
        return self.versions[0]

    def api_version(self, version: str | None = None) -> str:
        version = version or self.storage_version
        return f"{self.group}/{version}" if self.group else version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"


def _builtin() -> list[ResourceType]:
    core = [
        ResourceType("", ("v1",), "namespaces", "namespace", "Namespace", False, ("ns",),
                     verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
                     subresources=frozenset({"status", "finalize"}), name_rule="label",
                     return_deleted=True),
        ResourceType("", ("v1",), "pods", "pod", "Pod", True, ("po",), ("all",),
                     subresources=frozenset({"status", "log"}), return_deleted=True),
        ResourceType("", ("v1",), "services", "service", "Service", True, ("svc",), ("all",),
                     verbs=("create", "delete", "deletecollection", "get", "list", "patch",
                            "update", "watch"),
                     subresources=frozenset({"status", "proxy"}), name_rule="dns1035",
                     return_deleted=True),
        ResourceType("", ("v1",), "secrets", "secret", "Secret", True),
        ResourceType("", ("v1",), "configmaps", "configmap", "ConfigMap", True, ("cm",)),
        ResourceType("", ("v1",), "serviceaccounts", "serviceaccount", "ServiceAccount", True,
                     ("sa",)),
        ResourceType("", ("v1",), "events", "event", "Event", True, ("ev",)),
        ResourceType("", ("v1",), "endpoints", "endpoints", "Endpoints", True, ("ep",)),
        ResourceType("", ("v1",), "nodes", "node", "Node", False, ("no",),
                     subresources=frozenset({"status"})),
        ResourceType("", ("v1",), "persistentvolumeclaims", "persistentvolumeclaim",
                     "PersistentVolumeClaim", True, ("pvc",),
                     subresources=frozenset({"status"})),
    ]
    apps = [
        ResourceType("apps", ("v1",), "deployments", "deployment", "Deployment", True,
                     ("deploy",), ("all",), subresources=frozenset({"status", "scale"}),
                     generation=True),
        ResourceType("apps", ("v1",), "replicasets", "replicaset", "ReplicaSet", True,
                     ("rs",), ("all",), subresources=frozenset({"status", "scale"}),
                     generation=True),
        ResourceType("apps", ("v1",), "statefulsets", "statefulset", "StatefulSet", True,
                     ("sts",), ("all",), subresources=frozenset({"status", "scale"}),
                     generation=True),
        ResourceType("apps", ("v1",), "daemonsets", "daemonset", "DaemonSet", True,
                     ("ds",), ("all",), subresources=frozenset({"status"}), generation=True),
        ResourceType("apps", ("v1",), "controllerrevisions", "controllerrevision",
                     "ControllerRevision", True),
    ]
    batch = [
        ResourceType("batch", ("v1",), "jobs", "job", "Job", True, (), ("all",),
                     subresources=frozenset({"status"}), generation=True, max_name_length=63,
                     default_propagation="Orphan"),
        ResourceType("batch", ("v1",), "cronjobs", "cronjob", "CronJob", True, ("cj",),
                     ("all",), subresources=frozenset({"status"}), generation=True,
                     max_name_length=52),
    ]
    others = [
        ResourceType("autoscaling", ("v2",), "horizontalpodautoscalers",
                     "horizontalpodautoscaler", "HorizontalPodAutoscaler", True, ("hpa",),
                     ("all",), subresources=frozenset({"status"}), generation=True),
        ResourceType("apiextensions.k8s.io", ("v1",), "customresourcedefinitions",
                     "customresourcedefinition", "CustomResourceDefinition", False,
                     ("crd", "crds"), ("api-extensions",), subresources=frozenset({"status"}),
                     generation=True, return_deleted=True),
        ResourceType("rbac.authorization.k8s.io", ("v1",), "roles", "role", "Role", True,
                     name_rule="path"),
        ResourceType("rbac.authorization.k8s.io", ("v1",), "rolebindings", "rolebinding",
                     "RoleBinding", True, name_rule="path"),
        ResourceType("rbac.authorization.k8s.io", ("v1",), "clusterroles", "clusterrole",
                     "ClusterRole", False, name_rule="path"),
        ResourceType("rbac.authorization.k8s.io", ("v1",), "clusterrolebindings",
                     "clusterrolebinding", "ClusterRoleBinding", False, name_rule="path"),
        ResourceType("coordination.k8s.io", ("v1",), "leases", "lease", "Lease", True),
        ResourceType("policy", ("v1",), "poddisruptionbudgets", "poddisruptionbudget",
                     "PodDisruptionBudget", True, ("pdb",), subresources=frozenset({"status"}),
                     generation=True),
        ResourceType("networking.k8s.io", ("v1",), "ingresses", "ingress", "Ingress", True,
                     ("ing",), subresources=frozenset({"status"}), generation=True),
    ]
    return core + apps + batch + others


# The order groups appear in /apis, as on a real server (built-ins first, CRD groups after).
_GROUP_ORDER = [
    "apps", "events.k8s.io", "authentication.k8s.io", "authorization.k8s.io", "autoscaling",
    "batch", "certificates.k8s.io", "networking.k8s.io", "policy",
    "rbac.authorization.k8s.io", "storage.k8s.io", "admissionregistration.k8s.io",
    "apiextensions.k8s.io", "scheduling.k8s.io", "coordination.k8s.io", "node.k8s.io",
    "discovery.k8s.io", "flowcontrol.apiserver.k8s.io",
]


class Registry:
    """Every served resource, found by URL parts, by kind, or by storage key."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str], ResourceType] = {}
        for rt in _builtin():
            self.add(rt)

    def add(self, rt: ResourceType) -> None:
        self._by_key[rt.key] = rt

    def remove(self, group: str, plural: str) -> None:
        self._by_key.pop((group, plural), None)

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        """The resource at ``/apis/<group>/<version>/<plural>`` (or ``/api/v1/<plural>``)."""
        rt = self._by_key.get((group, plural))
        if rt is None or version not in rt.versions:
            return None
        return rt

    def by_key(self, group: str, plural: str) -> ResourceType | None:
        return self._by_key.get((group, plural))

    def by_kind(self, group: str, kind: str) -> ResourceType | None:
        for rt in self._by_key.values():
            if rt.group == group and rt.kind == kind:
                return rt
        return None

    def all(self) -> list[ResourceType]:
        return list(self._by_key.values())

    def group_versions(self, group: str) -> list[str]:
        """Served versions of ``group``, preferred first."""
        versions: list[str] = []
        for rt in self._by_key.values():
            if rt.group == group:
                for v in rt.versions:
                    if v not in versions:
                        versions.append(v)
        return sorted(versions, key=version_priority)

    def groups(self) -> list[str]:
        """Named groups (not the core group), in the order /apis lists them."""
        names = {rt.group for rt in self._by_key.values() if rt.group}
        known = [g for g in _GROUP_ORDER if g in names]
        return known + sorted(names - set(known))

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [
            rt for rt in self._by_key.values() if rt.group == group and version in rt.versions
        ]


def version_priority(version: str) -> tuple[int, int, int]:
    """Sort key of Kubernetes version names: GA newest first, then beta, then alpha, then
    anything else alphabetically."""
    import re

    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if not m:
        return (3, 0, 0)
    major = int(m.group(1))
    stage = {None: 0, "beta": 1, "alpha": 2}[m.group(2)]
    minor = int(m.group(3) or 0)
    return (stage, -major, -minor)
