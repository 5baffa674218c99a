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
    log_level: str = "info"
    # Where the pinned agent CLIs are installed (`replicas agents install`); default `<data_dir>/tools`.
    tools_dir: Path | None = None
    # Seconds to wait for a started workspace engine to answer its health check.
    engine_start_timeout_seconds: float = Field(default=30.0, gt=0)

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
