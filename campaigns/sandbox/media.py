"""Media sends in the sandbox's three dialects: what each one checks, what it answers, and what
the record keeps (``kind``, ``url``, ``mime``, ``filename``; the caption goes to ``text``).

The sandbox downloads nothing: a link is checked for its form (http(s), a host) and its type
for what the gateway takes (:data:`campaigns.media.RULES`), read from the field the dialect
sends (WAHA ``file.mimetype``, Evolution ``mimetype``) or, for the Cloud API, which sends no
type, from the link's extension when it has a known one (Meta reads the downloaded file's).
Files sent inline (WAHA ``file.data``, Evolution base64 ``media``, a Cloud API media ``id``)
are refused: the campaign engine sends by URL only, and a sandbox that accepted them would
hide an adapter that stopped doing so. The wording of the refusals is the sandbox's, in each
dialect's error shape (class-validator-style strings for WAHA, Evolution's schema strings).
"""

from __future__ import annotations

import posixpath
from typing import Any
from urllib.parse import urlsplit

from campaigns.media import MEDIA_KINDS, RULES, type_from_url

WAHA_ROUTES = {
    "/api/sendImage": "image",
    "/api/sendFile": "document",
    "/api/sendVideo": "video",
    "/api/sendVoice": "audio",
}
"""WAHA's media endpoints and the kind each sends (waha-docs, how-to/send-messages)."""


# Common files WhatsApp does not take as media: a link to one is refused as Meta refuses it once
# downloaded (the campaign's own check refuses them earlier, so only a hand-made request or an
# adapter bug gets here).
OTHER_EXTENSIONS = {
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
    ".avi": "video/x-msvideo",
    ".mov": "video/quicktime",
    ".wav": "audio/wav",
    ".zip": "application/zip",
}


def link_type(url: str) -> str | None:
    """The type of the file a link names, by its extension; None when it has no known one."""
    known = type_from_url(url)
    if known is not None:
        return known
    extension = posixpath.splitext(urlsplit(url).path)[1].lower()
    return OTHER_EXTENSIONS.get(extension)


def is_link(value: Any) -> bool:
    """An http(s) URL with a host."""
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        return False
    try:
        parts = urlsplit(value)
        return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
    except ValueError:
        return False


def base_type(mime: Any) -> str | None:
    """``audio/ogg; codecs=opus`` → ``audio/ogg``; None for anything but a string."""
    return mime.split(";", 1)[0].strip().lower() if isinstance(mime, str) else None


def record(kind: str, url: str, mime: str | None, filename: Any) -> dict[str, Any]:
    """The media object the record keeps for one accepted send."""
    name = filename if isinstance(filename, str) and filename else None
    return {"kind": kind, "url": url, "mime": mime, "filename": name}


def caption_of(value: Any) -> str | None:
    """The caption as recorded in ``text``: None when there is none."""
    return value if isinstance(value, str) and value else None


def baileys_message(
    kind: str, mime: str | None, url: str, caption: str | None, filename: str | None
) -> dict[str, Any]:
    """The ``message`` of a media send's 201 as WAHA's NOWEB engine and Evolution give it
    (Baileys' ``imageMessage``, ``documentMessage``, ``audioMessage``, ``videoMessage``)."""
    content: dict[str, Any] = {"url": url, "mimetype": mime or "application/octet-stream"}
    if caption and kind != "audio":
        content["caption"] = caption
    if kind == "document" and filename:
        content["fileName"] = filename
    return {f"{kind}Message": content}


def waha_problems(kind: str, body: Any) -> list[str]:
    """What WAHA's request validation would say about a media send's ``file`` and
    ``caption`` (``chatId`` and ``session`` are checked with sendText's rules)."""
    if not isinstance(body, dict):
        return ["file should not be empty"]
    file = body.get("file")
    if not isinstance(file, dict):
        return ["file should not be empty"]
    problems = []
    if "data" in file:
        problems.append("file.data is not accepted by the sandbox; send file.url")
    elif not is_link(file.get("url")):
        problems.append("file.url must be a URL address")
    mime = base_type(file.get("mimetype"))
    if mime is None:
        problems.append("file.mimetype must be a string")
    elif mime not in RULES["waha"][kind].types:
        allowed = ", ".join(sorted(RULES["waha"][kind].types))
        problems.append(f"file.mimetype must be one of the following values: {allowed}")
    if kind == "audio" and "caption" in body:
        problems.append("property caption should not exist")  # sendVoice takes none
    elif not isinstance(body.get("caption", ""), str):
        problems.append("caption must be a string")
    return problems


def evolution_problem(body: dict[str, Any]) -> Any:
    """The ``response.message`` of Evolution's 400 for a sendMedia body, or None when it is
    accepted. ``number`` is checked by the caller like sendText's."""
    missing = [
        f'instance requires property "{name}"'
        for name in ("number", "mediatype", "media")
        if name not in body
    ]
    if missing:
        return [missing]
    kind = body["mediatype"]
    if kind not in MEDIA_KINDS:
        return [[f"instance.mediatype is not one of enum values: {','.join(MEDIA_KINDS)}"]]
    for name in ("mimetype", "caption", "fileName"):
        if name in body and not isinstance(body[name], str):
            return [[f"instance.{name} is not of a type(s) string"]]
    if not is_link(body["media"]):
        return ["Owned media must be a url or base64 (the sandbox takes URLs only)"]
    mime = base_type(body.get("mimetype")) or link_type(body["media"])
    if mime is not None and mime not in RULES["evolution"][kind].types:
        return [f"{mime} is not a supported {kind} type"]
    return None
