"""The append-only event journal: sequence numbers, reading, following, torn lines, reopening."""

from __future__ import annotations

import asyncio
import json

from replicas.engine.journal import Journal


def test_appended_events_get_dense_sequence_numbers_and_are_read_back_after_a_seq(tmp_path):
    journal = Journal(tmp_path / "events.jsonl").open()
    for n in range(5):
        journal.append("chat.turn.delta", {"n": n})
    assert [e["seq"] for e in journal.read()] == [1, 2, 3, 4, 5]
    assert [e["payload"]["n"] for e in journal.read(after=3)] == [3, 4]
    assert [e["seq"] for e in journal.read(after=1, limit=2)] == [2, 3]
    event = journal.read()[0]
    assert set(event) == {"seq", "id", "ts", "type", "payload"} and event["ts"].endswith("Z")
    journal.close()
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2, 3, 4, 5]


def test_a_reopened_journal_continues_the_sequence(tmp_path):
    path = tmp_path / "events.jsonl"
    first = Journal(path).open()
    first.append("engine.ready", {"version": "v1"})
    first.append("engine.ready", {"version": "v1"})
    first.close()
    second = Journal(path).open()
    assert second.last_seq == 2
    assert second.append("engine.ready", {"version": "v1"})["seq"] == 3
    second.close()
    assert Journal(path).open().last_seq == 3


def test_a_torn_last_line_is_dropped_and_overwritten(tmp_path):
    path = tmp_path / "events.jsonl"
    journal = Journal(path).open()
    journal.append("a", {})
    journal.append("b", {})
    journal.close()
    with path.open("a") as handle:
        handle.write('{"seq": 3, "type": "tor')
    reopened = Journal(path).open()
    assert reopened.last_seq == 2
    assert reopened.append("c", {})["seq"] == 3
    reopened.close()
    assert [json.loads(line)["type"] for line in path.read_text().splitlines()] == ["a", "b", "c"]


async def test_follow_replays_then_streams_new_events_and_sends_heartbeats(tmp_path):
    journal = Journal(tmp_path / "events.jsonl").open()
    journal.append("a", {})
    journal.append("b", {})
    seen: list = []

    async def follow():
        async for event in journal.follow(after=1, heartbeat=0.05):
            seen.append(event if event is None else event["type"])
            if len([s for s in seen if s is not None]) == 3:
                return

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.2)
    journal.append("c", {})
    journal.append("d", {})
    await asyncio.wait_for(task, 5)
    assert [s for s in seen if s is not None] == ["b", "c", "d"]
    assert None in seen  # a heartbeat while nothing happened
