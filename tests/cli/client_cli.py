"""Running the installed `replicas` command as a client, the way a person or a script does: a subprocess
with its own config dir, pointed at a live server by REPLICAS_API_URL (and REPLICAS_API_KEY, if given)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPLICAS = shutil.which("replicas", path=str(Path(sys.executable).parent))


@dataclass
class Cli:
    url: str
    config_home: Path
    api_key: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self, **overrides: str | None) -> dict[str, str]:
        """The caller's environment without REPLICAS_* or workspace variables, plus this CLI's."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("REPLICAS_") and k not in ("WORKSPACE_ID", "XDG_CONFIG_HOME")}
        env.update({"XDG_CONFIG_HOME": str(self.config_home), "REPLICAS_API_URL": self.url, "COLUMNS": "200",
                    **({"REPLICAS_API_KEY": self.api_key} if self.api_key else {}), **self.extra_env})
        for key, value in overrides.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def run(self, *args: str, input: str | None = None, timeout: float = 120,
            **env: str | None) -> subprocess.CompletedProcess:
        assert REPLICAS, "the `replicas` command is not installed next to this Python"
        return subprocess.run([REPLICAS, *args], env=self.env(**env), input=input, capture_output=True, text=True,
                              timeout=timeout)

    def ok(self, *args: str, **kwargs: Any) -> str:
        """Run a command that must succeed (exit 0); its stdout."""
        done = self.run(*args, **kwargs)
        assert done.returncode == 0, f"replicas {' '.join(args)} -> {done.returncode}\n{done.stdout}{done.stderr}"
        assert "Traceback" not in done.stderr, done.stderr
        return done.stdout

    def json(self, *args: str, **kwargs: Any) -> Any:
        """Run a command with --json (before a `--`, after which everything is an argument) that must succeed;
        its output parsed."""
        at = args.index("--") if "--" in args else len(args)
        return json.loads(self.ok(*args[:at], "--json", *args[at:], **kwargs))

    def fails(self, code: int, *args: str, **kwargs: Any) -> subprocess.CompletedProcess:
        """Run a command that must exit with `code` (1: the API said no, 2: usage), without a traceback."""
        done = self.run(*args, **kwargs)
        assert done.returncode == code, f"replicas {' '.join(args)} -> {done.returncode}\n{done.stdout}{done.stderr}"
        assert "Traceback" not in done.stderr, done.stderr
        return done
