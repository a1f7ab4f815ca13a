"""WebDAV XML in and out: safe request parsing and string-built responses.

Requests are parsed with defusedxml with DTDs, entities and external references
forbidden, so billion-laughs and XXE bodies are plain 400s. Responses are built from
string templates (no element tree per entry), which keeps a 1,000-entry multistatus
to string joins.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET  # serialising only; parsing goes through defusedxml
from dataclasses import dataclass, field
from typing import Literal
from xml.sax.saxutils import escape, quoteattr

import defusedxml.ElementTree as SafeET
from defusedxml.common import DefusedXmlException

from provider.treeerrors import BadRequest

DAV = "DAV:"
OC = "http://owncloud.org/ns"
NC = "http://nextcloud.org/ns"
SABRE = "http://sabredav.org/ns"
PREFIXES = {DAV: "d", OC: "oc", NC: "nc"}
ROOT_NS = 'xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns" xmlns:nc="http://nextcloud.org/ns"'
XML_DECL = '<?xml version="1.0" encoding="utf-8"?>\n'

PropName = tuple[str, str]  # (namespace, local name); namespace "" for none


def parse(body: bytes) -> ET.Element:
    try:
        return SafeET.fromstring(
            body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (ET.ParseError, DefusedXmlException, ValueError):
        raise BadRequest("the request body is not acceptable XML") from None


def split_tag(tag: str) -> PropName:
    if tag.startswith("{"):
        namespace, _, name = tag[1:].partition("}")
        return namespace, name
    return "", tag


@dataclass(slots=True)
class PropfindRequest:
    mode: Literal["allprop", "propname", "prop"]
    props: list[PropName] = field(default_factory=list)


def parse_propfind(body: bytes) -> PropfindRequest:
    """An empty body means allprop (RFC 4918 §9.1)."""
    if not body.strip():
        return PropfindRequest("allprop")
    root = parse(body)
    if split_tag(root.tag) != (DAV, "propfind"):
        raise BadRequest("expected a DAV:propfind element")
    for child in root:
        kind = split_tag(child.tag)
        if kind == (DAV, "allprop"):
            return PropfindRequest("allprop")
        if kind == (DAV, "propname"):
            return PropfindRequest("propname")
        if kind == (DAV, "prop"):
            return PropfindRequest("prop", [split_tag(p.tag) for p in child])
    raise BadRequest("propfind needs allprop, propname or prop")


def parse_proppatch(body: bytes) -> list[tuple[str, str, str | None]]:
    """Set/remove instructions in document order: (namespace, name, XML or None)."""
    root = parse(body)
    if split_tag(root.tag) != (DAV, "propertyupdate"):
        raise BadRequest("expected a DAV:propertyupdate element")
    ops: list[tuple[str, str, str | None]] = []
    for action in root:
        kind = split_tag(action.tag)
        if kind not in ((DAV, "set"), (DAV, "remove")):
            raise BadRequest("propertyupdate may only contain set and remove")
        for prop in action:
            if split_tag(prop.tag) != (DAV, "prop"):
                raise BadRequest("set and remove must contain DAV:prop")
            for element in prop:
                namespace, name = split_tag(element.tag)
                ops.append((namespace, name,
                            serialize(element) if kind == (DAV, "set") else None))
    if not ops:
        raise BadRequest("propertyupdate changes nothing")
    return ops


def serialize(element: ET.Element) -> str:
    """The element as self-contained XML (namespaces declared inline), without its tail."""
    element.tail = None
    return ET.tostring(element, encoding="unicode")


def tag(prop: PropName) -> tuple[str, str]:
    """Opening and closing tag text for a property, declaring unknown namespaces inline."""
    namespace, name = prop
    prefix = PREFIXES.get(namespace)
    if prefix is not None:
        return f"<{prefix}:{name}>", f"</{prefix}:{name}>"
    if namespace == "":
        return f"<{name}>", f"</{name}>"
    return f"<x:{name} xmlns:x={quoteattr(namespace)}>", f"</x:{name}>"


def empty(prop: PropName) -> str:
    opening, _ = tag(prop)
    return opening[:-1] + "/>"


def multistatus(responses: list[str]) -> bytes:
    return (f"{XML_DECL}<d:multistatus {ROOT_NS}>"
            + "".join(responses) + "</d:multistatus>").encode()


def propstat(props: str, status: str) -> str:
    return (f"<d:propstat><d:prop>{props}</d:prop>"
            f"<d:status>HTTP/1.1 {status}</d:status></d:propstat>")


def response(href: str, propstats: str) -> str:
    return f"<d:response><d:href>{escape(href)}</d:href>{propstats}</d:response>"


def error_body(exception: str, message: str, condition: str | None = None) -> bytes:
    """An RFC 4918 error body with the human text the way sabre/oCIS put it."""
    cond = f"<d:{condition}/>" if condition else ""
    return (f'{XML_DECL}<d:error xmlns:d="DAV:" xmlns:s="{SABRE}">{cond}'
            f"<s:exception>{escape(exception)}</s:exception>"
            f"<s:message>{escape(message)}</s:message></d:error>").encode()
