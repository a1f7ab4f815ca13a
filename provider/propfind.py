"""PROPFIND/PROPPATCH multistatus writer: live properties rendered straight to strings.

Each live property is a small function from a node to escaped XML text (or None when
the property does not apply to that node, which answers 404 for it). Open/close tags are
computed once per request, so the per-entry work is string formatting only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from urllib.parse import quote
from xml.sax.saxutils import escape

from fedspace.permissions import Permission
from provider.davxml import DAV, OC, PropfindRequest, PropName, empty, propstat, response, tag
from provider.tree import Listing, Node, Quota

HREF_PREFIX = "/dav/spaces/"
UNLIMITED = "-3"  # what ownCloud answers for quota-available-bytes without a quota


@dataclass(frozen=True, slots=True)
class Context:
    """Per-request facts the live properties need besides the node itself."""

    permissions: Permission
    quota: Quota | None


Render = Callable[[Node, Context], str | None]


def href(space_id: str, path: str, is_dir: bool) -> str:
    base = f"{HREF_PREFIX}{quote(space_id, safe='')}/{quote(path)}"
    return base + "/" if is_dir and path else base


def http_date(mtime_ns: int) -> str:
    return formatdate(mtime_ns / 1e9, usegmt=True)


def oc_permissions(node: Node, granted: Permission) -> str:
    """ownCloud permission letters: D delete, NV rename/move, W write, CK create inside."""
    letters = ""
    if node.path:
        letters += "D" if Permission.DELETE in granted else ""
        letters += "NV" if Permission.MOVE in granted else ""
    if node.is_dir:
        letters += "C" if Permission.UPLOAD in granted else ""
        letters += "K" if Permission.CREATE_FOLDER in granted else ""
    elif Permission.UPLOAD in granted:
        letters += "W"
    return letters


def _checksums(node: Node, _: Context) -> str | None:
    if node.is_dir or not node.checksum_sha1:
        return None
    return (f"<oc:checksum>SHA1:{node.checksum_sha1} MD5:{node.checksum_md5} "
            f"ADLER32:{node.checksum_adler32}</oc:checksum>")


def _available(node: Node, ctx: Context) -> str | None:
    if not node.is_dir or ctx.quota is None:
        return None
    if not ctx.quota.total:
        return UNLIMITED
    return str(max(ctx.quota.total - ctx.quota.used, 0))


LIVE: dict[PropName, Render] = {
    (DAV, "resourcetype"): lambda n, _: "<d:collection/>" if n.is_dir else "",
    (DAV, "getetag"): lambda n, _: f'"{n.etag}"',
    (DAV, "getlastmodified"): lambda n, _: http_date(n.mtime_ns),
    (DAV, "getcontentlength"): lambda n, _: None if n.is_dir else str(n.size),
    (DAV, "getcontenttype"): lambda n, _: None if n.is_dir else escape(
        n.content_type or "application/octet-stream"),
    (DAV, "quota-used-bytes"): lambda n, _: str(n.size) if n.is_dir else None,
    (DAV, "quota-available-bytes"): _available,
    (OC, "id"): lambda n, _: escape(n.id),
    (OC, "fileid"): lambda n, _: escape(n.id),
    (OC, "permissions"): lambda n, c: oc_permissions(n, c.permissions),
    (OC, "size"): lambda n, _: str(n.size),
    (OC, "checksums"): _checksums,
}
QUOTA_PROPS = frozenset({(DAV, "quota-used-bytes"), (DAV, "quota-available-bytes")})
PROTECTED = frozenset(LIVE) | {
    (DAV, name) for name in ("creationdate", "lockdiscovery", "supportedlock")}

OK = "200 OK"
NOT_FOUND = "404 Not Found"


def needs_dead(request: PropfindRequest) -> bool:
    return request.mode != "prop" or any(p not in LIVE for p in request.props)


def needs_quota(request: PropfindRequest) -> bool:
    return request.mode != "prop" or any(p in QUOTA_PROPS for p in request.props)


def render_listing(
    space_id: str, listing: Listing, request: PropfindRequest, ctx: Context
) -> list[str]:
    """One <d:response> per node: the target first, then its children."""
    entries = [listing.node, *listing.children]
    if request.mode == "prop":
        wanted = [(p, LIVE.get(p), *tag(p)) for p in request.props]
        return [_requested(space_id, n, listing.dead.get(n.id, NO_DEAD), wanted, ctx)
                for n in entries]
    live = [(p, LIVE[p], *tag(p)) for p in LIVE]
    if request.mode == "propname":
        return [_names(space_id, n, listing.dead.get(n.id, NO_DEAD), live, ctx) for n in entries]
    return [_all(space_id, n, listing.dead.get(n.id, NO_DEAD), live, ctx) for n in entries]


Wanted = list[tuple[PropName, Render | None, str, str]]
Dead = dict[PropName, str]
NO_DEAD: Dead = {}


def _requested(space_id: str, node: Node, dead: Dead, wanted: Wanted, ctx: Context) -> str:
    found: list[str] = []
    missing: list[str] = []
    for prop, render, opening, closing in wanted:
        value = render(node, ctx) if render is not None else None
        if value is not None:
            found.append(f"{opening}{value}{closing}")
        elif prop in dead:
            found.append(dead[prop])
        else:
            missing.append(empty(prop))
    stats = propstat("".join(found), OK) if found else ""
    if missing:
        stats += propstat("".join(missing), NOT_FOUND)
    return response(href(space_id, node.path, node.is_dir), stats)


def _all(space_id: str, node: Node, dead: Dead, live: Wanted, ctx: Context) -> str:
    parts = []
    for _, render, opening, closing in live:
        value = render(node, ctx)  # type: ignore[misc]  # live props always render
        if value is not None:
            parts.append(f"{opening}{value}{closing}")
    parts.extend(dead.values())
    return response(href(space_id, node.path, node.is_dir), propstat("".join(parts), OK))


def _names(space_id: str, node: Node, dead: Dead, live: Wanted, ctx: Context) -> str:
    names = [empty(p) for p, render, _, _ in live
             if render is not None and render(node, ctx) is not None]
    names.extend(empty(p) for p in dead)
    return response(href(space_id, node.path, node.is_dir), propstat("".join(names), OK))
