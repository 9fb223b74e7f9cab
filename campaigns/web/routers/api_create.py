"""``POST /api/v1/campaigns``: a campaign from an uploaded number file (multipart: ``file`` and
the settings as form fields) or from a JSON list, through the Python API
(:meth:`CampaignBatchProcessor.process_large_campaign_array`): the same checks, the ledger and
state in one transaction, the first batch enqueued on the service's broker.

An upload streams: the multipart parser spools the file to disk past 1 MB, it is copied to a
temporary file in chunks, and the loader reads it a line at a time (as ``campaigns send``
reads its file), so a 1,000,000-line list costs the service no more memory than 10 lines.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from campaigns import media
from campaigns.dispatch import Enqueue
from campaigns.errors import InvalidArgument, InvalidNumberFile, UnknownSession
from campaigns.numbers import Entry
from campaigns.processor import CampaignBatchProcessor
from campaigns.store import CampaignStateManager
from campaigns.views import snapshot_data
from campaigns.web.routers.api_errors import ApiError, campaign_error
from campaigns.web.routers.api_models import NewCampaign, Options
from campaigns.windows import parse_window

COPY_CHUNK = 1 << 20
REPEATED = ("session", "variants")
"""Form fields that may be given more than once (``-F session=a -F session=b``)."""
MEDIA_FORM = ("media_url", "media_kind", "media_mime", "media_filename")
"""The upload's media fields (a form has no objects): the JSON body's ``media``, flattened."""
WINDOW = ("window_tz", "window_days", "window_hours")

REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {"schema": NewCampaign.model_json_schema(ref_template="{model}")},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file", "session"],
                "properties": {
                    "file": {"type": "string", "format": "binary",
                             "description": "One number per line, or a CSV with a phone "
                             "column (the other columns are the text's variables)."},
                    **{name: {"type": "string"} for name in MEDIA_FORM},
                    **{name: {"type": "string"} for name in Options.model_fields
                       if name != "media"},
                },
            }
        },
    },
}  # fmt: skip
"""The route reads its body itself (JSON or multipart); this documents both on the page."""


def enqueue_of(request: Request) -> Enqueue:
    """The app's enqueue (:func:`campaigns.web.app.create_app`)."""
    enqueue: Enqueue = request.app.state.enqueue
    return enqueue


async def read_request(request: Request) -> tuple[Options, list[Any] | UploadFile]:
    """The settings, and the JSON list or the uploaded file."""
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind == "application/json":
        try:
            body = await request.json()
        except ValueError:
            raise ApiError(422, "invalid_input", "the body is not JSON") from None
        given = NewCampaign.model_validate(body)
        return Options.model_validate(given.model_dump(exclude={"numbers"})), given.numbers
    if kind not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise ApiError(
            415, "unsupported_media_type",
            "send application/json (a numbers list) or multipart/form-data (a file)",
        )  # fmt: skip
    form = await request.form()
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise ApiError(422, "invalid_input", "file: upload the number list as the field 'file'")
    fields: dict[str, Any] = {}
    for key in form:
        if key == "file":
            continue
        values = [v for v in form.getlist(key) if isinstance(v, str)]
        if len(values) != len(form.getlist(key)):
            raise ApiError(422, "invalid_input", f"{key}: a text field, not a file")
        fields[key] = values if key in REPEATED else values[-1]
    if "session" in fields and len(fields["session"]) == 1:
        fields["session"] = fields["session"][0]
    fields["media"] = _form_media({k: fields.pop(k) for k in MEDIA_FORM if k in fields})
    return Options.model_validate(fields), upload


def _form_media(given: dict[str, str]) -> dict[str, Any] | None:
    """The form's media fields as the Python API's media object; the kind, when left out,
    follows from the type (given, or the URL's extension) as ``campaigns send`` derives it."""
    url = given.get("media_url")
    if url is None:
        if given:
            raise InvalidArgument(f"{next(iter(given))} needs media_url; nothing was created")
        return None
    kind, mime = given.get("media_kind"), given.get("media_mime")
    if kind is None:
        known = mime or media.type_from_url(url.strip())
        if not known:
            raise InvalidArgument(
                f"media_kind: cannot tell the kind of media at {url} from its extension; give "
                f"media_kind ({', '.join(media.MEDIA_KINDS)})"
            )
        major = known.split("/", 1)[0].strip().lower()
        kind = major if major in ("image", "audio", "video") else "document"
    return {"kind": kind, "url": url, "mime": mime, "filename": given.get("media_filename")}


@contextlib.contextmanager
def spooled(upload: UploadFile) -> Iterator[Path]:
    """The upload copied to a temporary file in chunks (flat memory), removed afterwards."""
    handle, name = tempfile.mkstemp(prefix="campaigns-upload-", suffix=".csv")
    try:
        with os.fdopen(handle, "wb") as out:
            upload.file.seek(0)
            shutil.copyfileobj(upload.file, out, COPY_CHUNK)
        if os.path.getsize(name) == 0:
            raise InvalidNumberFile("file: the uploaded number list is empty; nothing was created")
        yield Path(name)
    finally:
        os.unlink(name)


def create(
    store: CampaignStateManager,
    enqueue: Enqueue,
    options: Options,
    numbers: list[Any] | UploadFile,
) -> dict[str, Any]:
    """Create the campaign (blocking: run in the thread pool) and return its status view."""
    pacing = store.settings.pacing
    chosen = {
        name: getattr(pacing, name) if getattr(options, name) is None else getattr(options, name)
        for name in ("batch_size", "min_interval", "max_interval", "batch_delay_min",
                     "batch_delay_max")
    }  # fmt: skip
    processor = CampaignBatchProcessor(**chosen, enqueue=enqueue)
    processor.set_state_manager(store)
    window = None
    if options.window_hours is not None:
        window = parse_window(options.window_hours, options.window_days, options.window_tz,
                              names=WINDOW)  # fmt: skip
    elif options.window_days is not None or options.window_tz is not None:
        raise InvalidArgument("window_days and window_tz need window_hours; nothing was created")
    message = options.message
    if message is None:
        if options.media is None:
            raise InvalidArgument("message: required (it may be left out only with media)")
        message = ""

    def run(source: list[str | dict[str, Any] | Entry] | Path) -> int:
        try:
            return processor.process_large_campaign_array(
                source, message, options.session, start_at=options.start_at,
                region=options.region, sticky=options.sticky, window=window,
                legal_basis=options.legal_basis, legal_note=options.legal_note,
                variants=options.variants, media=options.media, dedupe_days=options.dedupe_days,
            )  # fmt: skip
        except UnknownSession as exc:
            # a session named in the body is the request's mistake, not a missing resource
            raise ApiError(422, "unknown_session", str(exc)) from None

    if isinstance(numbers, UploadFile):
        with spooled(numbers) as path:
            campaign_id = run(path)
    else:
        campaign_id = run(list(numbers))
    reasons = store.outcome_reasons(campaign_id) if options.dedupe_days is not None else None
    return snapshot_data(store.snapshot(campaign_id), reasons=reasons)


async def create_campaign(request: Request, store: CampaignStateManager) -> dict[str, Any]:
    options, numbers = await read_request(request)
    try:
        return await run_in_threadpool(create, store, enqueue_of(request), options, numbers)
    finally:
        if isinstance(numbers, UploadFile):
            await numbers.close()


__all__ = ["REQUEST_BODY", "campaign_error", "create_campaign"]
