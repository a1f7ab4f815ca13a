"""Graph drives: updating, disabling, restoring and purging spaces."""

from __future__ import annotations

import httpx

PROBLEM = "application/problem+json"


async def create(client: httpx.AsyncClient, name: str) -> dict:
    r = await client.post("/graph/v1.0/drives", json={"name": name})
    assert r.status_code == 201, r.text
    return r.json()


async def invite(client: httpx.AsyncClient, drive_id: str, user_id: str, role: str) -> None:
    r = await client.post(f"/graph/v1beta1/drives/{drive_id}/root/invite", json={
        "recipients": [{"objectId": user_id, "@libre.graph.recipient.type": "user"}],
        "roles": [role]})
    assert r.status_code == 200, r.text


def assert_problem(r: httpx.Response, status: int, fragment: str = "") -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    assert fragment in r.json()["detail"]


async def test_managers_update_others_may_not(instance) -> None:
    alice, bob, carol = (instance.client(n) for n in ("alice", "bob", "carol"))
    drive = await create(alice, "Docs")
    url = f"/graph/v1.0/drives/{drive['id']}"
    await invite(alice, drive["id"], instance.users["bob"][0], "editor")
    await invite(alice, drive["id"], instance.users["carol"][0], "viewer")

    r = await alice.patch(url, json={"name": " Documents ", "description": "all of them",
                                     "image": "/.space/logo.png"})
    assert r.status_code == 200, r.text
    got = r.json()
    assert (got["name"], got["description"]) == ("Documents", "all of them")
    [image] = got["special"]
    assert image["specialFolder"] == {"name": "image"} and image["name"] == "logo.png"
    assert image["webDavUrl"].endswith(f"/dav/spaces/{drive['id']}/.space/logo.png")

    for client in (bob, carol):
        assert_problem(await client.patch(url, json={"name": "Mine"}), 403, "managers")
    assert_problem(await alice.patch(url, json={"quota": {"total": 1}}), 403, "administrators")
    assert_problem(await alice.patch(url, json={"image": "../escape.png"}), 422, "#/image")
    assert_problem(await alice.patch(url, json={"name": ""}), 422, "#/name")

    cleared = await alice.patch(url, json={"image": ""})
    assert "special" not in cleared.json()
    assert (await bob.get(url)).json()["name"] == "Documents"


async def test_admin_changes_quota(instance) -> None:
    alice = instance.client("alice")
    drive = await create(alice, "Quota")
    await invite(alice, drive["id"], instance.users["root"][0], "manager")
    r = await instance.client("root").patch(f"/graph/v1.0/drives/{drive['id']}",
                                            json={"quota": {"total": 4096}})
    assert r.status_code == 200, r.text
    assert r.json()["quota"] == {"total": 4096, "used": 0, "remaining": 4096, "state": "normal"}
    r = await instance.client("root").patch(f"/graph/v1.0/drives/{drive['id']}",
                                            json={"quota": {"total": 0}})
    assert r.json()["quota"] == {"used": 0, "state": "normal"}  # unlimited


async def test_disable_restore_purge(instance) -> None:
    alice, bob = instance.client("alice"), instance.client("bob")
    drive = await create(alice, "Old")
    url = f"/graph/v1.0/drives/{drive['id']}"
    await invite(alice, drive["id"], instance.users["bob"][0], "editor")

    assert_problem(await bob.delete(url), 403, "managers")
    assert_problem(await alice.delete(url, headers={"Purge": "T"}), 409, "disable")
    assert (await alice.delete(url)).status_code == 204

    disabled = (await alice.get(url)).json()
    assert disabled["root"]["deleted"] == {"state": "trashed"}
    assert disabled["syncable"] is False
    # Members other than managers no longer see a disabled space.
    assert_problem(await bob.get(url), 404)
    listed = (await bob.get("/graph/v1.0/me/drives")).json()["value"]
    assert drive["id"] not in {d["id"] for d in listed}
    assert_problem(await alice.patch(url, json={"name": "New"}), 409, "restore")

    restored = await alice.patch(url, headers={"Restore": "T"})
    assert restored.status_code == 200, restored.text
    assert "deleted" not in restored.json()["root"]
    assert (await bob.get(url)).status_code == 200
    assert_problem(await alice.patch(url, headers={"Restore": "T"}), 409, "not disabled")

    assert (await alice.delete(url)).status_code == 204
    assert (await alice.delete(url, headers={"Purge": "T"})).status_code == 204
    assert_problem(await alice.get(url), 404)
    assert_problem(await alice.delete(url, headers={"Purge": "T"}), 404)


async def test_personal_space_cannot_be_disabled(instance) -> None:
    alice = instance.client("alice")
    [personal] = (await alice.get("/graph/v1.0/me/drives")).json()["value"]
    assert_problem(await alice.delete(f"/graph/v1.0/drives/{personal['id']}"), 403, "personal")
