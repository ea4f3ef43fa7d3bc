"""durable in a Flask application: the views use durable.SyncClient (blocking calls, one
client shared by every request thread); a worker serves the workflows in its own process.

    python samples/flask_app.py           # a worker in the background, then three requests
    flask --app samples.flask_app run     # the views, with `python samples/flask_app.py
                                          # --worker` in another terminal
"""

from __future__ import annotations

import asyncio
import sys
import threading
import uuid
from typing import Any

from flask import Flask, jsonify

import durable
from durable import WorkflowContext, activity, workflow

QUEUE = "flask-sample"


@activity
async def reserve(item: str, quantity: int) -> str:
    return f"reservation of {quantity} x {item}"


@workflow(task_queue=QUEUE)
async def place_order(ctx: WorkflowContext, item: str, quantity: int) -> str:
    reservation = await ctx.activity(reserve, item, quantity)
    confirmed: bool = await ctx.wait_signal("confirm")
    return f"{reservation}: {'confirmed' if confirmed else 'declined'}"


app = Flask(__name__)
client = durable.SyncClient.connect()  # dsn=None: $DURABLE_DATABASE_URL, else embedded


@app.post("/orders/<order_id>/<item>/<int:quantity>")
def create_order(order_id: str, item: str, quantity: int) -> Any:
    handle = client.start(place_order, item, quantity, id=order_id)
    return jsonify(workflow_id=handle.workflow_id, run_id=handle.run_id), 201


@app.post("/orders/<order_id>/confirm")
def confirm_order(order_id: str) -> Any:
    handle = client.get_handle(order_id)
    handle.signal("confirm", True)
    return jsonify(result=handle.result(timeout=30))


@app.get("/orders/<order_id>")
def show_order(order_id: str) -> Any:
    description = client.get_handle(order_id).describe()
    return jsonify(status=description.status, started_at=description.started_at.isoformat())


async def serve_workflows(stop: threading.Event | None = None) -> None:
    """The worker (normally a process of its own: `durable worker samples.flask_app`)."""
    worker_client = await durable.Client.connect()
    try:
        worker = durable.Worker(
            worker_client, task_queue=QUEUE, workflows=[place_order], activities=[reserve]
        )
        if stop is None:
            await worker.run()
            return
        async with worker:
            await asyncio.to_thread(stop.wait)
    finally:
        await worker_client.close()


def demo() -> None:
    """A worker in a background thread, then what a browser would send."""
    stop = threading.Event()
    serving = threading.Thread(target=asyncio.run, args=(serve_workflows(stop),))
    serving.start()
    try:
        http = app.test_client()
        order = f"order-{uuid.uuid4().hex[:8]}"
        for method, path in (
            ("post", f"/orders/{order}/teapot/2"),
            ("get", f"/orders/{order}"),
            ("post", f"/orders/{order}/confirm"),
        ):
            response = getattr(http, method)(path)
            print(method.upper(), path, "->", response.status_code, response.get_json())
    finally:
        stop.set()
        serving.join()
        client.close()


if __name__ == "__main__":
    if "--worker" in sys.argv:
        asyncio.run(serve_workflows())
    else:
        demo()
