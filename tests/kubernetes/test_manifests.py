"""deploy/kubernetes/: the base and the example overlay render with `kubectl kustomize`, every rendered
manifest validates against the pinned Kubernetes schema, and they say what the README promises (two probed
control-plane replicas with settings from a ConfigMap and a Secret, a Role with only what the backend uses
in the workspace namespace, default-deny for workspaces, a PodDisruptionBudget). The README's settings table
has a row for every Kubernetes setting."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from replicas.settings import Settings
from tests.kubernetes.test_objects import KUBERNETES_VERSION

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
# Any kubectl from 1.20 on (Debian bookworm's kubernetes-client, kustomize v2.0.3) renders the manifests;
# REPLICAS_TEST_KUBECTL picks another binary than the one on PATH (checked with 1.20.2 and 1.32.4).
KUBECTL = os.environ.get("REPLICAS_TEST_KUBECTL") or shutil.which("kubectl")


def render(path: Path) -> list[dict]:
    if KUBECTL is None:
        pytest.skip("kubectl (Debian's kubernetes-client) is not installed")
    done = subprocess.run([KUBECTL, "kustomize", str(path)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def one(manifests: list[dict], kind: str, name: str | None = None) -> dict:
    (found,) = [m for m in manifests if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)]
    return found


@pytest.fixture(scope="module", params=["base", "overlays/example"])
def rendered(request) -> list[dict]:
    return render(DEPLOY / request.param)


def test_every_rendered_manifest_validates(rendered):
    assert len(rendered) >= 10
    for manifest in rendered:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_the_control_plane_is_replicated_probed_and_configured_from_a_configmap_and_a_secret(rendered):
    deployment = one(rendered, "Deployment", "replicas")
    assert deployment["spec"]["replicas"] >= 2
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz"
    sources = {next(iter(source)): next(iter(source.values()))["name"] for source in container["envFrom"]}
    assert sources["secretRef"].startswith("replicas-secrets")
    settings = one(rendered, "ConfigMap")
    assert sources["configMapRef"] == settings["metadata"]["name"]
    fields = {f"REPLICAS_{name.upper()}" for name in Settings.model_fields}
    assert set(settings["data"]) <= fields, set(settings["data"]) - fields  # no misspelt setting
    assert settings["data"]["REPLICAS_RUNTIME"] == "kubernetes"
    assert pod["serviceAccountName"] == one(rendered, "ServiceAccount")["metadata"]["name"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    budget = one(rendered, "PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    service = one(rendered, "Service")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    # Workspaces reach the API through the Service (its port 80), whatever the public URL.
    assert [port["port"] for port in service["spec"]["ports"]] == [80]
    service_url = f"http://{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local"
    assert settings["data"]["REPLICAS_K8S_API_URL"] == service_url


def test_the_role_allows_only_what_the_backend_uses_in_the_workspace_namespace(rendered):
    assert not [m for m in rendered if m["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    role = one(rendered, "Role")
    workspaces = one(rendered, "ConfigMap")["data"]["REPLICAS_K8S_NAMESPACE"]
    assert role["metadata"]["namespace"] == workspaces
    allowed = {(group, resource) for rule in role["rules"] for group in rule["apiGroups"]
               for resource in rule["resources"]}
    assert allowed == {("", "pods"), ("", "persistentvolumeclaims"), ("", "secrets"), ("", "pods/exec"),
                       ("", "pods/log"), ("networking.k8s.io", "networkpolicies")}
    assert all("*" not in rule["verbs"] for rule in role["rules"])
    binding = one(rendered, "RoleBinding")
    assert binding["metadata"]["namespace"] == workspaces
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "replicas", "namespace": "replicas"}]


def test_the_workspace_namespace_enforces_restricted_and_denies_by_default(rendered):
    workspaces = one(rendered, "ConfigMap")["data"]["REPLICAS_K8S_NAMESPACE"]
    namespace = one(rendered, "Namespace", workspaces)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    deny = [p for p in rendered if p["kind"] == "NetworkPolicy" and p["metadata"]["namespace"] == workspaces]
    assert [p["spec"] for p in deny] == [{"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}]


def test_the_example_overlay_adds_an_ingress_and_an_external_database(monkeypatch):
    rendered = render(DEPLOY / "overlays" / "example")
    paths = {path["path"] for rule in one(rendered, "Ingress")["spec"]["rules"] for path in rule["http"]["paths"]}
    assert {"/v1", "/previews", "/"} <= paths
    secret = one(rendered, "Secret")
    assert {"REPLICAS_DATABASE_URL", "REPLICAS_SECRET_KEY"} <= set(secret["data"])
    for key, value in one(rendered, "ConfigMap")["data"].items():  # read as the pods read them: the environment
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert "203.0.113.10/32" in settings.k8s_egress_except
    assert settings.k8s_node_selector == {"replicas.dev/pids-limited": "true"}  # nodes with a podPidsLimit
    assert settings.k8s_control_plane_labels["app.kubernetes.io/component"] == "control-plane"


def test_every_kubernetes_setting_has_a_row_in_the_readme_settings_table():
    readme = (DEPLOY.parents[1] / "README.md").read_text()
    table = readme[readme.index("## Configuration"):]
    table = table[:table.index("\n## ")] if "\n## " in table else table
    rows = {line for line in table.splitlines() if line.startswith("| `REPLICAS_K8S_")}
    missing = [f"REPLICAS_{name.upper()}" for name in Settings.model_fields if name.startswith("k8s_")
               and not any(f"`REPLICAS_{name.upper()}`" in row for row in rows)]
    assert missing == []
