"""`durable worker --metrics-port`: Prometheus metrics at /metrics and the worker's health at
/healthz, served by a real worker process; the endpoint itself in-process."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

import durable
from durable._cli import build_parser, main
from durable._telemetry.endpoint import EndpointError, prometheus_provider, serve_metrics
from durable._telemetry.metrics import metrics_for
from tests import cli_workflows
from tests.conftest import worker_subprocess

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port something else listens on."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield int(sock.getsockname()[1])


async def get_until(url: str, status: int, timeout: float = 10.0) -> httpx.Response:
    """GET ``url`` until it answers ``status`` (connection refused meanwhile is expected)."""
    deadline = asyncio.get_running_loop().time() + timeout
    async with httpx.AsyncClient(timeout=2) as http:
        while True:
            try:
                response = await http.get(url)
                if response.status_code == status:
                    return response
            except httpx.TransportError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{url} did not answer {status} within {timeout} s")
            await asyncio.sleep(0.05)


def samples(text: str, name: str) -> list[tuple[str, float]]:
    """The (labels, value) of every sample of ``name`` in Prometheus text ``text``."""
    found = []
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels, _, value = line[len(name) :].rpartition(" ")
            found.append((labels, float(value)))
    return found


@pytest.fixture
async def metrics_worker(
    dsn: str, tmp_path: Path
) -> AsyncIterator[tuple[asyncio.subprocess.Process, int]]:
    """`durable worker tests.cli_workflows --metrics-port PORT` in a subprocess, and PORT."""
    port = free_port()
    log_path = tmp_path / "worker.log"
    argv = ("tests.cli_workflows", "--metrics-port", str(port), "--metrics-host", "127.0.0.1")
    try:
        async with worker_subprocess(
            log_path, *argv, env={**os.environ, "DURABLE_DATABASE_URL": dsn}
        ) as proc:
            yield proc, port
    finally:
        sys.stderr.write(log_path.read_text())  # shown by pytest when the test fails


async def test_worker_serves_health_and_prometheus_metrics(
    client: durable.Client, metrics_worker: tuple[asyncio.subprocess.Process, int]
) -> None:
    proc, port = metrics_worker
    base = f"http://127.0.0.1:{port}"
    health = await get_until(f"{base}/healthz", 200)
    assert health.json() == {"status": "ok"}

    handle = await client.start(cli_workflows.greeter, "ann")
    await handle.signal("finish", "!")
    assert await handle.result(timeout=10) == "hello ann!"

    async with httpx.AsyncClient(timeout=5) as http:
        response = await http.get(f"{base}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    completed = samples(response.text, "durable_workflows_completed_total")
    greeters = [value for labels, value in completed if 'workflow_name="greeter"' in labels]
    assert all("task_queue=" in labels for labels, _ in completed)
    assert greeters and sum(greeters) >= 1, response.text
    assert samples(response.text, "durable_worker_slots_used"), response.text

    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 10) == 0


async def test_endpoint_answers_health_as_it_changes_and_serves_its_registry() -> None:
    provider, registry = prometheus_provider()
    for _ in range(2):
        metrics_for(provider).count("durable.workflows.completed", "orders", "workflow_name", "w")
    state = {"healthy": True}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    try:
        async with (
            serve_metrics("127.0.0.1", port, registry, lambda: state["healthy"]),
            httpx.AsyncClient(timeout=5) as http,
        ):
            ok = await http.get(f"{base}/healthz")  # no retry: it listens once entered
            assert (ok.status_code, ok.json()) == (200, {"status": "ok"})
            state["healthy"] = False
            down = await http.get(f"{base}/healthz")
            assert (down.status_code, down.json()) == (503, {"status": "unavailable"})
            served = await http.get(f"{base}/metrics")
            assert samples(served.text, "durable_workflows_completed_total") == [
                ('{task_queue="orders",workflow_name="w"}', 2.0)
            ]
            assert (await http.get(f"{base}/nothing")).status_code == 404
        with pytest.raises(httpx.ConnectError):  # stopped on exit
            await httpx.AsyncClient().get(f"{base}/healthz")
    finally:
        provider.shutdown()


async def test_two_providers_in_one_process_keep_their_own_metrics() -> None:
    first, first_registry = prometheus_provider()
    second, second_registry = prometheus_provider()
    try:
        metrics_for(first).count("durable.workflows.failed", "a", "workflow_name", "w")
        assert b"durable_workflows_failed_total{" in generate_latest(first_registry)
        assert b"durable_workflows_failed_total{" not in generate_latest(second_registry)
    finally:
        first.shutdown()
        second.shutdown()


async def test_a_port_in_use_is_a_clear_error(taken_port: int) -> None:
    _, registry = prometheus_provider()
    with pytest.raises(EndpointError) as caught:
        async with serve_metrics("127.0.0.1", taken_port, registry, lambda: True):
            pytest.fail("entered the endpoint on a port in use")
    assert (
        str(caught.value) == f"127.0.0.1:{taken_port}: address already in use; choose a free port"
    )


async def test_the_cli_names_the_option_of_a_port_in_use(
    dsn: str, taken_port: int, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    argv = ["worker", "tests.cli_workflows", "--dsn", dsn, "--metrics-host", "127.0.0.1"]
    code = await asyncio.to_thread(main, [*argv, "--metrics-port", str(taken_port)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"error: --metrics-port {taken_port}: address already in use; choose a free port" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("port", ["0", "65536", "http"])
def test_the_cli_refuses_a_port_out_of_range(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    # the parser only: were the port accepted, main() would go on to run a worker
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["worker", "tests.cli_workflows", "--metrics-port", port])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"--metrics-port: must be a port number from 1 to 65535, got {port!r}" in err
