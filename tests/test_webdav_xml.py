"""Hostile XML bodies (DTDs, entity expansion, external entities) are refused with 400."""

from pathlib import Path

import pytest
from dav_fixtures import BASE, dav_env

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<d:propfind xmlns:d="DAV:"><d:prop><d:x>&lol3;</d:x></d:prop></d:propfind>"""

XXE_TEMPLATE = """<?xml version="1.0"?>
<!DOCTYPE d [<!ENTITY xxe SYSTEM "file://{path}">]>
<d:propertyupdate xmlns:d="DAV:" xmlns:e="urn:e"><d:set><d:prop><e:leak>&xxe;</e:leak>
</d:prop></d:set></d:propertyupdate>"""

DOCTYPE_ONLY = b"""<?xml version="1.0"?><!DOCTYPE propfind>
<d:propfind xmlns:d="DAV:"><d:allprop/></d:propfind>"""


@pytest.fixture
async def dav(tmp_path: Path):  # type: ignore[no-untyped-def]
    async with dav_env(tmp_path) as env:
        await env.put("f.txt")
        yield env


@pytest.mark.parametrize("body", [BILLION_LAUGHS, DOCTYPE_ONLY])
async def test_propfind_with_dtd_is_400(dav, body: bytes) -> None:
    r = await dav.client.request("PROPFIND", f"{BASE}/", headers={"Depth": "0"},
                                 content=body)
    assert r.status_code == 400
    assert "lol" not in r.text


async def test_xxe_in_proppatch_is_400_and_stores_nothing(dav, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    r = await dav.client.request("PROPPATCH", f"{BASE}/f.txt",
                                 content=XXE_TEMPLATE.format(path=secret).encode())
    assert r.status_code == 400
    assert "TOP-SECRET" not in r.text
    r = await dav.client.request("PROPFIND", f"{BASE}/f.txt", headers={"Depth": "0"})
    assert "TOP-SECRET" not in r.text and "leak" not in r.text


async def test_error_body_shape(dav) -> None:
    r = await dav.client.request("PROPFIND", f"{BASE}/", headers={"Depth": "0"},
                                 content=b"<broken")
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("application/xml")
    assert '<d:error xmlns:d="DAV:" xmlns:s="http://sabredav.org/ns">' in r.text
    assert "<s:exception>Sabre\\DAV\\Exception\\BadRequest</s:exception>" in r.text
    assert "Traceback" not in r.text
