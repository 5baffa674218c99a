"""A stand-in for a Kubernetes API server and its kubelet, on loopback, for the `kubernetes` backend's tests.

It speaks the real wire protocol for the calls the backend makes, so the backend runs unchanged against it
and against a live cluster: create, get, list, watch and delete of pods, persistentvolumeclaims, secrets
(and replace) and networkpolicies, with resourceVersion, label and field selectors, `Status` errors (401,
404, 409 AlreadyExists, 409 Conflict for a replace of a stale resourceVersion), watch events (one JSON object a
line; an ERROR event with a 410 Expired `Status` for a resourceVersion older than the kept history, see `compact`),
pods/log, and pods/exec over the
`v4.channel.k8s.io` websocket. Never shipped: it lives in tests/.

What it cannot do is run containers; no cluster can run here. Its kubelet runs each container as a process
of this machine instead, under bubblewrap so that the claim (a directory of the stand-in) is mounted at the
container's mountPath, with the container's environment (secretKeyRef, fieldRef status.podIP and `$(VAR)`
expansion resolved as a kubelet does) and the image's command taken from the `images` table given here
(e.g. the workspace image's CMD is this machine's `python -m replicas.engine.main`). Each pod gets its own
loopback address (127.1.x.y) as its IP, so engines in different pods listen on the same port as on a
cluster. Paths given as `hidden` (the control plane's data dirs) are empty inside containers, as a node shares
no disk with the control plane. It does not enforce securityContext, resources or NetworkPolicies (the builders'
tests check those fields; only a live cluster enforces them). Besides the API, `evict` plays the node evicting a pod,
and `before_request` hooks let a test act at a given moment of the backend's work (each called with the method,
kind, namespace and name, None for a list, of a request before it is served, on the stand-in's thread).

Phases it plays: Pending while a claim is unbound (an unknown storage class; PodScheduled False,
Unschedulable), ErrImagePull/ImagePullBackOff for an image not in the table, CreateContainerConfigError for a
missing secret key, init containers in order, Running, restarts with CrashLoopBackOff (restartPolicy Always),
Succeeded/Failed (Never), graceful deletion (SIGTERM, grace, SIGKILL), and claim protection (a claim in use
is deleted once no pod uses it).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import os
import re
import shutil
import signal
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from replicas.runtime.bwrap import find_bwrap

KINDS = {"pods": "Pod", "persistentvolumeclaims": "PersistentVolumeClaim", "secrets": "Secret",
         "networkpolicies": "NetworkPolicy"}
_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


@dataclass
class Image:
    """What the stand-in's kubelet runs for an image: its entrypoint + CMD, and its environment."""

    command: list[str]
    env: dict[str, str] = field(default_factory=dict)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_error(code: int, reason: str, message: str, **details: Any) -> web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "details": details, "code": code}
    return web.json_response(body, status=code)


@dataclass
class Container:
    """A running container of the stand-in's kubelet: its process, and what an exec in it needs."""

    process: asyncio.subprocess.Process
    env: dict[str, str]
    mounts: list[tuple[str, str]]
    cwd: str


class StandInApiServer:
    """Start with `start()`; `url`, `token`, `write_kubeconfig(path)`; `close()` kills every container."""

    def __init__(self, root: Path, images: dict[str, Image], *, storage_classes: tuple[str, ...] = ("standard",),
                 hidden: tuple[Path, ...] = ()):
        self.root = root
        self.images = images
        self.storage_classes = storage_classes
        self.hidden = hidden
        self.token = uuid.uuid4().hex
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.history: list[tuple[int, str, str, str, dict[str, Any]]] = []  # rv, kind, ns, type, object
        self.revision = 1
        self.changed: asyncio.Condition | None = None
        self.containers: dict[tuple[str, str, str], Container] = {}  # ns, pod, container
        self.kubelets: dict[tuple[str, str], asyncio.Task] = {}
        self.next_ip = 1
        self.bwrap = find_bwrap()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.url = ""
        self.before_request: list[Callable[[str, str, str, str | None], None]] = []
        self.compacted = 0  # history at or below this revision is gone: older watches get 410 Expired
        self.expired_watches = 0
        self.closing = False
        self.watches: set[asyncio.Task] = set()

    # -- the server's thread --------------------------------------------------------------------

    def start(self) -> StandInApiServer:
        ready = threading.Event()

        def serve() -> None:
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
            self.changed = asyncio.Condition()
            app = web.Application()
            app.router.add_route("*", "/{path:.*}", self.dispatch)
            # A client that went away with a watch or an exec still open (a control plane killed with SIGKILL)
            # must not hold the stand-in's close: its handlers get 5 s, not aiohttp's 60.
            self.runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=5)
            self.loop.run_until_complete(self.runner.setup())
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            self.loop.run_until_complete(site.start())
            self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=serve, daemon=True, name="k8s-standin")
        self.thread.start()
        ready.wait(10)
        return self

    def call(self, coroutine, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        async def shutdown() -> None:
            # Open watches end first (as an API server ends them when it stops): a handler aiohttp had to drop at
            # its shutdown timeout would be reported later as an unraisable GeneratorExit.
            self.closing = True
            async with self.changed:
                self.changed.notify_all()
            if self.watches:
                await asyncio.wait(self.watches, timeout=5)
            for task in self.kubelets.values():
                task.cancel()
            for container in list(self.containers.values()):
                self._kill(container.process, signal.SIGKILL)
            await self.runner.cleanup()

        self.call(shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def write_kubeconfig(self, path: Path, namespace: str) -> Path:
        config = {"apiVersion": "v1", "kind": "Config", "current-context": "standin",
                  "clusters": [{"name": "standin", "cluster": {"server": self.url}}],
                  "users": [{"name": "standin", "user": {"token": self.token}}],
                  "contexts": [{"name": "standin", "context": {"cluster": "standin", "user": "standin",
                                                              "namespace": namespace}}]}
        path.write_text(json.dumps(config))
        return path

    def evict(self, namespace: str, name: str, message: str = "The node was low on resource: memory.") -> None:
        """Play the node's kubelet evicting a pod: its containers are killed, the pod stays, Failed/Evicted."""
        async def evict() -> None:
            task = self.kubelets.pop((namespace, name), None)
            if task:
                task.cancel()
            for key in [key for key in self.containers if key[:2] == (namespace, name)]:
                self._kill(self.containers.pop(key).process, signal.SIGKILL)
            await self._update("pods", namespace, name, lambda pod: pod["status"].update(
                phase="Failed", reason="Evicted", message=message))

        self.call(evict())

    # -- objects and events ---------------------------------------------------------------------

    async def _record(self, kind: str, namespace: str, event: str, obj: dict[str, Any]) -> dict[str, Any]:
        self._store(kind, namespace, event, obj)
        async with self.changed:
            self.changed.notify_all()
        return obj

    def _store(self, kind: str, namespace: str, event: str, obj: dict[str, Any]) -> dict[str, Any]:
        self.revision += 1
        obj["metadata"]["resourceVersion"] = str(self.revision)
        if event == "DELETED":
            self.objects.pop((kind, namespace, obj["metadata"]["name"]), None)
        else:
            self.objects[(kind, namespace, obj["metadata"]["name"])] = obj
        self.history.append((self.revision, kind, namespace, event, copy.deepcopy(obj)))
        return obj

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    def modify_now(self, kind: str, namespace: str, name: str, change: Callable[[dict[str, Any]], None]) -> None:
        """Another client changes an object, now (from a `before_request` hook: on the stand-in's thread)."""
        obj = copy.deepcopy(self.objects[(kind, namespace, name)])
        change(obj)
        self._store(kind, namespace, "MODIFIED", obj)
        asyncio.get_running_loop().create_task(self._notify())

    def compact(self) -> None:
        """Drop the history up to now, as etcd's compaction does: a watch from an older resourceVersion then gets
        an ERROR event with a 410 Expired `Status` (on the stand-in's thread)."""
        self.compacted = self.revision
        self.history = [entry for entry in self.history if entry[0] > self.compacted]

    async def _update(self, kind: str, namespace: str, name: str, change) -> dict[str, Any] | None:
        obj = self.objects.get((kind, namespace, name))
        if obj is None:
            return None
        obj = copy.deepcopy(obj)
        change(obj)
        return await self._record(kind, namespace, "MODIFIED", obj)

    # -- HTTP -----------------------------------------------------------------------------------

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return status_error(401, "Unauthorized", "Unauthorized")
        parts = [p for p in request.path.split("/") if p]
        if parts == ["version"]:
            return web.json_response({"major": "1", "minor": "30", "gitVersion": "v1.30.0-standin"})
        match parts:
            case ["api", "v1", "namespaces", ns, kind, *rest] if kind in KINDS and kind != "networkpolicies":
                pass
            case ["apis", "networking.k8s.io", "v1", "namespaces", ns, "networkpolicies" as kind, *rest]:
                pass
            case _:
                return status_error(404, "NotFound", "the server could not find the requested resource")
        if len(rest) == 2 and kind == "pods" and rest[1] == "exec":
            return await self.exec(request, ns, rest[0])
        if len(rest) == 2 and kind == "pods" and rest[1] == "log":
            return self.log(request, ns, rest[0])
        if len(rest) > 1:
            return status_error(404, "NotFound", "the server could not find the requested resource")
        name = rest[0] if rest else None
        for hook in self.before_request:
            hook(request.method, kind, ns, name)
        if request.method == "GET" and name is None:
            if request.query.get("watch") in ("true", "1"):
                return await self.watch(request, kind, ns)
            return self.list(request, kind, ns)
        if request.method == "POST" and name is None:
            return await self.create(kind, ns, await request.json())
        if name is None:
            return status_error(405, "MethodNotAllowed", "the server does not allow this method")
        obj = self.objects.get((kind, ns, name))
        if request.method == "GET":
            return web.json_response(obj) if obj else self._not_found(kind, name)
        if request.method == "PUT":
            if obj is None:
                return self._not_found(kind, name)
            body = await request.json()
            sent = (body.get("metadata") or {}).get("resourceVersion")
            if sent and sent != obj["metadata"]["resourceVersion"]:
                return status_error(409, "Conflict", f'Operation cannot be fulfilled on {kind} "{name}": the object '
                                    "has been modified; please apply your changes to the latest version and try "
                                    "again", name=name, kind=kind)
            body["metadata"] = {**obj["metadata"], **{k: v for k, v in body["metadata"].items()
                                                      if k in ("labels", "annotations")}}
            return web.json_response(await self._record(kind, ns, "MODIFIED", body))
        if request.method == "DELETE":
            if obj is None:
                return self._not_found(kind, name)
            body = await request.json() if request.can_read_body else {}
            return web.json_response(await self.delete(kind, ns, name, body.get("gracePeriodSeconds")))
        return status_error(405, "MethodNotAllowed", "the server does not allow this method")

    def _not_found(self, kind: str, name: str) -> web.Response:
        return status_error(404, "NotFound", f'{kind} "{name}" not found', name=name, kind=kind)

    @staticmethod
    def _selected(obj: dict[str, Any], query) -> bool:
        labels = obj["metadata"].get("labels") or {}
        for term in filter(None, query.get("labelSelector", "").split(",")):
            key, _, value = term.partition("=")
            if labels.get(key) != value:
                return False
        for term in filter(None, query.get("fieldSelector", "").split(",")):
            key, _, value = term.partition("=")
            if key == "metadata.name" and obj["metadata"]["name"] != value:
                return False
        return True

    def list(self, request: web.Request, kind: str, ns: str) -> web.Response:
        items = [obj for (k, n, _), obj in sorted(self.objects.items()) if k == kind and n == ns
                 and self._selected(obj, request.query)]
        return web.json_response({"kind": f"{KINDS[kind]}List", "apiVersion": "v1",
                                  "metadata": {"resourceVersion": str(self.revision)}, "items": items})

    async def watch(self, request: web.Request, kind: str, ns: str) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        since = int(request.query.get("resourceVersion") or self.revision)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(request.query.get("timeoutSeconds") or 1800)
        sent = since
        self.watches.add(task := asyncio.current_task())
        try:
            if since < self.compacted:
                self.expired_watches += 1
                expired = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                           "message": f"too old resource version: {since} ({self.compacted})", "reason": "Expired",
                           "code": 410}
                await response.write(json.dumps({"type": "ERROR", "object": expired}).encode() + b"\n")
                await response.write_eof()
                return response
            while loop.time() < deadline and not self.closing:
                for revision, k, n, event, obj in self.history:
                    if revision > sent and k == kind and n == ns and self._selected(obj, request.query):
                        await response.write(json.dumps({"type": event, "object": obj}).encode() + b"\n")
                sent = self.revision
                async with self.changed:
                    if self.closing:
                        break
                    try:
                        await asyncio.wait_for(self.changed.wait(), max(0.01, deadline - loop.time()))
                    except TimeoutError:
                        break
            await response.write_eof()
        except ConnectionResetError:
            pass  # the client ended the watch (it saw what it waited for, or it was killed)
        finally:
            self.watches.discard(task)
        return response

    async def create(self, kind: str, ns: str, body: dict[str, Any]) -> web.Response:
        name = (body.get("metadata") or {}).get("name")
        if not name:
            return status_error(422, "Invalid", "metadata.name: Required value")
        if (kind, ns, name) in self.objects:
            return status_error(409, "AlreadyExists", f'{kind} "{name}" already exists', name=name, kind=kind)
        body["metadata"].update(namespace=ns, uid=str(uuid.uuid4()), creationTimestamp=_now())
        if kind == "persistentvolumeclaims":
            storage_class = body["spec"].setdefault("storageClassName", self.storage_classes[0])
            bound = storage_class in self.storage_classes
            body["status"] = {"phase": "Bound" if bound else "Pending"}
            if bound:
                body["spec"]["volumeName"] = f"pvc-{body['metadata']['uid']}"
                self._claim_dir(ns, name).mkdir(parents=True, exist_ok=True)
        if kind == "pods":
            body["status"] = {"phase": "Pending", "qosClass": "Burstable"}
        obj = await self._record(kind, ns, "ADDED", body)
        if kind == "pods":
            self.kubelets[(ns, name)] = asyncio.create_task(self.kubelet(ns, name))
        return web.json_response(obj, status=201)

    async def delete(self, kind: str, ns: str, name: str, grace: int | None) -> dict[str, Any]:
        obj = self.objects[(kind, ns, name)]
        if kind == "pods":
            grace = obj["spec"].get("terminationGracePeriodSeconds", 30) if grace is None else grace
            obj = await self._update(kind, ns, name, lambda pod: pod["metadata"].update(
                deletionTimestamp=_now(), deletionGracePeriodSeconds=grace))
            asyncio.create_task(self._terminate(ns, name, grace))
            return obj
        if kind == "persistentvolumeclaims" and self._claim_users(ns, name):
            return await self._update(kind, ns, name, lambda c: c["metadata"].update(
                deletionTimestamp=_now(), finalizers=["kubernetes.io/pvc-protection"]))
        if kind == "persistentvolumeclaims":
            shutil.rmtree(self._claim_dir(ns, name), ignore_errors=True)
        return await self._record(kind, ns, "DELETED", copy.deepcopy(obj))

    def _claim_dir(self, ns: str, name: str) -> Path:
        return self.root / "claims" / ns / name

    def _claim_users(self, ns: str, claim: str) -> list[str]:
        return [name for (kind, n, name), pod in self.objects.items() if kind == "pods" and n == ns
                and any((v.get("persistentVolumeClaim") or {}).get("claimName") == claim
                        for v in pod["spec"].get("volumes") or [])]

    async def _terminate(self, ns: str, name: str, grace: int) -> None:
        task = self.kubelets.pop((ns, name), None)
        if task:
            task.cancel()
        processes = [self.containers.pop(key).process for key in list(self.containers) if key[:2] == (ns, name)]
        for process in processes:
            self._kill(process, signal.SIGTERM if grace else signal.SIGKILL)
        try:
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in processes)), grace or 5)
        except TimeoutError:
            for process in processes:
                self._kill(process, signal.SIGKILL)
            await asyncio.gather(*(p.wait() for p in processes))
        pod = self.objects.get(("pods", ns, name))
        if pod is not None:
            await self._record("pods", ns, "DELETED", copy.deepcopy(pod))
        for (kind, n, claim), obj in list(self.objects.items()):  # claim protection lifts
            if kind == "persistentvolumeclaims" and n == ns and obj["metadata"].get("deletionTimestamp") \
                    and not self._claim_users(ns, claim):
                shutil.rmtree(self._claim_dir(ns, claim), ignore_errors=True)
                await self._record(kind, ns, "DELETED", copy.deepcopy(obj))

    @staticmethod
    def _kill(process: asyncio.subprocess.Process, sig: int) -> None:
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass

    # -- the kubelet ----------------------------------------------------------------------------

    async def _set_status(self, ns: str, name: str, **status: Any) -> None:
        await self._update("pods", ns, name, lambda pod: pod["status"].update(copy.deepcopy(status)))

    def _pod(self, ns: str, name: str) -> dict[str, Any]:
        return copy.deepcopy(self.objects[("pods", ns, name)])

    async def kubelet(self, ns: str, name: str) -> None:
        """One pod's life: schedule (claims bound), pull (images known), init containers, containers."""
        spec = self._pod(ns, name)["spec"]
        claims = [v["persistentVolumeClaim"]["claimName"] for v in spec.get("volumes") or []
                  if "persistentVolumeClaim" in v]
        while True:
            unbound = [c for c in claims if (self.objects.get(("persistentvolumeclaims", ns, c)) or {})
                       .get("status", {}).get("phase") != "Bound"]
            if not unbound:
                break
            condition = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                         "message": "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims."}
            if self._pod(ns, name)["status"].get("conditions") != [condition]:
                await self._set_status(ns, name, conditions=[condition])
            await asyncio.sleep(0.2)
        ip = f"127.1.{self.next_ip // 250}.{self.next_ip % 250 + 2}"
        self.next_ip += 1
        await self._set_status(ns, name, podIP=ip, podIPs=[{"ip": ip}], hostIP="127.0.0.1", startTime=_now(),
                               conditions=[{"type": "PodScheduled", "status": "True"}])
        restart = spec.get("restartPolicy", "Always")
        for init in spec.get("initContainers") or []:
            while True:
                code = await self._run_to_end(ns, name, init, "initContainerStatuses", ip)
                if code == 0:
                    break
                if restart == "Never":
                    await self._set_status(ns, name, phase="Failed", reason="InitContainerFailed")
                    return
        await self._set_status(ns, name, conditions=[{"type": "PodScheduled", "status": "True"},
                                                     {"type": "Initialized", "status": "True"}])
        (container,) = spec["containers"]  # the backend's pods have one
        restarts = 0
        while True:
            code = await self._run_to_end(ns, name, container, "containerStatuses", ip, phase="Running",
                                          restarts=restarts)
            if restart == "Never" or (restart == "OnFailure" and code == 0):
                await self._set_status(ns, name, phase="Succeeded" if code == 0 else "Failed")
                return
            restarts += 1
            last = {"terminated": {"exitCode": code, "reason": "Error" if code else "Completed"}}
            await self._set_status(ns, name, containerStatuses=[{
                "name": container["name"], "ready": False, "restartCount": restarts, "lastState": last,
                "state": {"waiting": {"reason": "CrashLoopBackOff",
                                      "message": f"back-off restarting failed container {container['name']}"}}}])
            await asyncio.sleep(min(0.2 * 2 ** restarts, 3))

    async def _run_to_end(self, ns: str, name: str, container: dict[str, Any], statuses: str, ip: str,
                          phase: str | None = None, restarts: int = 0) -> int:
        """Pull, configure and run one container until it exits (its exit code); waiting states meanwhile."""
        cname = container["name"]

        async def waiting(reason: str, message: str) -> None:
            state = {"name": cname, "ready": False, "restartCount": restarts,
                     "state": {"waiting": {"reason": reason, "message": message}}}
            if self._pod(ns, name)["status"].get(statuses) != [state]:
                await self._set_status(ns, name, **{statuses: [state]})
            await asyncio.sleep(0.2)

        image = self.images.get(container["image"])
        pulls = 0
        while image is None:
            pulls += 1
            await waiting("ErrImagePull" if pulls < 3 else "ImagePullBackOff",
                          f'Back-off pulling image "{container["image"]}"')
        while (env := self._environment(ns, container, image, ip)) is None or isinstance(env, str):
            await waiting("CreateContainerConfigError", env or "configuration error")
        argv = [*(container.get("command") or image.command), *(container.get("args") or [])]
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"]
                  for v in self._pod(ns, name)["spec"].get("volumes") or [] if "persistentVolumeClaim" in v}
        mounts = [(str(self._claim_dir(ns, claims[m["name"]])), m["mountPath"])
                  for m in container.get("volumeMounts") or []]
        cwd = container.get("workingDir") or "/"
        log_dir = self.root / "logs" / ns / name
        log_dir.mkdir(parents=True, exist_ok=True)
        with open(log_dir / f"{cname}.{restarts}.log", "wb") as log:
            process = await asyncio.create_subprocess_exec(*self._sandbox(argv, mounts, cwd), env=env,
                                                           stdin=asyncio.subprocess.DEVNULL, stdout=log,
                                                           stderr=log, start_new_session=True)
        self.containers[(ns, name, cname)] = Container(process, env, mounts, cwd)
        running = {"name": cname, "ready": True, "restartCount": restarts, "started": True,
                   "state": {"running": {"startedAt": _now()}}}
        await self._set_status(ns, name, **{statuses: [running], **({"phase": phase} if phase else {})})
        code = await process.wait()
        code = 128 - code if code < 0 else code
        self.containers.pop((ns, name, cname), None)
        terminated = {"name": cname, "ready": False, "restartCount": restarts,
                      "state": {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error"}}}
        await self._set_status(ns, name, **{statuses: [terminated]})
        return code

    def _sandbox(self, argv: list[str], mounts: list[tuple[str, str]], cwd: str) -> list[str]:
        """The container's mounts over this machine's tree (bubblewrap), then its command. `hidden` paths are
        empty in there (the control plane's disk: a node shares none with it)."""
        sandbox = [self.bwrap, "--dev-bind", "/", "/"]
        for path in self.hidden:
            sandbox += ["--tmpfs", str(path)]
        for source, target in mounts:
            sandbox += ["--bind", source, target]
        return [*sandbox, "--die-with-parent", "--chdir", cwd, "--", *argv]

    def _environment(self, ns: str, container: dict[str, Any], image: Image, ip: str) -> dict[str, str] | str:
        """The container's environment as a kubelet builds it, or why it cannot (a missing secret key)."""
        env = dict(image.env)
        resolved: dict[str, str] = {}
        for item in container.get("env") or []:
            source = item.get("valueFrom")
            if source is None:
                value = _VAR.sub(lambda m: resolved.get(m.group(1), m.group(0)), item.get("value", ""))
            elif "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                secret = self.objects.get(("secrets", ns, ref["name"]))
                if secret is None or ref["key"] not in (secret.get("data") or {}):
                    return f'couldn\'t find key {ref["key"]} in Secret {ns}/{ref["name"]}'
                value = base64.b64decode(secret["data"][ref["key"]]).decode()
            elif source.get("fieldRef", {}).get("fieldPath") == "status.podIP":
                value = ip
            else:
                return f"unsupported valueFrom {source}"
            resolved[item["name"]] = value
        env.update(resolved)
        return env

    def log(self, request: web.Request, ns: str, name: str) -> web.Response:
        pod = self.objects.get(("pods", ns, name))
        if pod is None:
            return self._not_found("pods", name)
        container = request.query.get("container") or pod["spec"]["containers"][0]["name"]
        logs = sorted((self.root / "logs" / ns / name).glob(f"{container}.*.log"),
                      key=lambda p: int(p.name.split(".")[-2]))
        if request.query.get("previous") == "true":
            logs = logs[:-1]
        if not logs:
            return status_error(400, "BadRequest", f'container "{container}" in pod "{name}" has no log')
        data = logs[-1].read_bytes()
        limit = int(request.query.get("limitBytes") or 0)
        return web.Response(body=data[:limit] if limit else data, content_type="text/plain")

    async def exec(self, request: web.Request, ns: str, name: str) -> web.StreamResponse:
        """pods/exec: the command in the container's mounts and environment, over the channel protocol."""
        pod = self.objects.get(("pods", ns, name))
        if pod is None:
            return self._not_found("pods", name)
        cname = request.query.get("container") or pod["spec"]["containers"][0]["name"]
        container = self.containers.get((ns, name, cname))
        if container is None:
            return status_error(400, "BadRequest", f"container {cname} is not valid for pod {name}")
        command = request.query.getall("command")
        ws = web.WebSocketResponse(protocols=["v4.channel.k8s.io"])
        await ws.prepare(request)
        process = await asyncio.create_subprocess_exec(
            *self._sandbox(command, container.mounts, container.cwd), env=container.env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True)

        async def pump(stream, channel: int) -> None:
            while chunk := await stream.read(65536):
                await ws.send_bytes(bytes([channel]) + chunk)

        async def feed() -> None:
            async for message in ws:
                if message.type == WSMsgType.BINARY and message.data[:1] == b"\x00":
                    process.stdin.write(message.data[1:])
                    await process.stdin.drain()
                elif message.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                    break

        feeding = asyncio.create_task(feed())
        try:
            await asyncio.gather(pump(process.stdout, 1), pump(process.stderr, 2))
            code = await process.wait()
        except (ConnectionResetError, asyncio.CancelledError):
            self._kill(process, signal.SIGKILL)
            raise
        finally:
            feeding.cancel()
        code = 128 - code if code < 0 else code  # killed by a signal: as a shell reports it
        if code == 0:
            outcome = {"metadata": {}, "status": "Success"}
        else:
            outcome = {"metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
                       "message": f"command terminated with non-zero exit code: exit status {code}",
                       "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}
        await ws.send_bytes(b"\x03" + json.dumps(outcome).encode())
        await ws.close()
        return ws
