"""The engine's canvas routes (`GET /canvas`, `GET /canvas/{filename}`), with the real engine as a subprocess
on a unix socket over a real workspace home: kinds, payloads, the size cap and what is never read."""

from __future__ import annotations

import base64
import os

from replicas.engine.canvas import MAX_CONTENT_BYTES
from tests.agents.test_real_clis import png_bytes


async def test_canvas_of_a_home_without_the_directory_is_empty(make_engine, fake_tools):
    engine = await make_engine(REPLICAS_TOOLS_DIR=str(fake_tools)).start()
    async with engine.client() as client:
        response = await client.get("/canvas")
        assert response.status_code == 200 and response.json() == {"items": []}
        missing = await client.get("/canvas/report.md")
        assert missing.status_code == 404 and missing.json() == {"error": "Canvas item not found"}


async def test_canvas_lists_top_level_regular_files_sorted_with_kinds(make_engine, fake_tools, home):
    canvas = home / ".replicas" / "canvas"
    (canvas / "nested").mkdir(parents=True)
    (canvas / "nested" / "inner.md").write_text("# inner\n")
    (canvas / "report.md").write_text("# Report\n\nAll green. ✓\n")
    (canvas / "chart.PNG").write_bytes(png_bytes())
    (canvas / "page.html").write_text("<h1>hi</h1>")
    (canvas / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    (canvas / "voice.mp3").write_bytes(b"ID3")
    (canvas / "data.bin").write_bytes(b"\x01\x02")
    (canvas / ".report.md.swp").write_bytes(b"swap")
    (canvas / "link.md").symlink_to(canvas / "report.md")
    os.mkfifo(canvas / "pipe.md")
    engine = await make_engine(REPLICAS_TOOLS_DIR=str(fake_tools)).start()
    async with engine.client() as client:
        items = (await client.get("/canvas")).json()["items"]
        assert items == [
            {"filename": "chart.PNG", "kind": "image", "sizeBytes": len(png_bytes())},
            {"filename": "clip.mp4", "kind": "video", "sizeBytes": 12},
            {"filename": "data.bin", "kind": "other", "sizeBytes": 2},
            {"filename": "page.html", "kind": "html", "sizeBytes": 11},
            {"filename": "report.md", "kind": "markdown", "sizeBytes": len("# Report\n\nAll green. ✓\n".encode())},
            {"filename": "voice.mp3", "kind": "audio", "sizeBytes": 3},
        ]
        report = (await client.get("/canvas/report.md")).json()
        assert report == {"filename": "report.md", "kind": "markdown", "sizeBytes": items[4]["sizeBytes"],
                          "mimeType": "text/markdown; charset=utf-8", "content": "# Report\n\nAll green. ✓\n"}
        chart = (await client.get("/canvas/chart.PNG")).json()
        assert chart["mimeType"] == "image/png" and "content" not in chart
        assert base64.b64decode(chart["base64"]) == png_bytes()
        for name in ("link.md", "pipe.md", "nested", ".report.md.swp", "nested%2Finner.md"):
            response = await client.get(f"/canvas/{name}")
            assert response.status_code == 404, name
            assert response.json() == {"error": "Canvas item not found"}, name


async def test_canvas_never_reads_outside_its_directory(make_engine, fake_tools, home, tmp_path):
    secret = tmp_path / "secret.md"
    secret.write_text("TOP SECRET\n")
    (home / "secret.md").write_text("TOP SECRET\n")
    canvas = home / ".replicas" / "canvas"
    canvas.mkdir(parents=True)
    (canvas / "escape.md").symlink_to(secret)
    engine = await make_engine(REPLICAS_TOOLS_DIR=str(fake_tools)).start()
    async with engine.client() as client:
        for name in ("escape.md", "..%2F..%2Fsecret.md", "..%2Fsecret.md", f"{str(secret).replace('/', '%2F')}",
                     "..", "%2E%2E"):
            response = await client.get(f"/canvas/{name}")
            assert response.status_code == 404, (name, response.text)
            assert "SECRET" not in response.text
        assert (await client.get("/canvas")).json() == {"items": []}

    # The canvas directory itself a symlink to elsewhere: not followed, as if there were none.
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.md").write_text("TOP SECRET\n")
    canvas.rename(tmp_path / "old-canvas")
    canvas.symlink_to(outside)
    async with engine.client() as client:
        assert (await client.get("/canvas")).json() == {"items": []}
        response = await client.get("/canvas/secret.md")
        assert response.status_code == 404 and "SECRET" not in response.text


async def test_canvas_caps_the_payload_and_keeps_invalid_utf8_lossless(make_engine, fake_tools, home):
    canvas = home / ".replicas" / "canvas"
    canvas.mkdir(parents=True)
    (canvas / "exact.bin").write_bytes(b"x" * MAX_CONTENT_BYTES)
    (canvas / "huge.md").write_bytes(b"y" * (MAX_CONTENT_BYTES + 1))
    (canvas / "latin1.md").write_bytes("caf\xe9\n".encode("latin-1"))
    engine = await make_engine(REPLICAS_TOOLS_DIR=str(fake_tools)).start()
    async with engine.client() as client:
        exact = (await client.get("/canvas/exact.bin")).json()
        assert exact["sizeBytes"] == MAX_CONTENT_BYTES and "tooLarge" not in exact
        assert len(base64.b64decode(exact["base64"])) == MAX_CONTENT_BYTES
        huge = (await client.get("/canvas/huge.md")).json()
        assert huge == {"filename": "huge.md", "kind": "markdown", "sizeBytes": MAX_CONTENT_BYTES + 1,
                        "mimeType": "text/markdown; charset=utf-8", "tooLarge": True}
        latin = (await client.get("/canvas/latin1.md")).json()
        assert latin["kind"] == "markdown" and latin["mimeType"] == "text/markdown" and "content" not in latin
        assert base64.b64decode(latin["base64"]) == "caf\xe9\n".encode("latin-1")
