"""Assembly of one instance: database, components, gRPC server and the HTTP app.

``Instance`` is what ``fedspace serve`` runs and what tests and the rig start in-process:
several instances can live in one event loop, each with its own ports and metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Iterator, Sequence
from urllib.parse import urlsplit

import grpc
import uvicorn
from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Host, Mount, Route, Router

from fedspace import problem
from fedspace.auth import Verifier
from fedspace.db import Database
from fedspace.internal import InternalTokens, load_or_create_secret
from fedspace.limits import BodyLimitMiddleware
from fedspace.metrics import Metrics, MetricsMiddleware
from fedspace.outbound import Outbound
from fedspace.rpc import InternalAuthInterceptor
from fedspace.runtime import SERVICES, Component, Context
from fedspace.settings import Settings

log = logging.getLogger("fedspace")


def _components(ctx: Context, only: Sequence[str]) -> list[Component]:
    import discovery
    import federation
    import provider
    import registry

    factories = {
        "discovery": discovery.create,
        "registry": registry.create,
        "provider": provider.create,
        "federation": federation.create,
    }
    return [factories[name](ctx) for name in SERVICES if name in only]


async def _healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


class _EmbeddedServer(uvicorn.Server):
    """A server that leaves signal handling to the process embedding it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Instance:
    def __init__(
        self,
        settings: Settings,
        only: Sequence[str] | None = None,
        verifiers: Sequence[Verifier] = (),
        *,
        signals: bool = True,
    ) -> None:
        """``signals=False`` when several instances share a process (the rig): its owner
        handles SIGINT/SIGTERM, since each uvicorn server would install handlers and
        restore them out of order when one instance stops before the others."""
        self.settings = settings
        self._signals = signals
        self.only = tuple(only or SERVICES)
        unknown = set(self.only) - set(SERVICES)
        if unknown:
            raise ValueError(f"unknown service(s): {', '.join(sorted(unknown))}")
        secret = load_or_create_secret(
            settings.internal_secret.get_secret_value(), settings.data_dir
        )
        self.ctx = Context(
            settings=settings,
            db=Database(settings.database_url),
            tokens=InternalTokens(secret),
            metrics=Metrics(),
            outbound=Outbound(settings.outbound),
        )
        self.ctx.auth.verifiers.extend(verifiers)
        self.components = _components(self.ctx, self.only)
        self.ctx.components = {c.name: c for c in self.components}
        self.app = self._build_app()
        self._grpc: grpc.aio.Server | None = None
        self._http: uvicorn.Server | None = None
        self._http_task: asyncio.Task[None] | None = None

    def _build_app(self) -> FastAPI:
        app = FastAPI(title="fedspace", docs_url=None, redoc_url=None, openapi_url=None)
        problem.install(app)
        if "registry" in self.only or "provider" in self.only:
            from fedspace.gateway import routes as dav_routes

            app.router.routes[0:0] = dav_routes(self.ctx)
        for component in self.components:
            for router in component.routers():
                app.include_router(router)
        self._mount_idp(app)

        app.add_api_route("/healthz", _healthz, include_in_schema=False)

        @app.get("/readyz", include_in_schema=False)
        async def readyz() -> Response:
            try:
                await self.ctx.db.ping()
            except Exception as exc:  # the database is down: say so, not a 500
                return PlainTextResponse(f"database: {type(exc).__name__}", 503)
            for component in self.components:
                why = await component.ready()
                if why:
                    return PlainTextResponse(f"{component.name}: {why}", 503)
            return PlainTextResponse("ready")

        @app.get("/metrics", include_in_schema=False)
        async def metrics() -> Response:
            for component in self.components:
                await component.collect(self.ctx.metrics)
            return Response(generate_latest(self.ctx.metrics.registry), 200,
                            media_type=CONTENT_TYPE_LATEST)

        app.add_middleware(BodyLimitMiddleware, limit=self.settings.http.max_body_size)
        app.add_middleware(MetricsMiddleware, metrics=self.ctx.metrics)
        return app

    def _mount_idp(self, app: FastAPI) -> None:
        """The IdP shares the listener: under the issuer's path when it shares the cloud
        host (``http://host/idp``), on a Host route when it has its own (``idp.D``)."""
        discovery = self.ctx.components.get("discovery")
        idp = getattr(discovery, "idp", None)
        if idp is None:
            return
        issuer = urlsplit(self.settings.discovery.issuer)
        public = urlsplit(self.settings.public_url)
        path = issuer.path.rstrip("/")
        if issuer.hostname == public.hostname and issuer.port == public.port:
            if not path:
                raise ValueError("an IdP on the cloud host needs a path (e.g. <public_url>/idp)")
            app.mount(path, idp.app)
            return
        # The IdP's own host answers /healthz too, so each host of a rig can be probed.
        target = Router(routes=[Route("/healthz", _healthz), Mount(path, app=idp.app)])
        app.router.routes.insert(0, Host(issuer.hostname or "", app=target))

    @property
    def url(self) -> str:
        """Where the HTTP server listens (the bound port, also when 0 was asked for)."""
        assert self._http is not None and self._http.servers, "instance not started"
        host, port = self._http.servers[0].sockets[0].getsockname()[:2]
        return f"{self._scheme}://{host}:{port}"

    @property
    def _scheme(self) -> str:
        return "https" if self.settings.http.tls else "http"

    async def start(self) -> None:
        """Bind, migrate, start gRPC and every component, then serve HTTP."""
        socks = self._bind_http()
        try:
            await self.ctx.db.migrate()
            self._grpc = grpc.aio.server(
                interceptors=[InternalAuthInterceptor(self.ctx.tokens)])
            for component in self.components:
                component.add_to_grpc(self._grpc)
            g = self.settings.grpc
            try:
                port = self._grpc.add_insecure_port(f"{g.host}:{g.port}")
            except RuntimeError:
                port = 0
            if port == 0:
                raise OSError(f"cannot listen for gRPC on {g.host}:{g.port} (address in use?)")
            self.ctx.grpc_address = f"{g.host}:{port}"
            await self._grpc.start()
            for component in self.components:
                await component.start()
        except BaseException:
            for sock in socks:
                sock.close()
            raise
        await self._serve_http(socks)
        log.info("instance started", extra={"services": list(self.only),
                                            "grpc": self.ctx.grpc_address, "url": self.url})

    def _bind_http(self) -> list[socket.socket]:
        """Bind first: a taken port fails fast, and port 0 resolves before URLs are derived.
        The main listener comes first; ``http.extra_hosts`` without a port share its port."""
        h = self.settings.http
        socks = [_listen(h.host, h.port)]
        port = socks[0].getsockname()[1]
        try:
            for host, extra_port in h.extra_listeners():
                socks.append(_listen(host, port if extra_port is None else extra_port))
        except OSError:
            for sock in socks:
                sock.close()
            raise
        if self.settings.public_url_derived:
            self.settings.rebase(f"{self._scheme}://{h.host}:{port}")
        return socks

    async def _serve_http(self, socks: list[socket.socket]) -> None:
        h = self.settings.http
        config = uvicorn.Config(self.app, lifespan="off", log_config=None, access_log=False,
                                timeout_graceful_shutdown=5, ssl_certfile=h.tls_cert_file,
                                ssl_keyfile=h.tls_key_file)
        self._http = (uvicorn.Server if self._signals else _EmbeddedServer)(config)
        self._http_task = asyncio.create_task(self._http.serve(sockets=socks))
        while not self._http.started:
            if self._http_task.done():
                self._http_task.result()  # re-raise why it could not start
                raise OSError("the HTTP server stopped while starting")
            await asyncio.sleep(0.01)

    async def wait(self) -> None:
        """Run until the HTTP server exits (Ctrl-C / SIGTERM). Cancelling the wait does not
        cancel the server (several waiters may watch one instance)."""
        if self._http_task is not None:
            await asyncio.shield(self._http_task)

    async def stop(self) -> None:
        if self._http is not None and self._http_task is not None:
            self._http.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await self._http_task
        for component in reversed(self.components):
            await component.stop()
        if self._grpc is not None:
            await self._grpc.stop(grace=1)
        await self.ctx.outbound.aclose()
        await self.ctx.db.close()


def _listen(host: str, port: int) -> socket.socket:
    try:
        sock = socket.create_server((host, port), reuse_port=False)
    except OSError as exc:
        raise OSError(
            f"cannot listen for HTTP on {host}:{port}: {os.strerror(exc.errno or 0)}"
        ) from None
    # Accepted connections inherit this; without it small responses written in two
    # parts meet delayed ACKs (~40 ms per request on loopback).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock
