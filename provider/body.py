"""GET bodies of blobs: few worker-thread calls, big reads.

Starlette's ``FileResponse`` stats, opens, reads (64 KiB at a time) and closes the file in
separate worker-thread calls, each a GIL hand-off that a busy event loop makes slow. A blob
never changes once written, so one call can open it, fstat it and read a body of up to
``CHUNK`` bytes whole; once open, the file stays readable even if an overwrite or a delete
unlinks it meanwhile. A larger body streams on in ``CHUNK`` reads, one call each, so the
event loop hands the transport few, large writes.
"""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import anyio.to_thread
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

CHUNK = 1024 * 1024  # bytes per read; bodies up to this size are read whole, in one call


@dataclass(slots=True)
class OpenBlob:
    """An opened blob and its first ``CHUNK`` bytes; ``file`` is None once it was all read."""

    size: int
    head: bytes
    file: io.FileIO | None


def open_blob(path: Path) -> OpenBlob:
    """Open, fstat and read the start of ``path`` (one blocking call for a worker thread).
    Raises FileNotFoundError when the blob is gone."""
    file = open(path, "rb", buffering=0)  # noqa: SIM115 -- the response closes it
    try:
        size = os.fstat(file.fileno()).st_size
        head = file.read(min(size, CHUNK))
        if len(head) >= size:
            file.close()
            return OpenBlob(size, head, None)
        return OpenBlob(size, head, file)
    except BaseException:
        file.close()
        raise


def blob_response(blob: OpenBlob, headers: Mapping[str, str], media_type: str) -> Response:
    """The 200 answer to a GET without Range, with FileResponse's headers (ETag and
    Last-Modified come in ``headers``)."""
    sent = {**headers, "Accept-Ranges": "bytes"}
    if blob.file is None:
        return Response(blob.head, headers=sent, media_type=media_type)
    sent["Content-Length"] = str(blob.size)
    return BlobStream(_rest(blob.head, blob.size, blob.file), blob.file, sent, media_type)


class RangeFileResponse(FileResponse):
    """FileResponse (Range, If-Range, HEAD) reading ``CHUNK`` bytes per thread call."""

    chunk_size = CHUNK


class BlobStream(StreamingResponse):
    """A body larger than ``CHUNK``. StreamingResponse stops reading when the client
    disconnects; the file is closed when the response ends, however it ends."""

    def __init__(self, body: AsyncIterator[bytes], file: io.FileIO,
                 headers: Mapping[str, str], media_type: str) -> None:
        super().__init__(body, headers=headers, media_type=media_type)
        self.file = file

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A read in a worker thread is not abandoned when an anyio scope cancels it, so
        # nothing reads the file once this returns or raises.
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.file.close()


async def _rest(head: bytes, size: int, file: io.FileIO) -> AsyncIterator[bytes]:
    """``head``, then the rest of the open file in ``CHUNK`` reads, one thread call each."""
    yield head
    left = size - len(head)
    while left > 0:
        chunk = await anyio.to_thread.run_sync(file.read, min(CHUNK, left))
        if not chunk:
            raise RuntimeError(f"{file.name} is shorter than its size")
        left -= len(chunk)
        yield chunk
