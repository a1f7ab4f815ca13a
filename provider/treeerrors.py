"""Failures of tree operations, each carrying the WebDAV status it maps to.

The tree knows *why* an operation failed (missing parent, quota, precondition); the
status and sabre-style exception name let the DAV layer answer without a lookup table.
"""

from __future__ import annotations

import re


class TreeError(Exception):
    status = 500
    exception = "Sabre\\DAV\\Exception"

    def __init__(self, message: str, condition: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.condition = condition  # RFC 4918 condition element, e.g. "propfind-finite-depth"


class BadRequest(TreeError):
    status = 400
    exception = "Sabre\\DAV\\Exception\\BadRequest"


class PathTooLong(TreeError):
    status = 414
    exception = "Sabre\\DAV\\Exception\\BadRequest"


class Forbidden(TreeError):
    status = 403
    exception = "Sabre\\DAV\\Exception\\Forbidden"


class NotFound(TreeError):
    status = 404
    exception = "Sabre\\DAV\\Exception\\NotFound"


class NotAllowed(TreeError):
    status = 405
    exception = "Sabre\\DAV\\Exception\\MethodNotAllowed"


class Conflict(TreeError):
    status = 409
    exception = "Sabre\\DAV\\Exception\\Conflict"


class PreconditionFailed(TreeError):
    status = 412
    exception = "Sabre\\DAV\\Exception\\PreconditionFailed"


class TooLarge(TreeError):
    status = 413
    exception = "Sabre\\DAV\\Exception\\RequestEntityTooLarge"


class UnsupportedMediaType(TreeError):
    status = 415
    exception = "Sabre\\DAV\\Exception\\UnsupportedMediaType"


class QuotaExceeded(TreeError):
    status = 507
    exception = "Sabre\\DAV\\Exception\\InsufficientStorage"


class BadGateway(TreeError):
    status = 502
    exception = "Sabre\\DAV\\Exception\\BadGateway"


MAX_PATH_BYTES = 2000
MAX_NAME_BYTES = 255
_FORBIDDEN_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")


def clean_path(path: str) -> str:
    """The canonical form of a decoded path inside a space ('' = root), or BadRequest.

    Strict on purpose: every segment must be a plain name, so no decoding trick
    (``%2e%2e``, ``%2f``, ``\\``, NUL) can leave the space or alias another node.
    One trailing slash is accepted because clients address folders with it.
    """
    try:
        size = len(path.encode("utf-8"))
    except UnicodeEncodeError:
        raise BadRequest("path is not valid UTF-8") from None
    if size > MAX_PATH_BYTES:
        raise PathTooLong(f"path longer than {MAX_PATH_BYTES} bytes")
    if path.startswith("/"):
        raise BadRequest("absolute paths are not allowed")
    if path.endswith("/"):
        path = path[:-1]
    if path == "":
        return ""
    for segment in path.split("/"):
        check_name(segment)
    return path


def check_name(name: str) -> None:
    if name in ("", ".", ".."):
        raise BadRequest("empty, '.' and '..' path segments are not allowed")
    if _FORBIDDEN_CHARS.search(name):
        raise BadRequest("path contains a backslash or a control character")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise BadRequest(f"name longer than {MAX_NAME_BYTES} bytes")
    if "/" in name:
        raise BadRequest("encoded slashes are not allowed in names")
