"""gRPC plumbing shared by registry and providers: stubs (generated at build time from
``spaces.proto`` by grpcio-tools) and the internal-token check on every call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from fedspace.internal import InternalTokens, InvalidInternalToken

AUDIENCE = "fedspace-grpc"


def call_metadata(tokens: InternalTokens) -> tuple[tuple[str, str], ...]:
    """Metadata for an outgoing call: a fresh short-lived internal token."""
    return (("authorization", "Bearer " + tokens.mint(AUDIENCE, {})),)


class InternalAuthInterceptor(grpc.aio.ServerInterceptor):
    """Refuse every call that does not carry a valid internal token (no trust by address)."""

    def __init__(self, tokens: InternalTokens) -> None:
        self.tokens = tokens

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        metadata = dict(details.invocation_metadata or ())
        auth = str(metadata.get("authorization", ""))
        try:
            if not auth.startswith("Bearer "):
                raise InvalidInternalToken("missing token")
            self.tokens.verify(auth.removeprefix("Bearer "), AUDIENCE)
        except InvalidInternalToken as exc:
            return _deny(f"invalid internal token: {exc}")
        return await continuation(details)


def _deny(message: str) -> grpc.RpcMethodHandler:
    async def abort(_request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    # Streaming requests are refused the same way; the handler kind only shapes the reply.
    return grpc.stream_unary_rpc_method_handler(abort)
