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

    def write(self, fh: IO[bytes], chunks: list[bytes]) -> None:
        # Chunk by chunk, each still in the CPU cache for the next pass; hashlib releases
        # the GIL for all but tiny chunks, so the event loop runs meanwhile.
        for data in chunks:
            fh.write(data)
            self.sha1.update(data)
            self.md5.update(data)
            self.adler = zlib.adler32(data, self.adler)
            self.size += len(data)

    def info(self, blob_id: str) -> BlobInfo:
        return BlobInfo(blob_id=blob_id, size=self.size, sha1=self.sha1.hexdigest(),
                        md5=self.md5.hexdigest(), adler32=f"{self.adler:08x}")


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
        """Stream ``chunks`` into a new blob; raises BlobTooLarge past ``limit`` bytes.

        Chunks are gathered up to ``CHUNK`` bytes and each batch is written and hashed in
        one worker-thread call; the last batch, fsync and publishing share one call, so
        a small upload takes two: create, then finish."""
        upload = await anyio.to_thread.run_sync(_Upload, self, space_id)
        try:
            batch: list[bytes] = []
            pending = 0
            async for chunk in chunks:
                pending += len(chunk)
                if limit is not None and upload.digests.size + pending > limit:
                    raise BlobTooLarge(limit)
                batch.append(chunk)
                if pending >= CHUNK:
                    # anyio shields the thread call: cancellation waits for the write,
                    # so the file is never closed under a running writer.
                    await anyio.to_thread.run_sync(upload.write, batch)
                    batch, pending = [], 0
            blob_id = await anyio.to_thread.run_sync(upload.finish, batch)
        except BaseException:
            # Runs on errors, client disconnects and task cancellation alike: cheap
            # syscalls done inline so a cancelled task cannot skip them.
            upload.discard()
            raise
        return upload.digests.info(blob_id)

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


class _Upload:
    """One upload's temp file, created on construction (in a worker thread)."""

    def __init__(self, driver: PosixDriver, space_id: str) -> None:
        self.driver = driver
        self.space_id = space_id
        tmp_dir = driver._temp_dir(space_id)
        tmp_dir.mkdir(parents=True, exist_ok=True)
        self.tmp = tmp_dir / f"{secrets.token_hex(16)}.part"
        self.fh = open(self.tmp, "xb")  # noqa: SIM115 -- closed by finish or discard
        self.digests = _Digests()

    def write(self, chunks: list[bytes]) -> None:
        self.digests.write(self.fh, chunks)

    def finish(self, chunks: list[bytes]) -> str:
        """Write the last chunks, fsync, close and publish; the new blob's id."""
        self.digests.write(self.fh, chunks)
        _flush_and_sync(self.fh)
        self.fh.close()
        return self.driver._publish(self.space_id, self.tmp)

    def discard(self) -> None:
        self.fh.close()
        _unlink_quietly(self.tmp)


def _flush_and_sync(fh: IO[bytes]) -> None:
    fh.flush()
    os.fsync(fh.fileno())
