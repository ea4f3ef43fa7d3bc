"""The Prometheus and health endpoint of ``durable worker --metrics-port``.

``prometheus_provider()`` makes a meter provider whose metrics a private registry exposes;
``serve_metrics()`` serves that registry at ``/metrics`` and the worker's health at
``/healthz`` (uvicorn on the running event loop) for as long as its context lasts.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import AsyncIterator, Callable, Iterator

import uvicorn
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["EndpointError", "prometheus_provider", "serve_metrics"]


class EndpointError(Exception):
    """The endpoint cannot listen on its address (``reason`` says why)."""

    def __init__(self, host: str, port: int, reason: str) -> None:
        super().__init__(f"{host}:{port}: {reason}")
        self.host = host
        self.port = port
        self.reason = reason


def prometheus_provider() -> tuple[MeterProvider, CollectorRegistry]:
    """A meter provider and the private registry its metrics are read from: not the global
    REGISTRY, so that several providers in one process (workers, tests) do not collide."""
    registry = CollectorRegistry()
    # every metric comes from the one "durable" meter: otel_scope_* labels would say nothing
    reader = PrometheusMetricReader(registry=registry, scope_info_enabled=False)
    return MeterProvider(metric_readers=[reader]), registry


def metrics_app(registry: CollectorRegistry, healthy: Callable[[], bool]) -> Starlette:
    """``GET /metrics`` (Prometheus text format) and ``GET /healthz`` (200 or 503)."""

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), headers={"content-type": CONTENT_TYPE_LATEST})

    async def healthz(request: Request) -> Response:
        if healthy():
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "unavailable"}, status_code=503)

    return Starlette(
        routes=[Route("/metrics", metrics, methods=["GET"]), Route("/healthz", healthz)]
    )


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The worker owns SIGTERM/SIGINT. uvicorn's own handlers stop only the endpoint and
        # raise the signal again once it stopped; only being installed before the worker's
        # (which replace them) would keep them from taking over.
        yield


async def _listen(host: str, port: int) -> socket.socket:
    """A listening socket, bound here rather than by uvicorn, which reports a port in use
    by logging it and calling sys.exit() inside its task."""
    try:
        found = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        family, *_, address = found[0]
        sock = socket.create_server(address, family=family)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise EndpointError(host, port, "address already in use; choose a free port") from None
        raise EndpointError(host, port, exc.strerror or str(exc)) from None
    sock.setblocking(False)
    return sock


@contextlib.asynccontextmanager
async def serve_metrics(
    host: str, port: int, registry: CollectorRegistry, healthy: Callable[[], bool]
) -> AsyncIterator[None]:
    """Serve ``registry`` and ``healthy()`` on ``host:port`` while the context lasts; it is
    entered once the server listens. Raises EndpointError if it cannot listen there."""
    sock = await _listen(host, port)
    # log_config=None: uvicorn's warnings go through the application's logging setup
    config = uvicorn.Config(
        metrics_app(registry, healthy),
        host=host,
        port=port,
        log_level="warning",
        log_config=None,
        access_log=False,
        lifespan="off",
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name=f"durable-metrics-{port}")
    try:
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if task.done():
            task.result()  # its error, if it failed
            raise EndpointError(host, port, "the server stopped while starting")
        yield
    finally:
        server.should_exit = True
        try:
            await task
        finally:
            sock.close()
