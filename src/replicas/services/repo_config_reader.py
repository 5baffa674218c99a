"""Reading a repository's configuration file (`replicas.json|yaml|yml`, spec §5) from a git ref.

The file's format lives in `replicas.repo_config`, which the engine shares; reading it through git
(a mirror or a checkout the control plane holds) is the control plane's own business, so it is here.
"""

from __future__ import annotations

from pathlib import Path

from replicas.repo_config import RepoConfig, find_config_file, parse_repo_config
from replicas.services import git


async def read_repo_config(repo: Path, ref: str) -> tuple[str | None, RepoConfig | None]:
    """Read the configuration at `ref` in the (bare) repository `repo`.

    Returns `(file name, config)`, or `(None, None)` when the tree has no configuration file. Raises
    `git.GitError` when the tree cannot be read and `RepoConfigError` when the file is malformed."""
    # Only the root matters, so list it alone rather than the whole tree (`git.list_files` recurses).
    root = await git.run_git("ls-tree", "--name-only", "-z", ref, cwd=repo)
    filename = find_config_file(name for name in root.split("\0") if name)
    if filename is None:
        return None, None
    text = await git.read_file(repo, ref, filename)
    return filename, parse_repo_config(text, filename)
