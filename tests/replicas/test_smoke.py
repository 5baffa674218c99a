import pytest

from replicas.testing.script import Text, WriteFile
from tests.replicas.conftest import replica, settled, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]


async def test_smoke(app, client, replica_env, model):
    model.add_turn(WriteFile("hello.py", "print('hello')\n"), Text("Created it."))
    response = await client.post("/v1/replica", json={"name": "smoke", "environment_id": replica_env.environment_id,
                                                      "message": "Create hello.py"})
    assert response.status_code == 201, response.text
    created = response.json()["replica"]
    print(created)
    assert created["status"] == "active"
    await wait_for(lambda: settled(app, created["id"]), what="turn")
    details = await replica(client, created["id"])
    print(details)
    history = (await client.get(f"/v1/replica/{created['id']}/history")).json()
    print(history["total"], [e["type"] for e in history["events"]])
    assert (await client.delete(f"/v1/replica/{created['id']}")).json() == {"success": True}
