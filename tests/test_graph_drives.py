"""Graph drives: listing, filtering, ordering, creating, reading, and request errors."""

from __future__ import annotations

import httpx
import pytest

from registry.graph import quota

PROBLEM = "application/problem+json"


async def create(client: httpx.AsyncClient, name: str, **body: object) -> dict:
    r = await client.post("/graph/v1.0/drives", json={"name": name, **body})
    assert r.status_code == 201, r.text
    return r.json()


def assert_problem(r: httpx.Response, status: int, *fragments: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    for fragment in fragments:
        assert fragment in r.json()["detail"]


async def test_personal_space_is_created_on_first_request(instance) -> None:
    bob_id = instance.users["bob"][0]
    r = await instance.client("bob").get("/graph/v1.0/me/drives")
    assert r.status_code == 200
    [drive] = r.json()["value"]
    assert drive["driveType"] == "personal"
    assert drive["driveAlias"] == "personal/bob"
    assert drive["owner"] == {"user": {"id": bob_id}}
    assert drive["managers"] == [{"id": bob_id}]
    assert drive["syncable"] is True
    assert drive["root"]["webDavUrl"].endswith(f"/dav/spaces/{drive['id']}")
    assert drive["webUrl"].endswith(f"/#/spaces/{drive['id']}")
    assert drive["lastModifiedDateTime"].endswith("Z")


async def test_create_project(instance) -> None:
    alice = instance.client("alice")
    r = await alice.post("/graph/v1.0/drives", json={
        "name": "  Marketing Team ", "description": "ads", "driveType": "project"})
    assert r.status_code == 201, r.text
    drive = r.json()
    assert r.headers["location"].endswith(f"/graph/v1.0/drives/{drive['id']}")
    assert (drive["name"], drive["driveAlias"], drive["description"]) == (
        "Marketing Team", "project/marketing-team", "ads")
    assert drive["quota"]["state"] == "normal"
    assert drive["root"]["eTag"]
    [perm] = drive["root"]["permissions"]
    assert perm["grantedToV2"] == {"user": {"id": instance.users["alice"][0]}}
    assert "owner" not in drive
    got = await alice.get(f"/graph/v1.0/drives/{drive['id']}")
    assert got.status_code == 200 and got.json()["id"] == drive["id"]


@pytest.mark.parametrize(("body", "status", "fragment"), [
    ({"name": "   "}, 422, "#/name"),
    ({"name": "x" * 256}, 422, "#/name"),
    ({"name": "bad\x07name"}, 422, "control characters"),
    ({}, 422, "#/name"),
    ({"name": "ok", "driveType": "personal"}, 400, "only project drives"),
    ({"name": "ok", "quota": {"total": -1}}, 422, "#/quota/total"),
], ids=["blank", "too-long", "control-char", "missing", "personal", "negative-quota"])
async def test_create_refuses_bad_bodies(instance, body, status, fragment) -> None:
    r = await instance.client("alice").post("/graph/v1.0/drives", json=body)
    assert_problem(r, status, fragment)


async def test_only_admins_choose_a_quota(instance) -> None:
    r = await instance.client("alice").post("/graph/v1.0/drives",
                                            json={"name": "Big", "quota": {"total": 5}})
    assert_problem(r, 403, "quota")
    drive = await create(instance.client("root"), "Small", quota={"total": 1000})
    assert drive["quota"] == {"total": 1000, "used": 0, "remaining": 1000, "state": "normal"}


async def test_filter_and_orderby(instance) -> None:
    alice = instance.client("alice")
    for name in ("beta", "alpha", "gamma"):
        await create(alice, name)
    projects = "driveType eq 'project'"
    r = await alice.get("/graph/v1.0/me/drives", params={"$filter": projects,
                                                         "$orderby": "name"})
    assert [d["name"] for d in r.json()["value"]] == ["alpha", "beta", "gamma"]
    r = await alice.get("/graph/v1.0/me/drives", params={"$filter": projects,
                                                         "$orderby": "name desc"})
    assert [d["name"] for d in r.json()["value"]] == ["gamma", "beta", "alpha"]
    r = await alice.get("/graph/v1.0/me/drives", params={"$filter": "driveType eq 'personal'"})
    assert [d["driveType"] for d in r.json()["value"]] == ["personal"]
    r = await alice.get("/graph/v1.0/drives", params={"$filter": "driveType eq 'share'"})
    assert r.json() == {"value": []}

    beta = next(d for d in (await alice.get("/graph/v1.0/me/drives")).json()["value"]
                if d["name"] == "beta")
    patched = await alice.patch(f"/graph/v1.0/drives/{beta['id']}", json={"description": "new"})
    assert patched.status_code == 200
    r = await alice.get("/graph/v1.0/me/drives", params={
        "$filter": projects, "$orderby": "lastModifiedDateTime desc"})
    assert r.json()["value"][0]["name"] == "beta"


@pytest.mark.parametrize(("param", "value", "fragment"), [
    ("$filter", "driveType eq 'attic'", "unsupported driveType 'attic'"),
    ("$filter", "name eq 'x'", "unsupported $filter expression \"name eq 'x'\""),
    ("$filter", "driveType ne 'project'", "unsupported $filter expression"),
    ("$orderby", "size", "unsupported $orderby expression 'size'"),
    ("$orderby", "name sideways", "unsupported $orderby expression"),
], ids=["drive-type", "other-field", "other-operator", "order-field", "order-direction"])
async def test_bad_query_options(instance, param, value, fragment) -> None:
    r = await instance.client("alice").get("/graph/v1.0/me/drives", params={param: value})
    assert_problem(r, 400, fragment)


async def test_non_members_get_404(instance) -> None:
    drive = await create(instance.client("alice"), "Secret")
    bob = instance.client("bob")
    hidden = await bob.get(f"/graph/v1.0/drives/{drive['id']}")
    missing = await bob.get("/graph/v1.0/drives/no-such-drive")
    assert_problem(hidden, 404)
    assert_problem(missing, 404)
    listed = (await bob.get("/graph/v1.0/me/drives")).json()["value"]
    assert drive["id"] not in {d["id"] for d in listed}


async def test_unauthenticated_is_401_with_challenge(instance) -> None:
    anonymous = instance.client(None)
    for method, url in (("GET", "/graph/v1.0/me/drives"), ("POST", "/graph/v1.0/drives"),
                        ("GET", "/graph/v1.0/me/drives/events")):
        r = await anonymous.request(method, url)
        assert_problem(r, 401)
        assert r.headers["www-authenticate"].startswith("Basic")


async def test_malformed_json_and_oversized_body(instance) -> None:
    alice = instance.client("alice", wire=False)
    r = await alice.post("/graph/v1.0/drives", content=b"{not json",
                         headers={"content-type": "application/json"})
    assert_problem(r, 422, "JSON")
    limit = instance.instance.settings.http.max_body_size
    r = await instance.client("alice").post(
        "/graph/v1.0/drives", content=b"x" * (limit + 1),
        headers={"content-type": "application/json"})
    assert_problem(r, 413, str(limit))


def test_quota_states_follow_ocis() -> None:
    assert quota(0, 123) == {"used": 123, "state": "normal"}
    assert quota(100, 75)["state"] == "normal"
    assert quota(100, 76)["state"] == "nearing"
    assert quota(100, 91)["state"] == "critical"
    assert quota(100, 100) == {"total": 100, "used": 100, "remaining": 0, "state": "exceeded"}
    assert quota(100, 150)["remaining"] == 0
