"""Graph drive permissions: invite users and groups, list, change and remove members."""

from __future__ import annotations

import httpx

from registry.roles import ROLES

PROBLEM = "application/problem+json"
EDITOR, VIEWER, MANAGER = (ROLES[n].id for n in ("editor", "viewer", "manager"))


async def create(client: httpx.AsyncClient, name: str) -> dict:
    r = await client.post("/graph/v1.0/drives", json={"name": name})
    assert r.status_code == 201, r.text
    return r.json()


def invitation(object_id: str, role: str, kind: str = "user") -> dict:
    return {"recipients": [{"objectId": object_id, "@libre.graph.recipient.type": kind}],
            "roles": [role]}


def assert_problem(r: httpx.Response, status: int, fragment: str = "") -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    assert fragment in r.json()["detail"]


async def test_invited_user_lists_the_drive(instance) -> None:
    alice, bob = instance.client("alice"), instance.client("bob")
    bob_id = instance.users["bob"][0]
    drive = await create(alice, "Shared")
    r = await alice.post(f"/graph/v1beta1/drives/{drive['id']}/root/invite",
                         json=invitation(bob_id, "editor"))
    assert r.status_code == 200, r.text
    assert r.json() == {"value": [{"id": f"u:{bob_id}", "roles": [EDITOR],
                                   "grantedToV2": {"user": {"id": bob_id,
                                                            "displayName": "Bob"}}}]}
    listed = (await bob.get("/graph/v1.0/me/drives",
                            params={"$filter": "driveType eq 'project'"})).json()["value"]
    assert [d["id"] for d in listed] == [drive["id"]]
    assert {p["id"] for p in listed[0]["root"]["permissions"]} == {
        f"u:{instance.users['alice'][0]}", f"u:{bob_id}"}
    # An editor may not invite.
    assert_problem(await bob.post(f"/graph/v1beta1/drives/{drive['id']}/root/invite",
                                  json=invitation(instance.users["carol"][0], "viewer")),
                   403, "managers")


async def test_invite_errors(instance) -> None:
    alice = instance.client("alice")
    drive = await create(alice, "Errors")
    url = f"/graph/v1beta1/drives/{drive['id']}/root/invite"
    assert_problem(await alice.post(url, json=invitation(instance.users["bob"][0], "owner")),
                   400, "unknown role 'owner'")
    assert_problem(await alice.post(url, json=invitation("nobody", "viewer")),
                   400, "no such user: 'nobody'")
    assert_problem(await alice.post(url, json=invitation("nogroup", "viewer", "group")),
                   400, "no such group: 'nogroup'")
    assert_problem(await alice.post(url, json={"recipients": [], "roles": ["viewer"]}),
                   422, "#/recipients")
    # Non-members cannot probe the drive (or the directory) through invites.
    assert_problem(await instance.client("bob").post(
        url, json=invitation(instance.users["carol"][0], "viewer")), 404)
    [personal] = (await alice.get("/graph/v1.0/drives",
                                  params={"$filter": "driveType eq 'personal'"})).json()["value"]
    assert_problem(await alice.post(
        f"/graph/v1beta1/drives/{personal['id']}/root/invite",
        json=invitation(instance.users["bob"][0], "viewer")), 403, "personal")


async def test_invite_group(instance) -> None:
    directory = instance.instance.ctx.components["discovery"].directory
    group_id = await directory.add_group("team", "The Team")
    await directory.add_member("team", "carol")
    alice = instance.client("alice")
    drive = await create(alice, "Team space")
    r = await alice.post(f"/graph/v1beta1/drives/{drive['id']}/root/invite",
                         json=invitation(group_id, VIEWER, "group"))
    assert r.status_code == 200, r.text
    [perm] = r.json()["value"]
    assert perm["grantedToV2"] == {"group": {"id": group_id, "displayName": "The Team"}}
    carol = instance.client("carol")
    got = await carol.get(f"/graph/v1.0/drives/{drive['id']}")
    assert got.status_code == 200, got.text
    assert_problem(await carol.patch(f"/graph/v1.0/drives/{drive['id']}", json={"name": "x"}),
                   403)


async def test_list_change_and_remove_permissions(instance) -> None:
    alice, bob = instance.client("alice"), instance.client("bob")
    alice_id, bob_id = instance.users["alice"][0], instance.users["bob"][0]
    drive = await create(alice, "Members")
    base = f"/graph/v1beta1/drives/{drive['id']}/root"
    await alice.post(f"{base}/invite", json=invitation(bob_id, "viewer"))

    listed = (await alice.get(f"{base}/permissions")).json()
    assert {p["id"]: p["roles"] for p in listed["value"]} == {
        f"u:{alice_id}": [MANAGER], f"u:{bob_id}": [VIEWER]}
    assert {p["grantedToV2"]["user"]["displayName"] for p in listed["value"]} == {"Alice", "Bob"}
    roles = listed["@libre.graph.permissions.roles.allowedValues"]
    assert [r["id"] for r in roles] == [VIEWER, EDITOR, MANAGER]
    assert roles[0]["rolePermissions"][0]["condition"] == "exists @Resource.Root"
    assert "libre.graph/driveItem/permissions/create" in listed[
        "@libre.graph.permissions.actions.allowedValues"]
    # A viewer sees the members, and only the roles it holds the actions of.
    as_bob = (await bob.get(f"{base}/permissions")).json()
    assert [r["id"] for r in as_bob["@libre.graph.permissions.roles.allowedValues"]] == [VIEWER]

    r = await alice.patch(f"{base}/permissions/u:{bob_id}", json={"roles": ["editor"]})
    assert r.status_code == 200, r.text
    assert r.json()["roles"] == [EDITOR]
    assert_problem(await bob.patch(f"{base}/permissions/u:{alice_id}", json={"roles": [VIEWER]}),
                   403)
    assert_problem(await alice.patch(f"{base}/permissions/u:nobody", json={"roles": [VIEWER]}),
                   404, "no permission")
    assert_problem(await alice.patch(f"{base}/permissions/u:{bob_id}", json={"roles": ["god"]}),
                   400, "unknown role")

    assert (await alice.delete(f"{base}/permissions/u:{bob_id}")).status_code == 204
    assert_problem(await bob.get(f"/graph/v1.0/drives/{drive['id']}"), 404)


async def test_last_manager_is_protected(instance) -> None:
    alice = instance.client("alice")
    alice_id, bob_id = instance.users["alice"][0], instance.users["bob"][0]
    drive = await create(alice, "Managed")
    base = f"/graph/v1beta1/drives/{drive['id']}/root"
    assert_problem(await alice.delete(f"{base}/permissions/u:{alice_id}"), 409, "last manager")
    assert_problem(await alice.patch(f"{base}/permissions/u:{alice_id}",
                                     json={"roles": ["viewer"]}), 409, "last manager")
    assert_problem(await alice.post(f"{base}/invite", json=invitation(alice_id, "editor")),
                   409, "last manager")
    # With a second manager, the first may step down.
    await alice.post(f"{base}/invite", json=invitation(bob_id, "manager"))
    assert (await alice.delete(f"{base}/permissions/u:{alice_id}")).status_code == 204
    assert_problem(await alice.get(f"/graph/v1.0/drives/{drive['id']}"), 404)
