"""The registry's hot reads: ``route`` (every WebDAV request) and the drive listing.

Both are built for speed (statements prepared once, each drive's JSON kept until its
``change_seq`` moves); these tests pin what they answer: grants through direct, group and
scoped (OCM bearer) memberships, the refusals, and a listing byte for byte as the Graph
API rendered it before (``old_drive`` below is that rendering), also after changes.
"""

from __future__ import annotations

import posixpath
import time
import uuid
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from sqlalchemy import insert

from fedspace.auth import Principal
from fedspace.rpc import spaces_pb2 as pb
from registry.drives import Drive, Member, NotFound
from registry.graph import Renderer
from registry.models import space_members, spaces
from registry.roles import ROLES
from registry.service import RegistryService
from registry.settings import RegistrySettings

BASE = "https://cloud.test"
ADDRESS = "marie@paris.test"
ALICE = Principal("u-alice", "alice", "Alice")
BOB = Principal("u-bob", "bob", "Bob")
CAROL = Principal("u-carol", "carol", "Carol", groups=frozenset({"g-team"}))
MARIE = Principal("g-marie", ADDRESS, "Marie", kind="guest")  # a federated guest


async def add_space(service: RegistryService, *members: tuple[str, str, str],
                    **columns: Any) -> str:
    """A space as the registry records one, with (type, id, role) members."""
    space_id = str(uuid.uuid4())
    name = columns.pop("name", f"Space {space_id[:8]}")
    values = {"type": "project", "name": name, "alias": f"project/{name.lower()}",
              "description": "", "quota_total": 0, "provider_id": "p-1",
              "root_id": str(uuid.uuid4()), "etag": uuid.uuid4().hex, "size": 0,
              "created_ms": 1_700_000_000_123, "modified_ms": 1_700_000_456_789} | columns
    async with service.db.write() as conn:
        await conn.execute(insert(spaces).values(
            id=space_id, change_seq=await service._next_seq(conn), **values))
        for kind, principal_id, role in members:
            await conn.execute(insert(space_members).values(
                space_id=space_id, principal_type=kind, principal_id=principal_id, role=role,
                created_ms=1))
    return space_id


async def test_route_for_direct_group_and_scoped_members(registry: RegistryService) -> None:
    team = await add_space(registry, ("user", ALICE.id, "manager"), ("group", "g-team", "viewer"),
                           ("federated", ADDRESS, "editor"))
    both = await add_space(registry, ("user", CAROL.id, "editor"), ("group", "g-team", "viewer"))
    shared = await add_space(registry, ("federated", ADDRESS, "viewer"))

    route = await registry.route(ALICE, team)
    assert (route.provider_id, route.remote) == ("p-1", None)
    assert route.grant.permissions == ROLES["manager"].permissions
    assert (route.grant.principal, route.grant.space_id) == (ALICE, team)
    assert (await registry.route(CAROL, team)).grant.permissions == ROLES["viewer"].permissions
    # Direct and through a group: the strongest role counts.
    assert (await registry.route(CAROL, both)).grant.permissions == ROLES["editor"].permissions
    assert (await registry.route(MARIE, team)).grant.permissions == ROLES["editor"].permissions
    with pytest.raises(NotFound, match=f"no space '{team}'"):
        await registry.route(BOB, team)

    # An OCM bearer reaches its share's space only, whatever else its address is member of.
    bearer = Principal("ocm:1", ADDRESS, "Marie", kind="guest", scope=frozenset({shared}))
    assert (await registry.route(bearer, shared)).grant.permissions == \
        ROLES["viewer"].permissions
    with pytest.raises(NotFound, match=f"no space '{team}'"):
        await registry.route(bearer, team)
    outsider = Principal("ocm:2", "anne@paris.test", "Anne", kind="guest",
                         scope=frozenset({shared}))
    with pytest.raises(NotFound, match=f"no space '{shared}'"):
        await registry.route(outsider, shared)


async def test_route_refuses_unaccepted_remote_and_disabled_spaces(
        registry: RegistryService) -> None:
    member = ("user", ALICE.id, "editor")
    remote = {"type": "remote", "provider_id": None, "remote_url": "https://z.test/dav/x",
              "remote_domain": "z.test", "remote_endpoint": "https://z.test/ocm",
              "remote_secret": "sealed"}
    pending = await add_space(registry, member, **remote, remote_state="pending")
    declined = await add_space(registry, member, **remote, remote_state="declined")
    accepted = await add_space(registry, member, **remote, remote_state="accepted")
    disabled = await add_space(registry, ("user", ALICE.id, "manager"), disabled_ms=1)
    share = await add_space(registry, member, type="share", base_space_id=disabled)

    with pytest.raises(NotFound, match="not accepted yet"):
        await registry.route(ALICE, pending)
    with pytest.raises(NotFound, match="was declined"):
        await registry.route(ALICE, declined)
    route = await registry.route(ALICE, accepted)
    assert route.provider_id is None and route.remote is not None
    assert (route.remote.space_id, route.remote.url, route.remote.domain,
            route.remote.endpoint, route.remote.secret) == (
        accepted, "https://z.test/dav/x", "z.test", "https://z.test/ocm", "sealed")
    assert route.grant.permissions == ROLES["editor"].permissions
    for closed in (disabled, share):  # also through the share of a disabled space's folder
        with pytest.raises(NotFound, match=f"space '{closed}' is disabled"):
            await registry.route(ALICE, closed)


# -- the listing ------------------------------------------------------------------------


def old_iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def old_permission(m: Member) -> dict[str, Any]:
    kind = "user" if m.type == "federated" else m.type
    identity: dict[str, Any] = {"id": m.id}
    if m.type == "federated":
        identity["@libre.graph.userType"] = "Federated"
    return {"id": m.permission_id, "roles": [ROLES[m.role].id], "grantedToV2": {kind: identity}}


def old_quota(total: int, used: int) -> dict[str, Any]:
    if not total:
        return {"used": used, "state": "normal"}
    percent = used * 100 / total
    state = ("normal" if percent <= 75 else "nearing" if percent <= 90
             else "critical" if percent < 100 else "exceeded")
    return {"total": total, "used": used, "remaining": max(total - used, 0), "state": state}


def old_drive(d: Drive) -> dict[str, Any]:
    """The Graph API's drive JSON as it was rendered before listings kept it per drive."""
    dav = f"{BASE}/dav/spaces/{d.id}"
    root: dict[str, Any] = {"id": d.root_id, "eTag": d.etag, "webDavUrl": dav,
                            "permissions": [old_permission(m) for m in d.members]}
    if d.disabled:
        root["deleted"] = {"state": "trashed"}
    if d.base_space_id:
        root["remoteItem"] = {"id": d.root_id, "name": d.name, "folder": {},
                              "parentReference": {"driveId": d.base_space_id}}
    out: dict[str, Any] = {
        "id": d.id, "driveType": d.type, "driveAlias": d.alias, "name": d.name,
        "description": d.description, "quota": old_quota(d.quota_total, d.size), "root": root,
        "webUrl": f"{BASE}/#/spaces/{d.id}", "createdDateTime": old_iso(d.created_ms),
        "lastModifiedDateTime": old_iso(d.modified_ms),
        "managers": [{"id": m.id} for m in d.members
                     if m.role == "manager" and m.type == "user"],
        "syncable": not d.disabled,
    }
    if d.type == "remote":
        out["@fedspace.remote"] = {
            "webDavUrl": d.remote_url, "state": d.remote_state,
            "sender": {"id": d.remote_sender, "displayName": d.remote_sender_name},
            "owner": {"id": d.remote_owner, "displayName": d.remote_owner_name}}
    if d.personal_user_id:
        out["owner"] = {"user": {"id": d.personal_user_id}}
    if d.image:
        out["special"] = [{"name": posixpath.basename(d.image),
                           "specialFolder": {"name": "image"},
                           "webDavUrl": f"{dav}/{quote(d.image)}"}]
    return out


async def listing(service: RegistryService, render: Renderer, p: Principal,
                  **options: Any) -> bytes:
    """What ``GET /graph/v1.0/me/drives`` answers."""
    return render.listing(await service.list_drives(p, held=render.held, **options))


async def expected(service: RegistryService, p: Principal, **options: Any) -> bytes:
    return orjson.dumps({"value": [old_drive(d) for d in
                                   await service.list_drives(p, **options)]})


async def many_drives(service: RegistryService) -> set[str]:
    """Alice's drives of every kind and shape (and some she is not a member of)."""
    ids = {await add_space(service, ("user", ALICE.id, "manager"), type="personal",
                           name="Alice", alias="personal/alice", personal_user_id=ALICE.id,
                           quota_total=1000, size=950)}
    for i in range(40):
        members = [("user", ALICE.id, ("viewer", "editor", "manager")[i % 3]),
                   ("user", BOB.id, "manager"), ("group", "g-team", "viewer")]
        if i % 4 == 0:
            members.append(("federated", ADDRESS, "editor"))
        ids.add(await add_space(service, *members, name=f"Project {i:02d}",
                                quota_total=100 * i, size=7 * i, description=f"d\u00e9 {i}",
                                modified_ms=1_700_000_000_000 + 86_400_000 * i + i))
    base = next(iter(ids))
    ids.add(await add_space(service, ("user", ALICE.id, "manager"), ("user", BOB.id, "viewer"),
                            type="share", name="papers", alias="share/papers",
                            base_space_id=base, root_path="papers"))
    ids.add(await add_space(service, ("user", ALICE.id, "manager"), ("user", BOB.id, "editor"),
                            name="Trashed", disabled_ms=1_700_000_999_000))
    ids.add(await add_space(service, ("user", ALICE.id, "editor"), name="Pictured",
                            image=".space/a b\u00e9.png"))
    ids.add(await add_space(service, ("user", ALICE.id, "editor"), type="remote",
                            provider_id=None, name="From Zurich", remote_state="accepted",
                            remote_url="https://z.test/dav/s", remote_sender="e@z.test",
                            remote_sender_name="Einstein", remote_owner="e@z.test"))
    await add_space(service, ("user", ALICE.id, "viewer"), type="remote", provider_id=None,
                    remote_state="pending", remote_url="https://z.test/dav/p")
    await add_space(service, ("user", BOB.id, "manager"), name="Not hers")
    return ids


async def test_listing_is_the_old_rendering_byte_for_byte(registry: RegistryService) -> None:
    render = Renderer(SimpleNamespace(public_url=BASE))  # type: ignore[arg-type]
    ids = await many_drives(registry)
    drives = await registry.list_drives(ALICE)
    assert [d.id for d in drives] == sorted(ids)  # by id unless asked otherwise
    roles = {d.name: d.role.name for d in drives}
    assert [roles[f"Project 0{i}"] for i in range(3)] == ["viewer", "editor", "manager"]
    assert roles["Trashed"] == "manager"  # disabled: listed to its managers only
    first = await listing(registry, render, ALICE)  # renders every drive
    assert first == await expected(registry, ALICE)
    assert await listing(registry, render, ALICE) == first  # every drive's JSON kept
    # The same JSON serves every member: Bob's listing reuses what Alice's rendered.
    assert await listing(registry, render, BOB) == await expected(registry, BOB)
    assert [d["driveType"] for d in orjson.loads(await listing(registry, render, CAROL))[
        "value"]] == ["project"] * 40  # through the group only
    for options in ({"drive_type": "remote"}, {"order_by": "name", "descending": True},
                    {"order_by": "lastModifiedDateTime"}, {"drive_type": "personal"}):
        assert await listing(registry, render, ALICE, **options) == \
            await expected(registry, ALICE, **options)


async def test_listing_follows_every_change(registry: RegistryService) -> None:
    render = Renderer(SimpleNamespace(public_url=BASE))  # type: ignore[arg-type]
    space = await add_space(registry, ("user", ALICE.id, "manager"), name="Before")
    other = await add_space(registry, ("user", ALICE.id, "manager"), name="Untouched")

    async def check() -> dict[str, dict[str, Any]]:
        got = await listing(registry, render, ALICE)
        assert got == await expected(registry, ALICE)
        return {d["id"]: d for d in orjson.loads(got)["value"]}

    await check()
    await registry.update(ALICE, space, name="After", description="new")
    assert (await check())[space]["name"] == "After"
    await registry.add_members(ALICE, space, [("user", BOB.id)], ROLES["editor"])
    assert len((await check())[space]["root"]["permissions"]) == 2
    await registry.apply_states("p-1", [pb.SpaceState(space_id=space, etag="e2", size=42,
                                                      mtime_ns=1_800_000_000_000_000_000)])
    changed = (await check())[space]
    assert (changed["root"]["eTag"], changed["quota"]["used"]) == ("e2", 42)
    await registry.disable(ALICE, space)
    assert (await check())[space]["root"]["deleted"] == {"state": "trashed"}
    assert [d["id"] for d in orjson.loads(await listing(registry, render, BOB))["value"]] == []
    assert (await check())[other]["name"] == "Untouched"


async def test_listing_stops_at_the_page_size(registry: RegistryService) -> None:
    registry.settings = RegistrySettings(max_page_size=3)
    render = Renderer(SimpleNamespace(public_url=BASE))  # type: ignore[arg-type]
    for i in range(5):
        await add_space(registry, ("user", ALICE.id, "editor"), name=f"P{i}")
    await listing(registry, render, ALICE, order_by="name")  # keeps the first three
    names = [d["name"] for d in orjson.loads(
        await listing(registry, render, ALICE, order_by="name", descending=True))["value"]]
    assert names == ["P4", "P3", "P2"]
