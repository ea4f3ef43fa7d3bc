"""Payload codecs: compressed and encrypted payloads, and a codec of your own
(docs/guide/client.md)."""

import asyncio
import base64
import os
import uuid

import durable
from durable import WorkflowContext, workflow

QUEUE = "codecs"


@workflow(task_queue=QUEUE)
async def echo(ctx: WorkflowContext, secret: str) -> str:
    return secret


# --8<-- [start:custom]
class Base64Codec(durable.PayloadCodec):
    """A codec of your own: ``name`` is stored with each value and must never change."""

    name = "base64"

    def encode(self, data: bytes) -> bytes | None:
        return base64.b64encode(data)  # None would store the value as it is

    def decode(self, data: bytes) -> bytes:
        try:
            return base64.b64decode(data, validate=True)
        except ValueError as exc:
            raise durable.PayloadError(f"corrupt base64 payload: {exc}") from None


# --8<-- [end:custom]


async def main() -> None:
    # --8<-- [start:codecs]
    keys = {"2026-11": os.urandom(32), "2026-12": os.urandom(32)}  # keep them in a vault
    codecs = [
        durable.ZlibCodec(),  # first: compress (values of 256 bytes and more) ...
        durable.AesGcmCodec(keys, encrypt_with="2026-12"),  # ... then encrypt
    ]
    client = await durable.Client.connect(codecs=codecs)  # workers use their client's codecs
    # --8<-- [end:codecs]
    async with client, durable.Worker(client, task_queue=QUEUE, workflows=[echo]):
        handle = await client.start(echo, "the launch code is 0000", id=f"echo-{uuid.uuid4()}")
        assert await handle.result(timeout=30) == "the launch code is 0000"

        # --8<-- [start:without]
        async with await durable.Client.connect() as plain:  # a client without the keys
            desc = await plain.get_handle(handle.workflow_id).describe()
            print(desc.status, desc.workflow_name)  # ids, names, statuses stay readable
            try:
                await plain.get_handle(handle.workflow_id).result()
            except durable.PayloadError as exc:
                print("without the key:", exc)
        # --8<-- [end:without]

    b64 = await durable.Client.connect(codecs=[Base64Codec()])
    async with b64, durable.Worker(b64, task_queue=QUEUE, workflows=[echo]):
        assert await b64.execute(echo, "hello") == "hello"


if __name__ == "__main__":
    asyncio.run(main())
