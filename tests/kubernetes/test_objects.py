"""The pure builders (runtime/k8s_objects.py), with no cluster at all: their manifests validate against the
Kubernetes schema of a pinned release, every workspace pod carries the security fields, and `pod_condition`
reads the failure phases with their reasons."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import kubernetes_validate
import pytest

from replicas.runtime.base import RuntimeStatus
from replicas.runtime.cgroups import SIZE_LIMITS
from replicas.runtime.k8s_objects import (
    ENGINE_CONTAINER,
    UPLOAD_CONTAINER,
    WorkspaceObjects,
    make_network_policy,
    make_pod,
    make_pvc,
    make_secret,
    pod_condition,
    workspace_name,
)

# The oldest Kubernetes release we support; the schema the manifests must pass (strict: no unknown field).
KUBERNETES_VERSION = "1.30.0"
NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)


def workspace(**overrides) -> WorkspaceObjects:
    values = {"workspace_id": "3f6c2a10-8d1e-4c55-9b7e-0a1b2c3d4e5f", "namespace": "replicas-workspaces",
              "image": "registry.example.com/replicas-workspace:1.0", "size": "small",
              "mount_path": "/var/lib/replicas/workspaces/3f6c2a10-8d1e-4c55-9b7e-0a1b2c3d4e5f", "storage": "20Gi",
              "engine_port": 7878, "env": {"LANG": "C.UTF-8"}, "secret_keys": ("REPLICAS_ENGINE_SECRET",)}
    return WorkspaceObjects(**{**values, **overrides})


def validate(manifest: dict) -> None:
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def every_pod() -> list[dict]:
    """Every kind of pod the backend creates, for both sizes."""
    pods = []
    for size in SIZE_LIMITS:
        w = workspace(size=size)
        pods += [make_pod(w), make_pod(w, upload=True), make_pod(w, exec_name=f"{w.name}-exec-1", exec_seconds=60),
                 make_pod(w, upload=True, exec_name=f"{w.name}-exec-2", exec_seconds=60),
                 make_pod(workspace(size=size, engine_command=("python3", "-m", "replicas.engine.main")))]
    return pods


def test_every_manifest_validates_against_the_pinned_kubernetes_schema():
    w = workspace(storage_class="fast-ssd", node_selector={"replicas.dev/pids-limited": "true"})
    manifests = [make_pvc(w), make_pvc(workspace()), make_secret(w, {"REPLICAS_ENGINE_SECRET": "s3cret"}),
                 make_network_policy(w, control_plane_namespace="replicas",
                                     control_plane_labels={"app.kubernetes.io/name": "replicas"},
                                     control_plane_port=8321), *every_pod()]
    for manifest in manifests:
        validate(manifest)


def test_every_workspace_pod_is_unprivileged():
    for pod in every_pod():
        spec = pod["spec"]
        assert spec["automountServiceAccountToken"] is False
        assert spec["enableServiceLinks"] is False
        assert not spec["hostNetwork"] and not spec["hostPID"] and not spec["hostIPC"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == 1000
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert all("hostPath" not in volume for volume in spec["volumes"])
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            security = container["securityContext"]
            assert security["runAsNonRoot"] is True and security["runAsUser"] == 1000
            assert security["allowPrivilegeEscalation"] is False
            assert security["privileged"] is False
            assert security["capabilities"] == {"drop": ["ALL"]}
            assert security["seccompProfile"] == {"type": "RuntimeDefault"}
            assert set(container["resources"]) == {"requests", "limits"}


def test_the_engine_container_is_limited_by_workspace_size():
    for size, limits in SIZE_LIMITS.items():
        engine = make_pod(workspace(size=size))["spec"]["containers"][0]
        assert engine["resources"]["limits"] == {"cpu": str(limits.cpus), "memory": str(limits.memory_bytes)}


def test_the_pod_spec_holds_no_secret_value_only_references_to_the_secret():
    w = workspace(secret_keys=("REPLICAS_ENGINE_SECRET", "ANTHROPIC_API_KEY"))
    secret = make_secret(w, {"REPLICAS_ENGINE_SECRET": "engine-s3cret", "ANTHROPIC_API_KEY": "sk-ant-123"})
    assert base64.b64decode(secret["data"]["ANTHROPIC_API_KEY"]) == b"sk-ant-123"
    pod = make_pod(w, upload=True)
    text = json.dumps(pod)
    assert "engine-s3cret" not in text and "sk-ant-123" not in text
    env = {item["name"]: item for item in pod["spec"]["containers"][0]["env"]}
    for key in ("REPLICAS_ENGINE_SECRET", "ANTHROPIC_API_KEY"):
        assert env[key]["valueFrom"]["secretKeyRef"] == {"name": w.name, "key": key}
    assert env["LANG"] == {"name": "LANG", "value": "C.UTF-8"}


def test_the_engine_listens_on_the_pod_ip_which_comes_before_its_use():
    env = make_pod(workspace())["spec"]["containers"][0]["env"]
    names = [item["name"] for item in env]
    assert env[0] == {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
    tcp = env[names.index("REPLICAS_ENGINE_TCP")]
    assert tcp["value"] == "$(POD_IP):7878"
    assert names.index("POD_IP") < names.index("REPLICAS_ENGINE_TCP")


def test_the_image_engine_runs_unless_a_command_is_set():
    assert "command" not in make_pod(workspace())["spec"]["containers"][0]
    pod = make_pod(workspace(engine_command=("engine", "--tcp")))
    assert pod["spec"]["containers"][0]["command"] == ["engine", "--tcp"]
    exec_pod = make_pod(workspace(), exec_name="x-exec-1", exec_seconds=90)
    assert exec_pod["spec"]["containers"][0]["command"] == ["sleep", "90"]
    assert exec_pod["spec"]["restartPolicy"] == "Never"
    assert exec_pod["metadata"]["labels"]["replicas.dev/role"] == "exec"


def test_the_first_pod_waits_for_the_upload_in_an_init_container_on_the_same_claim():
    w = workspace()
    pod = make_pod(w, upload=True)
    (init,) = pod["spec"]["initContainers"]
    assert init["name"] == UPLOAD_CONTAINER and init["image"] == w.image
    assert init["volumeMounts"] == pod["spec"]["containers"][0]["volumeMounts"]
    assert pod["spec"]["containers"][0]["name"] == ENGINE_CONTAINER
    assert pod["spec"]["volumes"] == [{"name": "workspace", "persistentVolumeClaim": {"claimName": w.name}}]
    assert "initContainers" not in make_pod(w)["spec"]


def test_claim_size_and_storage_class():
    assert make_pvc(workspace(storage="100Gi"))["spec"]["resources"]["requests"]["storage"] == "100Gi"
    assert "storageClassName" not in make_pvc(workspace())["spec"]
    assert make_pvc(workspace(storage_class="fast"))["spec"]["storageClassName"] == "fast"


def test_a_new_claim_says_its_home_is_still_staged_on_the_control_plane():
    assert make_pvc(workspace())["metadata"]["annotations"]["replicas.dev/home"] == "staged"


def test_names_are_dns_labels_unique_per_id_and_labels_find_the_workspace():
    ids = ["3f6c2a10-8d1e-4c55-9b7e-0a1b2c3d4e5f", "Ws_Upper_Case", "ws_upper_case", "a" * 128, "_-_"[1:] + "x"]
    names = [workspace_name(i) for i in ids]
    assert len(set(names)) == len(names)
    for name in names:
        assert len(f"{name}-exec-12345678") <= 63 and name == name.lower() and name[0].isalpha()
    w = workspace(workspace_id="a" * 128)
    for manifest in (make_pvc(w), make_pod(w)):
        assert manifest["metadata"]["labels"]["replicas.dev/workspace"] == w.name
        assert manifest["metadata"]["annotations"]["replicas.dev/workspace-id"] == "a" * 128
        validate(manifest)


def test_network_policy_admits_only_the_control_plane_and_keeps_egress_off_private_addresses():
    w = workspace()
    policy = make_network_policy(w, control_plane_namespace="replicas",
                                 control_plane_labels={"app.kubernetes.io/name": "replicas"}, control_plane_port=8321)
    spec = policy["spec"]
    assert spec["podSelector"]["matchLabels"]["replicas.dev/workspace"] == w.name
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = spec["ingress"]
    assert ingress["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "replicas"}},
                                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "replicas"}}}]
    blocks = [peer["ipBlock"] for rule in spec["egress"] for peer in rule["to"] if "ipBlock" in peer]
    v4 = next(block for block in blocks if block["cidr"] == "0.0.0.0/0")
    for private in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"):
        assert private in v4["except"]
    # Only the control plane's API port among pod selectors besides DNS: no other workspace, no database.
    selected = [rule for rule in spec["egress"] if any("podSelector" in peer for peer in rule["to"])]
    assert sorted(port["port"] for rule in selected for port in rule["ports"]) == [53, 53, 8321]
    custom = make_network_policy(w, control_plane_namespace="cp", control_plane_labels={"a": "b"},
                                 control_plane_port=80, egress_except=["10.0.0.0/8", "203.0.113.7/32"])
    assert "203.0.113.7/32" in custom["spec"]["egress"][2]["to"][0]["ipBlock"]["except"]


def pod(phase="Running", age=timedelta(seconds=5), **status):
    return {"metadata": {"name": "p", "creationTimestamp": (NOW - age).strftime("%Y-%m-%dT%H:%M:%SZ")},
            "status": {"phase": phase, "podIP": "10.1.2.3", **status}}


def waiting(reason, message="", **extra):
    return [{"name": "engine", "state": {"waiting": {"reason": reason, "message": message}}, **extra}]


@pytest.mark.parametrize("manifest, status, failure", [
    (None, RuntimeStatus.STOPPED, None),
    (pod(), RuntimeStatus.RUNNING, None),
    (pod("Pending"), RuntimeStatus.RUNNING, None),
    ({**pod(), "metadata": {"name": "p", "deletionTimestamp": "2025-06-01T12:00:00Z"}}, RuntimeStatus.STOPPED, None),
    (pod("Pending", age=timedelta(minutes=10), conditions=[
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "message": "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims."}]),
     RuntimeStatus.RUNNING, "Pending for more than 300s (Unschedulable: 0/3 nodes are available"),
    (pod("Pending", containerStatuses=waiting("ImagePullBackOff", 'Back-off pulling image "nope:1"')),
     RuntimeStatus.RUNNING, "ImagePullBackOff: the image cannot be pulled (Back-off pulling image"),
    (pod("Pending", containerStatuses=waiting("ErrImagePull")), RuntimeStatus.RUNNING, "ErrImagePull"),
    (pod(containerStatuses=waiting("CrashLoopBackOff", restartCount=4,
                                   lastState={"terminated": {"exitCode": 3, "reason": "Error"}})),
     RuntimeStatus.RUNNING, "CrashLoopBackOff: the engine keeps crashing (exit code 3 after 4 restarts)"),
    (pod("Failed", reason="Evicted", message="The node was low on resource: memory."),
     RuntimeStatus.STOPPED, "evicted: The node was low on resource: memory."),
    (pod("Failed", message="OOMKilled"), RuntimeStatus.STOPPED, "the pod failed: OOMKilled"),
    (pod("Succeeded"), RuntimeStatus.STOPPED, "the engine exited"),
])
def test_pod_condition_maps_phases_and_names_the_reason(manifest, status, failure):
    condition = pod_condition(manifest, NOW, 300)
    assert condition.status is status
    if failure is None:
        assert condition.failure is None
    else:
        assert condition.failure is not None and condition.failure.startswith(failure), condition.failure
