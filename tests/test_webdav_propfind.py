"""PROPFIND: depths, requested/unknown properties, ownCloud properties, quota, hrefs."""

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from dav_fixtures import BASE, dav_env, multistatus_hrefs

D = "{DAV:}"
OC = "{http://owncloud.org/ns}"


@pytest.fixture
async def dav(tmp_path: Path, database_url: str):  # type: ignore[no-untyped-def]
    async with dav_env(tmp_path, quota=1000, database_url=database_url) as env:
        yield env


def propfind_body(*props: str) -> bytes:
    inner = "".join(props)
    return (f'<d:propfind xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns">'
            f"<d:prop>{inner}</d:prop></d:propfind>").encode()


def responses(body: bytes) -> dict[str, ET.Element]:
    root = ET.fromstring(body)
    assert root.tag == D + "multistatus"
    return {r.findtext(D + "href"): r for r in root.findall(D + "response")}


def prop(response: ET.Element, name: str, status: str = "200") -> ET.Element | None:
    for ps in response.findall(D + "propstat"):
        if status in (ps.findtext(D + "status") or ""):
            found = ps.find(f"{D}prop/{name}")
            if found is not None:
                return found
    return None


async def test_depth_1_lists_children_with_hrefs(dav) -> None:
    await dav.mkcol("dir")
    await dav.put("dir/a b.txt", b"12345")
    await dav.put("dir/ünï.txt", b"1")
    await dav.mkcol("dir/sub")
    r = await dav.client.request("PROPFIND", f"{BASE}/dir", headers={"Depth": "1"})
    assert r.status_code == 207
    assert r.headers["content-type"].startswith("application/xml")
    assert sorted(multistatus_hrefs(r.content)) == sorted([
        "/dav/spaces/s1/dir/", "/dav/spaces/s1/dir/a%20b.txt", "/dav/spaces/s1/dir/sub/",
        "/dav/spaces/s1/dir/%C3%BCn%C3%AF.txt"])
    res = responses(r.content)
    folder = res["/dav/spaces/s1/dir/"]
    assert prop(folder, D + "resourcetype").find(D + "collection") is not None
    assert prop(folder, OC + "size").text == "6"
    file = res["/dav/spaces/s1/dir/a%20b.txt"]
    assert prop(file, D + "getcontentlength").text == "5"
    assert prop(file, D + "resourcetype").find(D + "collection") is None
    node = await dav.node("dir/a b.txt")
    assert prop(file, D + "getetag").text == f'"{node.etag}"'
    assert prop(file, OC + "fileid").text == node.id


async def test_depth_0_only_target(dav) -> None:
    await dav.mkcol("dir")
    await dav.put("dir/f")
    r = await dav.client.request("PROPFIND", f"{BASE}/dir/", headers={"Depth": "0"})
    assert multistatus_hrefs(r.content) == ["/dav/spaces/s1/dir/"]


async def test_depth_infinity_refused_on_folders(dav) -> None:
    r = await dav.client.request("PROPFIND", f"{BASE}/")  # no Depth = infinity
    assert r.status_code == 403
    assert "propfind-finite-depth" in r.text
    r = await dav.client.request("PROPFIND", f"{BASE}/", headers={"Depth": "infinity"})
    assert r.status_code == 403
    assert (await dav.client.request("PROPFIND", f"{BASE}/", headers={"Depth": "2"})
            ).status_code == 400


async def test_missing_resource_404(dav) -> None:
    r = await dav.client.request("PROPFIND", f"{BASE}/ghost", headers={"Depth": "0"})
    assert r.status_code == 404


async def test_requested_and_unknown_props(dav) -> None:
    await dav.put("f.txt", b"abc")
    body = propfind_body("<d:getcontentlength/>", "<oc:checksums/>", "<oc:permissions/>",
                         '<x:nope xmlns:x="urn:example"/>', "<d:quota-used-bytes/>")
    r = await dav.client.request("PROPFIND", f"{BASE}/f.txt", headers={"Depth": "0"},
                                 content=body)
    res = responses(r.content)["/dav/spaces/s1/f.txt"]
    assert prop(res, D + "getcontentlength").text == "3"
    checksum = prop(res, OC + "checksums").find(OC + "checksum").text
    assert checksum == ("SHA1:a9993e364706816aba3e25717850c26c9cd0d89d "
                        "MD5:900150983cd24fb0d6963f7d28e17f72 ADLER32:024d0127")
    assert prop(res, OC + "permissions").text == "DNVW"
    assert prop(res, "{urn:example}nope", "404") is not None
    assert prop(res, D + "quota-used-bytes", "404") is not None  # folders only
    assert prop(res, "{urn:example}nope", "200") is None


async def test_quota_props(dav) -> None:
    await dav.put("f.txt", b"x" * 100)
    body = propfind_body("<d:quota-used-bytes/>", "<d:quota-available-bytes/>")
    r = await dav.client.request("PROPFIND", f"{BASE}/", headers={"Depth": "0"},
                                 content=body)
    res = responses(r.content)["/dav/spaces/s1/"]
    assert prop(res, D + "quota-used-bytes").text == "100"
    assert prop(res, D + "quota-available-bytes").text == "900"


async def test_unlimited_quota_is_minus_3(tmp_path: Path) -> None:
    async with dav_env(tmp_path, quota=0) as env:
        r = await env.client.request(
            "PROPFIND", f"{BASE}/", headers={"Depth": "0"},
            content=propfind_body("<d:quota-available-bytes/>"))
        res = responses(r.content)["/dav/spaces/s1/"]
        assert prop(res, D + "quota-available-bytes").text == "-3"


async def test_allprop_and_propname(dav) -> None:
    await dav.put("f.txt")
    allprop = b'<d:propfind xmlns:d="DAV:"><d:allprop/></d:propfind>'
    r = await dav.client.request("PROPFIND", f"{BASE}/f.txt", headers={"Depth": "0"},
                                 content=allprop)
    res = responses(r.content)["/dav/spaces/s1/f.txt"]
    assert prop(res, D + "getetag") is not None and prop(res, OC + "id") is not None
    empty = await dav.client.request("PROPFIND", f"{BASE}/f.txt", headers={"Depth": "0"})
    assert responses(empty.content).keys() == responses(r.content).keys()
    names = b'<d:propfind xmlns:d="DAV:"><d:propname/></d:propfind>'
    r = await dav.client.request("PROPFIND", f"{BASE}/f.txt", headers={"Depth": "0"},
                                 content=names)
    getetag = prop(responses(r.content)["/dav/spaces/s1/f.txt"], D + "getetag")
    assert getetag is not None and not getetag.text


async def test_permissions_follow_the_role(dav) -> None:
    await dav.mkcol("dir")
    body = propfind_body("<oc:permissions/>")
    r = await dav.client.request("PROPFIND", f"{BASE}/dir", headers={"Depth": "0",
                                 "X-Role": "viewer"}, content=body)
    assert prop(responses(r.content)["/dav/spaces/s1/dir/"], OC + "permissions").text in (
        "", None)
    r = await dav.client.request("PROPFIND", f"{BASE}/dir", headers={"Depth": "0"},
                                 content=body)
    assert prop(responses(r.content)["/dav/spaces/s1/dir/"], OC + "permissions").text == (
        "DNVCK")


async def test_bad_bodies_400(dav) -> None:
    for body in (b"<d:propfind xmlns:d='DAV:'><d:prop>", b"<notdav/>",
                 b'<d:propfind xmlns:d="DAV:"/>',
                 b'<D:propfind xmlns:D="DAV:"><D:prop><bar:foo xmlns:bar=""/></D:prop>'
                 b"</D:propfind>"):
        r = await dav.client.request("PROPFIND", f"{BASE}/", headers={"Depth": "0"},
                                     content=body)
        assert r.status_code == 400, body


async def test_large_listing(dav) -> None:
    await dav.mkcol("many")
    for i in range(120):
        await dav.put(f"many/f{i:03}", b"x")
    r = await dav.client.request("PROPFIND", f"{BASE}/many/", headers={"Depth": "1"})
    hrefs = multistatus_hrefs(r.content)
    assert len(hrefs) == 121
    assert "/dav/spaces/s1/many/f119" in hrefs
