"""A scriptable foreign server for outbound/discovery tests: real sockets, optional TLS.

``Peer.set(host, path, …)`` decides what a (Host header, path) answers; everything else is
404. A test CA (``make_ca``) issues certificates for named hosts, as the rig's CA will.
"""

from __future__ import annotations

import asyncio
import datetime
import socket
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering
    chunks: int = 0     # >0: stream the body in this many chunks, without Content-Length


@dataclass
class Peer:
    port: int = 0
    replies: dict[tuple[str, str], Reply] = field(default_factory=dict)
    hits: Counter[tuple[str, str]] = field(default_factory=Counter)
    seen: list[Request] = field(default_factory=list)

    def set(self, host: str, path: str, body: object = None, **kw: object) -> None:
        data = body if isinstance(body, bytes) else orjson.dumps(body) if body is not None else b""
        self.replies[(host, path)] = Reply(body=data, **kw)  # type: ignore[arg-type]

    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def __call__(self, scope: dict, receive: object, send: object) -> None:
        request = Request(scope, receive)  # type: ignore[arg-type]
        host = request.headers.get("host", "").split(":")[0]
        self.hits[(host, request.url.path)] += 1
        self.seen.append(request)
        reply = self.replies.get((host, request.url.path))
        if reply is None:
            response: Response = Response(b"not here", 404, media_type="text/plain")
        else:
            if reply.delay:
                await asyncio.sleep(reply.delay)
            if reply.chunks:
                size = -(-len(reply.body) // reply.chunks)
                parts = [reply.body[i:i + size] for i in range(0, len(reply.body), size)]

                async def stream() -> AsyncIterator[bytes]:
                    for part in parts:
                        yield part

                response = StreamingResponse(stream(), reply.status, headers=reply.headers,
                                             media_type=reply.content_type)
            else:
                response = Response(reply.body, reply.status, headers=reply.headers,
                                    media_type=reply.content_type)
        await response(scope, receive, send)  # type: ignore[arg-type]


@asynccontextmanager
async def serve_peer(tls: tuple[Path, Path] | None = None) -> AsyncIterator[Peer]:
    """Run a Peer on 127.0.0.1:<free port>; ``tls`` = (certificate, key) files."""
    peer = Peer()
    sock = socket.create_server(("127.0.0.1", 0))
    peer.port = sock.getsockname()[1]
    certfile, keyfile = tls if tls else (None, None)
    config = uvicorn.Config(peer, lifespan="off", log_config=None, access_log=False,
                            ssl_certfile=certfile, ssl_keyfile=keyfile,
                            timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield peer
    finally:
        server.should_exit = True
        server.force_exit = True
        await task


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(directory: Path, hosts: list[str]) -> tuple[Path, Path, Path]:
    """A test CA and a certificate for ``hosts`` → (ca.pem, cert.pem, key.pem)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("fedspace test CA"))
          .issuer_name(_name("fedspace test CA")).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(
              digital_signature=False, content_commitment=False, key_encipherment=False,
              data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
              encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name(hosts[0]))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return paths
