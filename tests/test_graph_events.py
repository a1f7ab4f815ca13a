"""Drive-change Server-Sent Events: invitations, root ETag changes, removal, resume."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx

EVENTS = "/graph/v1.0/me/drives/events"
# Bound on waiting for one event; the provider feeds root changes asynchronously.
WAIT_SECONDS = 15


class EventReader:
    """Parses a text/event-stream into {field: value} dicts, comments skipped."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.aiter_lines()

    async def next(self) -> dict[str, str]:
        fields: dict[str, str] = {}
        async for line in self.lines:
            if not line:
                if fields:
                    return fields
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
        raise AssertionError("the event stream ended")

    async def until(self, wanted: Callable[[dict[str, str]], bool]) -> dict[str, str]:
        async with asyncio.timeout(WAIT_SECONDS):
            while True:
                event = await self.next()
                if wanted(event):
                    return event


def about(kind: str, drive_id: str, check: Callable[[dict], bool] = lambda _: True
          ) -> Callable[[dict[str, str]], bool]:
    def match(event: dict[str, str]) -> bool:
        if event.get("event") != kind:
            return False
        data = json.loads(event["data"])
        return data["id"] == drive_id and check(data)
    return match


@asynccontextmanager
async def subscribe(client: httpx.AsyncClient, last_event_id: str | None = None
                    ) -> AsyncIterator[EventReader]:
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    async with client.stream("GET", EVENTS, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        reader = EventReader(response)
        async with asyncio.timeout(WAIT_SECONDS):
            assert await reader.next() == {"retry": "5000"}  # subscribed from here on
        yield reader


async def test_invite_etag_change_and_removal_reach_the_subscriber(instance) -> None:
    alice, bob = instance.client("alice"), instance.client("bob")
    bob_id = instance.users["bob"][0]
    drive = (await alice.post("/graph/v1.0/drives", json={"name": "Live"})).json()
    root = f"/graph/v1beta1/drives/{drive['id']}/root"
    async with subscribe(bob) as events:
        r = await alice.post(f"{root}/invite", json={
            "recipients": [{"objectId": bob_id}], "roles": ["editor"]})
        assert r.status_code == 200, r.text
        invited = await events.until(about("drive-changed", drive["id"]))
        data = json.loads(invited["data"])
        assert invited["id"].isdigit() and data["name"] == "Live"
        old_etag = data["root"]["eTag"]

        put = await alice.put(f"/dav/spaces/{drive['id']}/f.txt", content=b"hello")
        assert put.status_code in (201, 204), put.text
        changed = await events.until(about(
            "drive-changed", drive["id"], lambda d: d["root"]["eTag"] != old_etag))
        assert int(changed["id"]) > int(invited["id"])
        assert json.loads(changed["data"])["quota"]["used"] == 5

        assert (await alice.delete(f"{root}/permissions/u:{bob_id}")).status_code == 204
        removed = await events.until(about("drive-removed", drive["id"]))
        assert json.loads(removed["data"]) == {"id": drive["id"]}


async def test_reconnect_with_last_event_id_replays_missed_changes(instance) -> None:
    alice, bob = instance.client("alice"), instance.client("bob")
    drive = (await alice.post("/graph/v1.0/drives", json={"name": "Before"})).json()
    async with subscribe(bob) as events:
        await alice.post(f"/graph/v1beta1/drives/{drive['id']}/root/invite", json={
            "recipients": [{"objectId": instance.users["bob"][0]}], "roles": ["viewer"]})
        seen = await events.until(about("drive-changed", drive["id"]))
    bus = instance.instance.ctx.components["registry"].bus
    async with asyncio.timeout(WAIT_SECONDS):
        while bus.subscribers:  # the server notices the disconnect and unsubscribes
            await asyncio.sleep(0.02)
    # Missed while disconnected:
    r = await alice.patch(f"/graph/v1.0/drives/{drive['id']}", json={"name": "After"})
    assert r.status_code == 200
    async with subscribe(bob, seen["id"]) as events:
        replayed = await events.until(about("drive-changed", drive["id"]))
        assert json.loads(replayed["data"])["name"] == "After"
        assert int(replayed["id"]) > int(seen["id"])


async def test_disabling_hides_the_drive_from_non_managers(instance) -> None:
    alice, bob = instance.client("alice"), instance.client("bob")
    drive = (await alice.post("/graph/v1.0/drives", json={"name": "Doomed"})).json()
    await alice.post(f"/graph/v1beta1/drives/{drive['id']}/root/invite", json={
        "recipients": [{"objectId": instance.users["bob"][0]}], "roles": ["viewer"]})
    async with subscribe(bob) as events:
        assert (await alice.delete(f"/graph/v1.0/drives/{drive['id']}")).status_code == 204
        await events.until(about("drive-removed", drive["id"]))


async def test_bad_last_event_id(instance) -> None:
    r = await instance.client("bob").get(EVENTS, headers={"Last-Event-ID": "yesterday"})
    assert r.status_code == 400
    assert "Last-Event-ID 'yesterday'" in r.json()["detail"]
