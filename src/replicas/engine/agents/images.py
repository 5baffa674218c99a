"""Images of a message (the contract's ImageContent) as the CLIs take them: files on disk, or URLs."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif", "image/webp": ".webp"}


def image_urls(images: Sequence[Mapping[str, Any]]) -> list[str]:
    """The URLs of `{"type": "url"}` images (CLIs that take files only get these in the prompt)."""
    return [image["source"]["url"] for image in images
            if image.get("source", {}).get("type") == "url" and image["source"].get("url")]


def image_sources(images: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every image as a URL: its own for `{"type": "url"}`, a `data:` URI for base64 ones (how the user's
    message shows its images in history)."""
    sources = []
    for image in images:
        source = image.get("source", {})
        if source.get("type") == "url" and source.get("url"):
            sources.append(source["url"])
        elif source.get("type") == "base64":
            sources.append(f"data:{source.get('media_type') or 'image/png'};base64,{source.get('data', '')}")
    return sources


def prompt_with_image_urls(prompt: str, images: Sequence[Mapping[str, Any]]) -> str:
    urls = image_urls(images)
    if not urls:
        return prompt
    return prompt + "\n\nAttached images:\n" + "\n".join(f"- {url}" for url in urls)


def write_images(images: Sequence[Mapping[str, Any]], directory: Path) -> list[Path]:
    """Write the base64 images into `directory` (created if needed); return their paths in order."""
    paths = []
    for image in images:
        source = image.get("source", {})
        if source.get("type") != "base64":
            continue
        try:
            data = base64.b64decode(source.get("data", ""), validate=True)
        except (binascii.Error, ValueError):
            continue  # the API validates images; a bad one here is skipped, not fatal
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{uuid.uuid4().hex}{EXTENSIONS.get(source.get('media_type'), '.png')}"
        path.write_bytes(data)
        paths.append(path)
    return paths
