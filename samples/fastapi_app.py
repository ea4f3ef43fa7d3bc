"""durable in a FastAPI application: the async durable.Client, opened and closed with the
application (its lifespan), which here also runs a worker for its own workflows (in
production, workers usually run as processes of their own: `durable worker ...`).

    python samples/fastapi_app.py                # three requests through FastAPI's TestClient
    uvicorn samples.fastapi_app:app              # serve it
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request

import durable
from durable import WorkflowContext, activity, workflow

QUEUE = "fastapi-sample"


@activity
async def reserve(item: str, quantity: int) -> str:
    return f"reservation of {quantity} x {item}"


@workflow(task_queue=QUEUE)
async def place_order(ctx: WorkflowContext, item: str, quantity: int) -> str:
    reservation = await ctx.activity(reserve, item, quantity)
    confirmed: bool = await ctx.wait_signal("confirm")
    return f"{reservation}: {'confirmed' if confirmed else 'declined'}"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    client = await durable.Client.connect()  # dsn=None: $DURABLE_DATABASE_URL, else embedded
    worker = durable.Worker(client, task_queue=QUEUE, workflows=[place_order], activities=[reserve])
    async with worker:
        app.state.durable = client
        yield
    await client.close()


app = FastAPI(lifespan=lifespan)


def durable_client(request: Request) -> durable.Client:
    client: durable.Client = request.app.state.durable
    return client


@app.post("/orders/{order_id}/{item}/{quantity}", status_code=201)
async def create_order(order_id: str, item: str, quantity: int, request: Request) -> Any:
    handle = await durable_client(request).start(place_order, item, quantity, id=order_id)
    return {"workflow_id": handle.workflow_id, "run_id": handle.run_id}


@app.post("/orders/{order_id}/confirm")
async def confirm_order(order_id: str, request: Request) -> Any:
    handle = durable_client(request).get_handle(order_id)
    await handle.signal("confirm", True)
    return {"result": await handle.result(timeout=30)}


@app.get("/orders/{order_id}")
async def show_order(order_id: str, request: Request) -> Any:
    description = await durable_client(request).get_handle(order_id).describe()
    return {"status": description.status, "started_at": description.started_at.isoformat()}


def demo() -> None:
    from fastapi.testclient import TestClient

    order = f"order-{uuid.uuid4().hex[:8]}"
    with TestClient(app) as http:
        for method, path in (
            ("post", f"/orders/{order}/teapot/2"),
            ("get", f"/orders/{order}"),
            ("post", f"/orders/{order}/confirm"),
        ):
            response = getattr(http, method)(path)
            print(method.upper(), path, "->", response.status_code, response.json())


if __name__ == "__main__":
    demo()
