"""The gateways' webhooks, delegated to :class:`campaigns.webhooks.WebhookReceiver`.

The receiver keeps every rule (paths, signatures, 401/503 semantics); this router only carries
bytes. Signatures are computed over the body exactly as received, so the body is read raw
(``Request.stream``), never parsed by the framework first. The receiver's store calls block, so
they run in the thread pool and never stall the event loop.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from campaigns.web.deps import ReceiverDep
from campaigns.webhooks import MAX_BODY_BYTES, Answer

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

TOO_LARGE = Answer(413, {"error": "body too large"})


def respond(answer: Answer) -> Response:
    """The receiver's answer as HTTP: JSON, or plain text (Meta's echoed challenge)."""
    if isinstance(answer.body, str):
        return PlainTextResponse(answer.body, status_code=answer.status)
    return JSONResponse(dict(answer.body), status_code=answer.status)


async def raw_body(request: Request) -> bytes | None:
    """The body as received, or None past :data:`MAX_BODY_BYTES` (declared or streamed: a
    chunked body has no Content-Length, so the count is kept while reading too)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def deliver(request: Request, receiver: ReceiverDep) -> Response:
    body = await raw_body(request)
    if body is None:
        return respond(TOO_LARGE)
    headers = dict(request.headers.items())
    answer = await run_in_threadpool(receiver.handle, request.url.path, headers, body)
    return respond(answer)


async def handshake(request: Request, receiver: ReceiverDep) -> Response:
    query = request.url.query
    path = f"{request.url.path}?{query}" if query else request.url.path
    return respond(await run_in_threadpool(receiver.verify, path))


# Named routes document the service in its OpenAPI page; the catch-all after them hands any
# other /webhooks/... path to the receiver too, so it answers as it always did (its own 404,
# and trailing slashes accepted).
for path, summary in (
    ("/waha", "WAHA events: session.status, message (HMAC-SHA512 when a key is set)"),
    ("/evolution", "Evolution events: connection.update, messages.upsert"),
    ("/evolution/{event}", "Evolution's 'webhook by events' URLs"),
    ("/cloud", "Cloud API events (X-Hub-Signature-256 with META_APP_SECRET)"),
):
    router.add_api_route(path, deliver, methods=["POST"], summary=summary)
router.add_api_route("/cloud", handshake, methods=["GET"], summary="Meta's verification handshake")
router.add_api_route("/{rest:path}", deliver, methods=["POST"], include_in_schema=False)
router.add_api_route("/{rest:path}", handshake, methods=["GET"], include_in_schema=False)
