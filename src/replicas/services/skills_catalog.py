"""The skills catalog behind `GET /v1/environment-skills/search`.

Offline by default: a bundled index (`replicas/data/skills_index.json`) modelled on the skills.sh
catalog. When `REPLICAS_SKILLS_REGISTRY_URL` is set, that registry's `GET /api/search?q=&limit=`
answers instead. If it cannot (unreachable, slow, an error status, a body without a `skills` list),
the bundled index answers and a warning is logged: a third party being down never turns a search
into a 5xx. The registry is reached through the outbound policy (replicas/outbound.py), redirects
included: a registry that is, or redirects to, a refused address is treated as one that cannot answer.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import httpx

from replicas import outbound
from replicas.services.git import display_url

log = logging.getLogger("replicas.skills")

LIMIT = 50
REMOTE_TIMEOUT_SECONDS = 5.0

# Relevance of one query term, by where it matches. A term that matches nowhere excludes the skill.
_EXACT, _WORD, _WORD_PREFIX, _INSIDE, _DESCRIPTION = 100, 60, 50, 30, 10
_PHRASE_BONUS = 50
_WORD_SPLIT = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class CatalogSkill:
    """One catalog entry; `description` is searched but not part of the contract's SearchSkill."""

    name: str
    slug: str
    source: str
    installs: int
    description: str = ""


@lru_cache
def bundled_index() -> tuple[CatalogSkill, ...]:
    raw = json.loads(resources.files("replicas").joinpath("data/skills_index.json").read_text("utf-8"))
    return tuple(
        CatalogSkill(name=item["name"], slug=item["slug"], source=item["source"],
                     installs=int(item["installs"]), description=item.get("description") or "")
        for item in raw["skills"]
    )


def _relevance(skill: CatalogSkill, terms: list[str], phrase: str) -> int:
    name, slug, description = skill.name.lower(), skill.slug.lower(), skill.description.lower()
    words = set(_WORD_SPLIT.split(name)) | set(_WORD_SPLIT.split(slug))
    total = 0
    for term in terms:
        if term in (name, slug):
            total += _EXACT
        elif term in words:
            total += _WORD
        elif any(word.startswith(term) for word in words):
            total += _WORD_PREFIX
        elif term in name or term in slug:
            total += _INSIDE
        elif term in description:
            total += _DESCRIPTION
        else:
            return 0
    if len(terms) > 1 and (phrase in name or phrase.replace(" ", "-") in slug):
        total += _PHRASE_BONUS
    return total


def search_bundled(query: str, limit: int = LIMIT) -> list[CatalogSkill]:
    """Every query term must match the name, slug or description (case-insensitively); results are
    ranked by relevance, then installs. An empty query lists the most-installed skills."""
    terms = query.lower().split()
    skills = bundled_index()
    if not terms:
        return sorted(skills, key=lambda s: (-s.installs, s.name))[:limit]
    phrase = " ".join(terms)
    scored = [(score, s) for s in skills if (score := _relevance(s, terms, phrase))]
    scored.sort(key=lambda pair: (-pair[0], -pair[1].installs, pair[1].name))
    return [skill for _, skill in scored[:limit]]


def _remote_skill(item) -> CatalogSkill | None:
    """Read one remote result; entries that cannot become a SearchSkill are skipped.

    Our own shape carries `slug` and `source`. skills.sh's carries `skillId`, `id` (`owner/repo/skill`)
    and `source` (`owner/repo`, shared by every skill of a repository); there the id is the source, so
    that two skills of one repository do not collide on an environment's unique `source`.
    """
    if not isinstance(item, dict):
        return None
    name = item.get("name")
    if "slug" in item:
        slug, source = item.get("slug"), item.get("source")
    else:
        slug = item.get("skillId") or name
        skill_id = item.get("id")
        source = skill_id if isinstance(skill_id, str) and "/" in skill_id else (
            item.get("source") or item.get("topSource"))
    installs = item.get("installs", 0)
    if not all(isinstance(v, str) and v.strip() for v in (name, slug, source)):
        return None
    if isinstance(installs, bool) or not isinstance(installs, (int, float)):
        installs = 0
    description = item.get("description")
    return CatalogSkill(name=name, slug=slug, source=source, installs=max(int(installs), 0),
                        description=description if isinstance(description, str) else "")


async def search_remote(registry_url: str, query: str, timeout: float = REMOTE_TIMEOUT_SECONDS,
                        limit: int = LIMIT, policy: outbound.OutboundPolicy | None = None) -> list[CatalogSkill]:
    """Ask a remote registry; raises httpx.HTTPError, OutboundRefused or ValueError when it cannot answer."""
    url = registry_url.rstrip("/") + "/api/search"
    async with outbound.guarded_client(policy, timeout=timeout, follow_redirects=True) as client:
        response = await client.get(url, params={"q": query, "limit": limit},
                                    headers={"Accept": "application/json"})
        response.raise_for_status()
        body = response.json()
    items = body.get("skills") if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise ValueError("the response has no `skills` list")
    return [skill for item in items if (skill := _remote_skill(item))][:limit]


async def search(query: str | None, registry_url: str | None, timeout: float = REMOTE_TIMEOUT_SECONDS,
                 policy: outbound.OutboundPolicy | None = None) -> list[CatalogSkill]:
    """Search the configured registry, or the bundled index when none is set or it fails.

    `policy`: where the registry may be reached (None: the running app's)."""
    query = (query or "").strip()
    if registry_url:
        try:
            skills = await search_remote(registry_url, query, timeout, policy=policy)
        except (httpx.HTTPError, outbound.OutboundRefused, ValueError) as exc:
            # The status alone: an HTTPStatusError's text repeats the URL, which may carry a token.
            reason = (f"HTTP {exc.response.status_code}" if isinstance(exc, httpx.HTTPStatusError)
                      else str(exc) or type(exc).__name__)
            log.warning("skills registry search failed, answering from the bundled index "
                        "registry=%s error=%r", display_url(registry_url), reason)
        else:
            # skills.sh answers nothing for an empty query, but the contract promises popular skills.
            if skills or query:
                return skills
    return search_bundled(query)
