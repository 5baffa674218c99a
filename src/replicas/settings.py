"""The one settings class. Every knob is read here, from `REPLICAS_*` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Control-plane settings (see ARCHITECTURE.md, "Settings")."""

    model_config = SettingsConfigDict(env_prefix="REPLICAS_", extra="ignore")

    data_dir: Path = Path("./.replicas")
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8321
    runtime: Literal["local", "docker", "kubernetes"] = "local"
    secret_key: str | None = None
    bootstrap_api_key: str | None = None
    public_url: str | None = None
    # Where the skills catalog is searched. Empty: the bundled offline index only.
    skills_registry_url: str | None = None
    # Timeout for `git ls-remote` and friends when a repository is registered.
    git_timeout_seconds: float = Field(default=30.0, gt=0)
    # Upper bound for a warm/start hook test run (spec §10 #25: 15 minutes).
    hook_test_timeout_seconds: float = Field(default=900.0, gt=0)
    # Tenant isolation (README, "Security model"). Registering a repository by local path or `file://` URL: fine
    # for the embedded single-user default, off for every multi-tenant deployment (compose.yaml sets false).
    allow_local_repositories: bool = True
    # Outbound requests made for a tenant (webhooks, skill registries, repository fetches) may reach loopback and
    # private ranges. Link-local addresses (169.254.0.0/16, cloud metadata) and this server itself never.
    # The embedded default allows them (everything is on this machine); multi-tenant deployments set false.
    allow_private_outbound: bool = True
    # An egress allow-list for those requests: None (the default) admits any host that passes the address checks;
    # a list admits only these host names (`.example.com` also its subdomains) and IP literals, checked before DNS.
    outbound_allowed_hosts: list[str] | None = None
    log_level: str = "info"
    # `text` lines, or one JSON object per line (request id, organization and replica on each; logs.py).
    log_format: Literal["text", "json"] = "text"
    # `GET /metrics` in the Prometheus format (metrics.py); unauthenticated, like most exporters: keep the
    # port off the internet, or turn this off.
    metrics_enabled: bool = True
    # OpenTelemetry traces (tracing.py; the `otel` extra): a span per API request and per engine call, sent as
    # OTLP/HTTP (protobuf) to `otel_endpoint`. Off by default.
    otel_enabled: bool = False
    otel_endpoint: str = "http://127.0.0.1:4318/v1/traces"
    otel_service_name: str = "replicas"
    # Where the pinned agent CLIs are installed (`replicas agents install`); default `<data_dir>/tools`.
    tools_dir: Path | None = None
    # Each agent's model when a request names none (README, "Models and gateways"). Passed to workspaces as
    # REPLICAS_DEFAULT_MODEL_<AGENT>, under the environment's variables (an environment's own value wins).
    # None: the driver's shipped default at a custom base URL, else the CLI's own choice.
    default_model_claude: str | None = None
    default_model_codex: str | None = None
    default_model_opencode: str | None = None
    default_model_cursor: str | None = None
    # How long the control plane trusts what it found installed (agent CLIs) before it looks again.
    agent_check_ttl_seconds: float = Field(default=10.0, ge=0)
    # Seconds to wait for a started workspace engine to answer its health check.
    engine_start_timeout_seconds: float = Field(default=30.0, gt=0)

    # Workspace lifecycle (spec §7.2, §7.3, §10 #18-#19). Timers in seconds.
    # At most this many workspaces awake (preparing or active) at once; create answers 429 beyond it.
    max_active_workspaces: int = Field(default=20, ge=1)
    capacity_retry_after_seconds: int = Field(default=30, ge=1)
    sleep_after_idle_seconds: float = Field(default=3600.0, gt=0)
    archive_after_sleep_seconds: float = Field(default=7 * 24 * 3600.0, gt=0)
    delete_after_inactivity_seconds: float = Field(default=3600.0, gt=0)
    # `*_when_done` policies act this long after the agent finished with an empty queue.
    done_grace_seconds: float = Field(default=60.0, ge=0)
    lifecycle_interval_seconds: float = Field(default=5.0, gt=0)
    # Automations' cron scheduler (services/cron_scheduler.py): a pass every this many seconds; after downtime
    # the latest missed slot still runs once if at most this old; false keeps this process out of scheduling.
    cron_interval_seconds: float = Field(default=15.0, gt=0)
    cron_catchup_seconds: float = Field(default=3600.0, ge=0)
    cron_enabled: bool = True
    # Warm pools (services/pool_filler.py): a reconcile pass every `pool_interval_seconds` keeps each enabled
    # pool at its target of ready workspaces; false keeps this process out of filling. Pool workspaces count
    # against `max_pool_workspaces` (all pools together), not `max_active_workspaces`. A ready one unclaimed
    # for `pool_max_age_seconds` expires and is replaced. A failing warm-up backs off exponentially, from
    # `pool_retry_base_seconds` up to `pool_retry_max_seconds`.
    pool_enabled: bool = True
    pool_interval_seconds: float = Field(default=5.0, gt=0)
    max_pool_workspaces: int = Field(default=20, ge=0)
    pool_max_age_seconds: float = Field(default=6 * 3600.0, gt=0)
    pool_retry_base_seconds: float = Field(default=10.0, gt=0)
    pool_retry_max_seconds: float = Field(default=1800.0, gt=0)
    # How often the filler fetches each pool's repositories to find a default branch that moved (the pool's
    # generation then goes up: its ready workspaces and base snapshot are rebuilt).
    pool_branch_check_seconds: float = Field(default=60.0, gt=0)
    # SSE: a `: ping` comment after this many quiet seconds (spec §4.1: 15 s).
    sse_ping_seconds: float = Field(default=15.0, gt=0)
    # Outbound webhooks: timeout per attempt and the delays between retries (spec §10 #2).
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    webhook_retry_delays: list[float] = Field(default_factory=lambda: [10.0, 60.0, 300.0])
    webhook_poll_seconds: float = Field(default=1.0, gt=0)
    # The agent in the team's loop (services/team_loop.py; README, "Integrations"). `@<mention_handle>` in a GitHub
    # or GitLab comment, or a Linear comment, starts a workspace or reaches the one already on that thread.
    mention_handle: str = "replicas"
    # The team loop's watcher: a pass every this many seconds sends due follow-ups, posts turn results back and
    # archives workspaces whose pull requests closed.
    team_loop_interval_seconds: float = Field(default=2.0, gt=0)
    # Review comments on one pull request are held this many quiet seconds, then sent as one message.
    review_batch_seconds: float = Field(default=10.0, ge=0)
    # A workspace whose last tracked pull request merged or closed is archived this long after (unless its
    # `keep_open_on_pr_merge` / `keep_open_on_pr_close` preference says otherwise).
    pr_close_grace_seconds: float = Field(default=300.0, ge=0)
    # A turn's result is posted once the repositories' state after the turn is in, or this long after the turn.
    reply_wait_seconds: float = Field(default=10.0, ge=0)
    # A queued Slack acknowledgement claimed this long ago and not posted was left by a process that died while
    # posting it: it is posted once more. Longer than a post with all its retries.
    team_post_claim_seconds: float = Field(default=300.0, gt=0)
    # A workspace's boot or wake is held by the process running it under a lease renewed every 2 s; a workspace
    # left `preparing` whose lease has not been renewed for this long (its process died or was stopped) is taken
    # over by another process, or by the next start of this one: its boot is run again (services/transitions.py).
    transition_lease_seconds: float = Field(default=10.0, gt=0)
    # Off: no process takes over a boot that another left (the test suite's apps share one PostgreSQL database,
    # and one must not boot another test's workspaces).
    boot_takeover_enabled: bool = True
    # Calls to the providers' APIs (comments, reactions, job logs): timeout per attempt, delays between retries.
    provider_timeout_seconds: float = Field(default=15.0, gt=0)
    provider_retry_delays: list[float] = Field(default_factory=lambda: [1.0, 5.0, 30.0])
    # How long a webhook delivery's answer waits for the team loop to act on it (GitHub gives it 10 s; Slack's is
    # waited for at most 2 s, it gives 3): past this the work goes on in the background (services/team_loop.py).
    team_route_wait_seconds: float = Field(default=8.0, gt=0)

    # Docker backend (`runtime = "docker"`, runtime/docker.py). The Docker engine: None honours DOCKER_HOST
    # (unix socket, tcp://, ssh://), else the local socket.
    docker_host: str | None = None
    # The workspace image (images/workspace); the network its containers join (`host`: the host's loopback).
    docker_image: str = "replicas-workspace:latest"
    docker_network: str = "host"
    # The agent's uid:gid inside containers when the control plane runs as root; otherwise its own uid runs them.
    docker_user: str = "1000:1000"
    # Where the workspace engine comes from. `image` (the default, same host and remote alike): the image's own
    # engine (its CMD) with the agent CLIs the image carries; nothing of this machine is mounted. `host-python`
    # (development only, same host only): this control plane's Python and tools dir, bind-mounted read-only at
    # their host paths, so that source changes reach workspaces without an image build; the image must let the
    # container's user reach that Python (a pyenv under /root does not work).
    docker_engine: Literal["image", "host-python"] = "image"
    # The engine's command line in the container, instead of the image's CMD (`image`) or the control plane's
    # `python -m replicas.engine.main` (`host-python`).
    docker_engine_command: list[str] | None = None
    # Where the Docker engine runs. Same host (a unix socket): workspace directories are bind-backed volumes
    # of the data dir and the engine is reached through its socket there. Remote (`tcp://`, `ssh://`): plain
    # volumes filled through the Docker API, the engine over TCP with the workspace's secret, and everything
    # the engine runs comes from the image. None decides by the scheme of `docker_host` / DOCKER_HOST.
    docker_remote: bool | None = None
    # Remote only: the address the control plane uses for the Docker host's ports (None: the host named in
    # `docker_host`); the engine's port inside a container on a user network (published to a free port of the
    # Docker host, on `docker_publish_address`); the address the engine binds with host networking (port 0).
    docker_engine_address: str | None = None
    docker_engine_port: int = Field(default=7878, gt=0, lt=65536)
    docker_publish_address: str = "0.0.0.0"
    docker_engine_bind: str = "0.0.0.0"

    # Kubernetes backend (`runtime = "kubernetes"`, runtime/kubernetes.py; README, "Kubernetes"). The cluster: a
    # kubeconfig file and context (None: the pod's service account in a cluster, else KUBECONFIG / ~/.kube/config).
    # Every workspace object lives in `k8s_namespace`.
    k8s_kubeconfig: str | None = None
    k8s_context: str | None = None
    k8s_namespace: str = "replicas-workspaces"
    # The workspace image (its CMD is the engine, unless `k8s_engine_command`) and the port the engine listens on
    # at the pod's IP.
    k8s_image: str = "replicas-workspace:latest"
    k8s_image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    k8s_engine_command: list[str] | None = None
    k8s_engine_port: int = Field(default=7878, gt=0, lt=65536)
    # Each workspace's claim: storage class (None: the cluster's default) and size per workspace size.
    k8s_storage_class: str | None = None
    k8s_storage_sizes: dict[str, str] = Field(default_factory=lambda: {"small": "20Gi", "large": "100Gi"})
    # A pod Pending longer than this (unschedulable, claim unbound) is a failure with the reason.
    k8s_pending_timeout_seconds: float = Field(default=300.0, gt=0)
    # Nodes for workspace pods (e.g. those whose kubelet sets podPidsLimit).
    k8s_node_selector: dict[str, str] = Field(default_factory=dict)
    # Who may reach workspace pods (the control plane's namespace and pod labels, as deploy/kubernetes/ sets
    # them); the CIDRs their egress never reaches (None: private, carrier-grade NAT, loopback and link-local).
    k8s_control_plane_namespace: str = "replicas"
    k8s_control_plane_labels: dict[str, str] = Field(
        default_factory=lambda: {"app.kubernetes.io/name": "replicas", "app.kubernetes.io/component": "control-plane"})
    k8s_egress_except: list[str] | None = None
    # The control plane's API as workspace pods reach it (REPLICAS_API_URL in the workspace, for agent mode): the
    # in-cluster Service, e.g. http://replicas.replicas.svc.cluster.local. None: `public_url`, as on other runtimes.
    k8s_api_url: str | None = None
    # The control plane's API as docker workspaces reach it (REPLICAS_API_URL in the workspace, for agent mode):
    # with a user network, the control plane's name on it, e.g. http://replicas:8321 in compose.yaml. None:
    # `public_url`, right where the workspaces share the host's network.
    docker_api_url: str | None = None

    @property
    def resolved_tools_dir(self) -> Path:
        return (self.tools_dir or self.data_dir / "tools").resolve()

    @property
    def resolved_database_url(self) -> str:
        """The SQLAlchemy async URL: PostgreSQL when configured, SQLite in the data dir otherwise."""
        url = self.database_url
        if not url:
            return f"sqlite+aiosqlite:///{(self.data_dir / 'replicas.db').resolve()}"
        if url.startswith("postgres://"):
            url = "postgresql://" + url[len("postgres://") :]
        if url.startswith("postgresql://"):
            url = "postgresql+asyncpg://" + url[len("postgresql://") :]
        if url.startswith("sqlite:///"):
            url = "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
        return url

    def ensure_data_dir(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return self.data_dir


@lru_cache
def get_settings() -> Settings:
    return Settings()
