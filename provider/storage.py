"""Blob storage: file content on disk, addressed by random ids, one blob per file version.

Blobs are immutable: an overwrite writes a new blob and the tree swaps ids in one
transaction, so a reader never sees a half-written file and COPY can hard-link. Uploads
stream into ``{space}/tmp`` (same filesystem as the blobs, so the final rename is atomic)
and are fsynced before they become visible; any failure or cancellation removes the
temporary file, and ``sweep_temp`` clears what a crash left behind.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import zlib
from collections.abc import AsyncIterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

import anyio.to_thread

CHUNK = 1024 * 1024  # bytes handed to the writer thread at a time


@dataclass(frozen=True, slots=True)
class BlobInfo:
    blob_id: str
    size: int
    sha1: str
    md5: str
    adler32: str


class BlobTooLarge(Exception):
    """The stream went past the caller's byte limit; nothing was stored."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"content exceeds {limit} bytes")
        self.limit = limit


class StorageDriver(Protocol):
    async def write_blob(
        self, space_id: str, chunks: AsyncIterable[bytes], limit: int | None = None
    ) -> BlobInfo: ...

    def blob_path(self, space_id: str, blob_id: str) -> Path: ...

    async def copy_blob(self, space_id: str, blob_id: str) -> str: ...

    async def delete_blob(self, space_id: str, blob_id: str) -> None: ...

    async def delete_space(self, space_id: str) -> None: ...

    async def sweep_temp(self) -> int: ...


class _Digests:
    """Size and checksums computed while the content streams through once."""

    def __init__(self) -> None:
        self.size = 0
        self.sha1 = hashlib.sha1(usedforsecurity=False)
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.adler = 1

    def write(self, fh: IO[bytes], data: bytes) -> None:
        fh.write(data)
        self.sha1.update(data)
        self.md5.update(data)
        self.adler = zlib.adler32(data, self.adler)
        self.size += len(data)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: Path) -> None:
    path.unlink(missing_ok=True)


class PosixDriver:
    """Blobs as plain files under ``{root}/{space_id}/blobs/{id[:2]}/{id}``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def blob_path(self, space_id: str, blob_id: str) -> Path:
        return self.root / space_id / "blobs" / blob_id[:2] / blob_id

    def _temp_dir(self, space_id: str) -> Path:
        return self.root / space_id / "tmp"

    def _new_temp(self, space_id: str) -> tuple[Path, IO[bytes]]:
        tmp_dir = self._temp_dir(space_id)
        tmp_dir.mkdir(parents=True, exist_ok=True)
        path = tmp_dir / f"{secrets.token_hex(16)}.part"
        return path, open(path, "xb")  # closed by write_blob

    def _publish(self, space_id: str, tmp: Path) -> str:
        """Rename a fsynced temp file into place under a fresh id, durably."""
        blob_id = secrets.token_hex(16)
        final = self.blob_path(space_id, blob_id)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)
        _fsync_dir(final.parent)
        return blob_id

    async def write_blob(
        self, space_id: str, chunks: AsyncIterable[bytes], limit: int | None = None
    ) -> BlobInfo:
        """Stream ``chunks`` into a new blob; raises BlobTooLarge past ``limit`` bytes."""
        tmp, fh = await anyio.to_thread.run_sync(self._new_temp, space_id)
        digests = _Digests()
        try:
            buffer = bytearray()
            async for chunk in chunks:
                if limit is not None and digests.size + len(buffer) + len(chunk) > limit:
                    raise BlobTooLarge(limit)
                buffer += chunk
                if len(buffer) >= CHUNK:
                    # anyio shields the thread call: cancellation waits for the write,
                    # so the file is never closed under a running writer.
                    await anyio.to_thread.run_sync(digests.write, fh, bytes(buffer))
                    buffer.clear()
            if buffer:
                await anyio.to_thread.run_sync(digests.write, fh, bytes(buffer))
            await anyio.to_thread.run_sync(_flush_and_sync, fh)
            fh.close()
            blob_id = await anyio.to_thread.run_sync(self._publish, space_id, tmp)
        except BaseException:
            # Runs on errors, client disconnects and task cancellation alike: two cheap
            # syscalls done inline so a cancelled task cannot skip them.
            fh.close()
            _unlink_quietly(tmp)
            raise
        return BlobInfo(
            blob_id=blob_id,
            size=digests.size,
            sha1=digests.sha1.hexdigest(),
            md5=digests.md5.hexdigest(),
            adler32=f"{digests.adler:08x}",
        )

    def _copy(self, space_id: str, blob_id: str) -> str:
        source = self.blob_path(space_id, blob_id)
        tmp_dir = self._temp_dir(space_id)
        tmp_dir.mkdir(parents=True, exist_ok=True)
        tmp = tmp_dir / f"{secrets.token_hex(16)}.part"
        try:
            try:
                os.link(source, tmp)  # blobs never change, so sharing the inode is safe
            except OSError:
                with open(source, "rb") as src, open(tmp, "xb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
                    _flush_and_sync(dst)
            return self._publish(space_id, tmp)
        except BaseException:
            _unlink_quietly(tmp)
            raise

    async def copy_blob(self, space_id: str, blob_id: str) -> str:
        """A new blob with the same content (for COPY); returns its id."""
        return await anyio.to_thread.run_sync(self._copy, space_id, blob_id)

    async def delete_blob(self, space_id: str, blob_id: str) -> None:
        await anyio.to_thread.run_sync(_unlink_quietly, self.blob_path(space_id, blob_id))

    async def delete_space(self, space_id: str) -> None:
        await anyio.to_thread.run_sync(
            lambda: shutil.rmtree(self.root / space_id, ignore_errors=True)
        )

    def _sweep(self) -> int:
        removed = 0
        if not self.root.is_dir():
            return 0
        for tmp in self.root.glob("*/tmp/*.part"):
            _unlink_quietly(tmp)
            removed += 1
        return removed

    async def sweep_temp(self) -> int:
        """Remove uploads a crash interrupted; run once at startup, before serving."""
        return await anyio.to_thread.run_sync(self._sweep)


def _flush_and_sync(fh: IO[bytes]) -> None:
    fh.flush()
    os.fsync(fh.fileno())
