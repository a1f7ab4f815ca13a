"""PROPPATCH: dead properties set/remove, protected live properties, atomicity."""

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from dav_fixtures import BASE, dav_env

NS = "http://example.com/ns"


@pytest.fixture
async def dav(tmp_path: Path, database_url: str):  # type: ignore[no-untyped-def]
    async with dav_env(tmp_path, database_url=database_url) as env:
        await env.put("f.txt")
        yield env


def update(*actions: str) -> bytes:
    return (f'<d:propertyupdate xmlns:d="DAV:" xmlns:e="{NS}">' + "".join(actions)
            + "</d:propertyupdate>").encode()


def set_(*props: str) -> str:
    return "<d:set><d:prop>" + "".join(props) + "</d:prop></d:set>"


def remove(*props: str) -> str:
    return "<d:remove><d:prop>" + "".join(props) + "</d:prop></d:remove>"


async def get_props(dav, *names: str) -> str:  # type: ignore[no-untyped-def]
    body = (f'<d:propfind xmlns:d="DAV:" xmlns:e="{NS}"><d:prop>' + "".join(names)
            + "</d:prop></d:propfind>").encode()
    r = await dav.client.request("PROPFIND", f"{BASE}/f.txt", headers={"Depth": "0"},
                                 content=body)
    assert r.status_code == 207
    return r.text


async def test_set_and_read_back(dav) -> None:
    r = await dav.client.request("PROPPATCH", f"{BASE}/f.txt", content=update(
        set_("<e:color>blue</e:color>", '<e:rich><x xmlns="urn:y">a&amp;b</x></e:rich>',
             "<e:uni>\U00010000é</e:uni>")))
    assert r.status_code == 207
    assert "HTTP/1.1 200 OK" in r.text
    text = await get_props(dav, "<e:color/>", "<e:rich/>", "<e:uni/>")
    assert "404" not in text
    props = ET.fromstring(text).find("{DAV:}response/{DAV:}propstat/{DAV:}prop")
    assert props.findtext(f"{{{NS}}}color") == "blue"
    assert props.findtext(f"{{{NS}}}rich/{{urn:y}}x") == "a&b"  # nested XML kept
    assert props.findtext(f"{{{NS}}}uni") == "\U00010000é"


async def test_remove(dav) -> None:
    await dav.client.request("PROPPATCH", f"{BASE}/f.txt",
                             content=update(set_("<e:color>blue</e:color>")))
    r = await dav.client.request("PROPPATCH", f"{BASE}/f.txt",
                                 content=update(remove("<e:color/>", "<e:never-set/>")))
    assert r.status_code == 207 and "200 OK" in r.text
    text = await get_props(dav, "<e:color/>")
    assert "404 Not Found" in text and "blue" not in text


async def test_set_then_remove_in_one_request_applies_in_order(dav) -> None:
    await dav.client.request("PROPPATCH", f"{BASE}/f.txt", content=update(
        set_("<e:a>1</e:a>"), remove("<e:a/>"), set_("<e:b>2</e:b>")))
    text = await get_props(dav, "<e:a/>", "<e:b/>")
    assert ">2<" in text and ">1<" not in text


async def test_protected_property_fails_everything(dav) -> None:
    r = await dav.client.request("PROPPATCH", f"{BASE}/f.txt", content=update(
        set_("<e:color>red</e:color>", "<d:getetag>fake</d:getetag>")))
    assert r.status_code == 207
    assert "403 Forbidden" in r.text and "424 Failed Dependency" in r.text
    text = await get_props(dav, "<e:color/>")
    assert "red" not in text  # nothing was applied


async def test_errors(dav) -> None:
    assert (await dav.client.request("PROPPATCH", f"{BASE}/ghost", content=update(
        set_("<e:a>1</e:a>")))).status_code == 404
    assert (await dav.client.request("PROPPATCH", f"{BASE}/f.txt",
                                     content=b"<nope/>")).status_code == 400
    assert (await dav.client.request("PROPPATCH", f"{BASE}/f.txt", content=update(
        set_("<e:a>1</e:a>")), headers={"X-Role": "viewer"})).status_code == 403
    assert "1<" not in await get_props(dav, "<e:a/>")


async def test_dead_props_follow_move_and_copy(dav) -> None:
    await dav.client.request("PROPPATCH", f"{BASE}/f.txt",
                             content=update(set_("<e:color>green</e:color>")))
    await dav.client.request("COPY", f"{BASE}/f.txt", headers={"Destination": f"{BASE}/g"})
    await dav.client.request("MOVE", f"{BASE}/f.txt", headers={"Destination": f"{BASE}/h"})
    for name in ("g", "h"):
        r = await dav.client.request("PROPFIND", f"{BASE}/{name}", headers={"Depth": "0"})
        assert "green" in r.text, name
