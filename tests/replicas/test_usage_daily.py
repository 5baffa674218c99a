"""GET /v1/usage/daily (our addition; SQLite and PostgreSQL): awake minutes per UTC day from the stored usage
stretches, a stretch across midnight split over both days so that the days add up to /v1/usage's rounded-up
minutes; every day of the window present; other organizations' stretches never counted; a bad window is 400."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta

import pytest

from replicas.services import auth
from replicas.store.models import UsageSession

DAILY = "/v1/usage/daily"


def midnight(days_ago: int) -> datetime:
    return datetime.combine(datetime.now(UTC).date() - timedelta(days=days_ago), time(), tzinfo=UTC)


async def add_stretch(app, org_name: str, started_at: datetime, ended_at: datetime | None, *,
                      size: str = "small", source: str = "api", name: str = "metered") -> uuid.UUID:
    workspace_id = uuid.uuid4()
    async with app.state.sessions() as session:
        org = await auth.get_or_create_organization(session, org_name)
        session.add(UsageSession(organization_id=org.id, workspace_id=workspace_id, workspace_name=name,
                                 size=size, source=source, started_at=started_at, ended_at=ended_at))
        await session.commit()
    return workspace_id


async def test_a_stretch_across_midnight_is_split_over_its_two_days(app, org, client):
    # 23:30:00 to 00:45:30: 75.5 minutes, billed 76: 30 on the first day, the other 46 on the next.
    start = midnight(3) - timedelta(minutes=30)
    replica_id = await add_stretch(app, org.name, start, start + timedelta(minutes=75, seconds=30), size="large")
    await add_stretch(app, org.name, midnight(1) + timedelta(hours=9), midnight(1) + timedelta(hours=9, minutes=10),
                      source="slack")
    response = await client.get(DAILY)
    assert response.status_code == 200, response.text
    body = response.json()
    days = {d["date"]: d for d in body["days"]}
    assert len(body["days"]) == 30 and body["until"] == datetime.now(UTC).date().isoformat()
    assert [d["date"] for d in body["days"]] == sorted(days)
    assert days[midnight(4).date().isoformat()] == {"date": midnight(4).date().isoformat(), "minutes": 30,
                                                   "by_size": {"large": 30}, "by_source": {"api": 30}}
    assert days[midnight(3).date().isoformat()]["minutes"] == 46
    assert days[midnight(1).date().isoformat()]["by_source"] == {"slack": 10}
    assert days[midnight(2).date().isoformat()] == {"date": midnight(2).date().isoformat(), "minutes": 0,
                                                   "by_size": {}, "by_source": {}}
    assert body["total_minutes"] == 86

    # The days add up to what /v1/usage bills the replica.
    report = (await client.get("/v1/usage", params={"since": midnight(10).isoformat()})).json()
    billed = next(u for u in report["usage"] if u["replica_id"] == str(replica_id))
    assert billed["minutes"] == 76 == days[midnight(4).date().isoformat()]["minutes"] + \
        days[midnight(3).date().isoformat()]["minutes"]


async def test_the_window_is_whole_utc_days_and_an_open_stretch_counts_up_to_now(app, org, client):
    await add_stretch(app, org.name, midnight(40) + timedelta(hours=23), midnight(38) + timedelta(hours=1))
    await add_stretch(app, org.name, datetime.now(UTC) - timedelta(minutes=5, seconds=30), None)
    body = (await client.get(DAILY, params={"since": (midnight(39) + timedelta(hours=5)).isoformat(),
                                            "until": midnight(38).replace(tzinfo=None).isoformat()})).json()
    assert [(d["date"], d["minutes"]) for d in body["days"]] == [(midnight(39).date().isoformat(), 1440)]
    assert body["since"] == body["until"] == midnight(39).date().isoformat()
    today = (await client.get(DAILY, params={"since": midnight(0).isoformat()})).json()["days"]
    assert len(today) == 1 and today[0]["minutes"] >= 6  # started 5.5 minutes ago, still awake


async def test_another_organizations_minutes_are_not_counted(app, make_org):
    first, second = await make_org(), await make_org()
    await add_stretch(app, second.name, midnight(1), midnight(1) + timedelta(hours=2))
    assert (await first.client.get(DAILY)).json()["total_minutes"] == 0
    assert (await second.client.get(DAILY)).json()["total_minutes"] == 120


@pytest.mark.parametrize(("params", "field"), [
    ({"since": "2026-05-10T00:00:00Z", "until": "2026-05-01T00:00:00Z"}, "since"),
    ({"since": "2020-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "since"),
    ({"since": "yesterday"}, "since"),
])
async def test_a_bad_window_is_400(client, params, field):
    response = await client.get(DAILY, params=params)
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == {"error", "details"} and body["details"].startswith(f"{field}")
