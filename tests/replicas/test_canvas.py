"""The Canvas endpoints (spec §3.4): GET /v1/replica/{id}/canvas and /canvas/{filename}, end to end: the real
agent writes into `~/.replicas/canvas/` through the scripted model, the engine in the workspace reads it, and
every answer is checked against the contract. A GET on a sleeping replica wakes it and answers once it is up."""

from __future__ import annotations

import base64
import uuid

import pytest

from replicas.engine.canvas import MAX_CONTENT_BYTES
from replicas.testing import ShellCall, Text, WriteFile
from tests.agents.test_real_clis import png_bytes
from tests.contract import assert_contract
from tests.replicas.conftest import ON_BOTH_BACKENDS, create, set_row, settled, status_of, wait_for

pytestmark = [pytest.mark.slow]

LIST = "/v1/replica/{id}/canvas"
ITEM = "/v1/replica/{id}/canvas/{filename}"
REPORT = "# Weekly report\n\nAll checks green. ✓\n"


def home_of(settings, replica_id: str):
    """The workspace home, seen from the host: the same path on both backends (docker mounts the workspace
    directory's volume at its own path)."""
    return (settings.data_dir / "workspaces" / replica_id / "home").resolve()


@ON_BOTH_BACKENDS
async def test_canvas_lists_and_serves_what_the_agent_wrote(app, client, settings, replica_env, model, tmp_path):
    rid = (await create(client, replica_env, "Write the report", name="canvas"))["id"]
    canvas = home_of(settings, rid) / ".replicas" / "canvas"
    model.add_turn(ShellCall(f"mkdir -p {canvas}"), WriteFile(str(canvas / "report.md"), REPORT),
                   Text("The report is in the canvas."))
    await wait_for(lambda: settled(app, rid), what="the agent's turn")
    assert (canvas / "report.md").read_text() == REPORT

    (canvas / "chart.png").write_bytes(png_bytes())
    (canvas / "huge.mp4").write_bytes(b"\x00" * (MAX_CONTENT_BYTES + 1))
    (canvas / "drafts").mkdir()
    (canvas / "drafts" / "old.md").write_text("# old\n")
    secret = tmp_path / "secret.md"
    secret.write_text("TOP SECRET outside the canvas\n")
    (canvas / "escape.md").symlink_to(secret)
    (canvas.parent / "secret.md").write_text("TOP SECRET next to the canvas\n")

    # The list: top-level regular files only, sorted by name, kinds from the extension.
    listed = assert_contract(await client.get(f"/v1/replica/{rid}/canvas"), LIST)
    assert listed == {"items": [
        {"filename": "chart.png", "kind": "image", "sizeBytes": len(png_bytes())},
        {"filename": "huge.mp4", "kind": "video", "sizeBytes": MAX_CONTENT_BYTES + 1},
        {"filename": "report.md", "kind": "markdown", "sizeBytes": len(REPORT.encode())},
    ]}

    # Markdown: UTF-8 text in `content`.
    report = assert_contract(await client.get(f"/v1/replica/{rid}/canvas/report.md"), ITEM)
    assert report == {"filename": "report.md", "kind": "markdown", "sizeBytes": len(REPORT.encode()),
                      "mimeType": "text/markdown; charset=utf-8", "content": REPORT}

    # An image: `base64`, which decodes to the very bytes.
    chart = assert_contract(await client.get(f"/v1/replica/{rid}/canvas/chart.png"), ITEM)
    assert chart["kind"] == "image" and chart["mimeType"] == "image/png" and "content" not in chart
    assert base64.b64decode(chart["base64"]) == png_bytes()

    # Over the 5 MB cap: `tooLarge`, neither payload.
    huge = assert_contract(await client.get(f"/v1/replica/{rid}/canvas/huge.mp4"), ITEM)
    assert huge == {"filename": "huge.mp4", "kind": "video", "sizeBytes": MAX_CONTENT_BYTES + 1,
                    "mimeType": "video/mp4", "tooLarge": True}

    # Nothing outside the canvas directory is ever read: traversal, nesting, absolute names and symlinks are 404.
    # (A literal `..` segment never reaches the server: clients resolve it, as RFC 3986 has them do.)
    for name in ("..%2Fsecret.md", "..%2F..%2F.replicas%2Fsecret.md", "drafts%2Fold.md", "drafts",
                 f"{str(secret).replace('/', '%2F')}", "escape.md", "%2E%2E", "%2E"):
        response = await client.get(f"/v1/replica/{rid}/canvas/{name}")
        assert response.status_code == 404, (name, response.text)
        body = assert_contract(response, ITEM, "get")
        assert "TOP SECRET" not in response.text and "# old" not in response.text, name
        assert body["error"] in ("Canvas item not found", "Not found"), (name, body)

    # An unknown file, an unknown replica.
    missing = assert_contract(await client.get(f"/v1/replica/{rid}/canvas/nope.md"), ITEM)
    assert missing["error"] == "Canvas item not found"
    stranger = str(uuid.uuid4())
    for path in (f"/v1/replica/{stranger}/canvas", f"/v1/replica/{stranger}/canvas/report.md",
                 f"/v1/replica/{stranger}/canvas/..%2Fsecret.md"):
        response = await client.get(path)
        assert response.status_code == 404, path
        assert assert_contract(response, LIST if path.endswith("canvas") else ITEM)["error"] == "Workspace not found"


async def test_canvas_of_a_replica_without_one_is_empty(app, client, settings, replica_env, model):
    model.add_turn(Text("Nothing to show."))
    rid = (await create(client, replica_env, "Just answer", name="no-canvas"))["id"]
    await wait_for(lambda: settled(app, rid), what="the agent's turn")
    assert not (home_of(settings, rid) / ".replicas" / "canvas").exists()
    assert assert_contract(await client.get(f"/v1/replica/{rid}/canvas"), LIST) == {"items": []}
    missing = await client.get(f"/v1/replica/{rid}/canvas/report.md")
    assert missing.status_code == 404 and assert_contract(missing, ITEM)["error"] == "Canvas item not found"

    # A replica in error cannot answer: 502, the contract's "workspace is unreachable".
    await set_row(app, rid, status="error", error_message="Wake failed: boom")
    for path, template in ((f"/v1/replica/{rid}/canvas", LIST), (f"/v1/replica/{rid}/canvas/report.md", ITEM)):
        response = await client.get(path)
        assert response.status_code == 502, response.text
        assert assert_contract(response, template) == {"error": "Workspace is in error state",
                                                       "details": "Wake failed: boom"}


@ON_BOTH_BACKENDS
async def test_reading_the_canvas_of_a_sleeping_replica_wakes_it(app, client, settings, replica_env, model):
    rid = (await create(client, replica_env, "Write the report", name="sleepy"))["id"]
    canvas = home_of(settings, rid) / ".replicas" / "canvas"
    model.add_turn(ShellCall(f"mkdir -p {canvas}"), WriteFile(str(canvas / "report.md"), REPORT), Text("Done."))
    await wait_for(lambda: settled(app, rid), what="the agent's turn")
    assert (await client.post(f"/v1/workspaces/{rid}/sleep")).status_code == 200
    assert await status_of(app, rid) == "sleeping"

    listed = assert_contract(await client.get(f"/v1/replica/{rid}/canvas"), LIST)
    assert listed == {"items": [{"filename": "report.md", "kind": "markdown", "sizeBytes": len(REPORT.encode())}]}
    assert await status_of(app, rid) == "active"
    report = assert_contract(await client.get(f"/v1/replica/{rid}/canvas/report.md"), ITEM)
    assert report["content"] == REPORT
