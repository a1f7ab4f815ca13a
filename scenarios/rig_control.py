"""Stopping and starting one domain of a running rig, to play outages (``peer-down``).

The rig listens on a Unix socket in its state folder (``rig.sock``, mode 0600: only the
rig's owner may take its domains down). A request is one JSON line ``{"op": "stop" |
"start", "domain": D}``, the answer one JSON line ``{"ok": true, "message": …}`` or
``{"ok": false, "error": …}``. ``fedspace rig stop|start D`` and scenarios (``World``) are
the clients; the same path serves an in-process rig and one in another process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Literal

from scenarios.rig_machine import RigError

CONTROL_SOCKET = "rig.sock"
TIMEOUT = 60.0
Op = Literal["stop", "start"]
# op, domain → a one-line message; raises RigError with a one-line reason.
Handler = Callable[[Op, str], Awaitable[str]]


async def serve(state_dir: Path, handle: Handler) -> asyncio.AbstractServer:
    """Listen on ``state_dir/rig.sock`` (a stale socket of a killed rig is replaced)."""
    path = state_dir / CONTROL_SOCKET
    with contextlib.suppress(FileNotFoundError):
        path.unlink()

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            answer = await _answer(await reader.readline(), handle)
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        finally:
            writer.close()

    old_umask = os.umask(0o177)  # the socket is created 0600
    try:
        return await asyncio.start_unix_server(client, path=str(path))
    finally:
        os.umask(old_umask)


async def _answer(line: bytes, handle: Handler) -> dict[str, object]:
    try:
        request = json.loads(line)
        op, domain = request["op"], request["domain"]
    except (ValueError, KeyError, TypeError):
        return {"ok": False, "error": 'expected {"op": "stop"|"start", "domain": …}'}
    if op not in ("stop", "start") or not isinstance(domain, str):
        return {"ok": False, "error": f"unknown operation {op!r}"}
    try:
        return {"ok": True, "message": await handle(op, domain)}
    except RigError as exc:
        return {"ok": False, "error": str(exc)}


async def request(state_dir: Path | str, op: Op, domain: str) -> str:
    """Ask the rig running from ``state_dir`` to stop or start ``domain``; its message."""
    path = Path(state_dir) / CONTROL_SOCKET
    try:
        reader, writer = await asyncio.open_unix_connection(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        raise RigError(f"no rig is running from {state_dir} (no {CONTROL_SOCKET})") from None
    try:
        writer.write(json.dumps({"op": op, "domain": domain}).encode() + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), TIMEOUT)
    except TimeoutError:
        raise RigError(f"the rig did not {op} {domain} within {TIMEOUT:g} s") from None
    finally:
        writer.close()
    try:
        answer = json.loads(line)
    except ValueError:
        raise RigError("the rig closed the control connection without an answer") from None
    if not answer.get("ok"):
        raise RigError(str(answer.get("error")))
    return str(answer["message"])
