"""One router per resource. Add a router here to expose it."""

from replicas.api.routers import (
    api_keys,
    audit,
    automations,
    credentials,
    env_files,
    env_hooks,
    env_mcps,
    env_skills,
    env_variables,
    environments,
    integrations,
    previews,
    replicas,
    repositories,
    usage,
    workspaces,
)

ROUTERS = [
    repositories.router,
    environments.router,
    env_variables.router,
    env_files.router,
    env_skills.router,
    env_mcps.router,
    env_hooks.router,
    api_keys.router,
    audit.router,
    credentials.router,
    replicas.router,
    workspaces.router,
    usage.router,
    previews.router,
    automations.router,
    integrations.router,
]
