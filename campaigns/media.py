"""Media messages: an image, document, audio or video sent by URL, with an optional caption.

A campaign's media is checked once, at creation, against every gateway kind of its pool: the
kind, the URL, the type (MIME) each gateway takes for that kind, whether that kind takes a
caption, and (:func:`check_size`, one HEAD request) the size against the smallest limit among
them. A media refused by one session of a pool would otherwise fail every recipient routed to
that session, hours into the campaign.

Where the numbers come from (``MB`` here is 1,000,000 bytes: the stricter reading of Meta's
"5 MB"; a file between 5,000,000 and 5 MiB would pass a binary reading and fail at Meta):

* **Cloud API**: Meta's "Supported media types" table (developers.facebook.com, WhatsApp Cloud
  API reference, reproduced on its image-, audio- and document-message pages and in AWS End
  User Messaging's "Supported media file types and sizes in WhatsApp"): image ``image/jpeg``,
  ``image/png`` 5 MB; document ``text/plain``, PDF, Word, Excel, PowerPoint 100 MB; audio
  ``audio/aac``, ``audio/amr``, ``audio/mpeg``, ``audio/mp4``, ``audio/ogg`` (Opus only) 16 MB;
  video ``video/mp4``, ``video/3gpp`` (H.264 + AAC) 16 MB. Captions: at most 1024 characters
  (Meta's image-message page; ``MediaObject_1.caption.maxLength`` in Meta's OpenAPI document),
  on images, documents and videos; audio takes none (Meta's Node SDK ``AudioMediaObject`` has
  ``link``/``id`` only). ``filename`` is a document's (SDK ``DocumentMediaObject``). Meta's
  OpenAPI document (v23.0) itself gives the shapes (``ImageMessage``... ``MediaObject``), no
  types or sizes.
* **WAHA**: the docs (devlikeapro/waha-docs, content/docs/how-to/send-messages/) give the
  endpoints and formats but **no size limit**: image "You must convert to JPEG before sending"
  (no convert flag for images: ``image/jpeg`` only); video "WhatsApp accepts only a file in mp4
  using libx264" (``video/mp4`` only); voice OGG/Opus, or ``convert: true`` for other audio
  (so the Cloud API's audio types); documents through sendFile. Captions: sendImage, sendFile
  and sendVideo take one, sendVoice none (WAHA's ``MessageVoiceRequest``,
  src/structures/chatting.dto.ts). Media sends are WAHA Plus features (features.md).
* **Evolution API**: its OpenAPI document (``/message/sendMedia/{instance}``: ``mediatype``
  "Image, video or document", any ``mimetype``) and source (``mediaMessageSchema``: mediatype
  image, document, video, audio) give **no type list and no size limit**.

UNCONFIRMED, our choice: where WAHA or Evolution documents no limit or type list we apply the
Cloud API's, since WhatsApp itself stores and delivers the file whatever relays it; the
caption limit of 1024 characters likewise. A document type WhatsApp's apps accept but the Cloud
API does not list (a .zip, say) is refused on every gateway: a refusal at creation costs the
operator a conversion; an acceptance WhatsApp later refuses costs the whole list.
The console gateway sends nothing: every listed type, no size limit.
"""

from __future__ import annotations

import posixpath
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import requests

from campaigns.errors import InvalidArgument

MEDIA_KINDS = ("image", "document", "audio", "video")
MB = 1_000_000
MAX_CAPTION = 1024
MAX_URL = 2048
MAX_FILENAME = 240

IMAGE_TYPES = frozenset({"image/jpeg", "image/png"})
DOCUMENT_TYPES = frozenset(
    {
        "text/plain",
        "application/pdf",
        "application/msword",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.ms-excel",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.ms-powerpoint",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    }
)
AUDIO_TYPES = frozenset({"audio/aac", "audio/amr", "audio/mpeg", "audio/mp4", "audio/ogg"})
VIDEO_TYPES = frozenset({"video/mp4", "video/3gpp"})

# Our own table, not :mod:`mimetypes`: that one reads the host's /etc/mime.types, so the same
# URL would get a different type (or none: .amr, .3gp) on another machine.
EXTENSION_TYPES: Mapping[str, str] = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".txt": "text/plain",
    ".pdf": "application/pdf",
    ".doc": "application/msword",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".xls": "application/vnd.ms-excel",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".ppt": "application/vnd.ms-powerpoint",
    ".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ".aac": "audio/aac",
    ".amr": "audio/amr",
    ".mp3": "audio/mpeg",
    ".m4a": "audio/mp4",
    ".ogg": "audio/ogg",
    ".opus": "audio/ogg",
    ".mp4": "video/mp4",
    ".3gp": "video/3gpp",
}
# Meta's table itself is spelled "video/3gp" in some copies and "video/3gpp" (the IANA name)
# in others; both mean the same file.
_ALIASES: Mapping[str, str] = {"video/3gp": "video/3gpp", "image/jpg": "image/jpeg"}
_KIND_TYPES: Mapping[str, frozenset[str]] = {
    "image": IMAGE_TYPES,
    "document": DOCUMENT_TYPES,
    "audio": AUDIO_TYPES,
    "video": VIDEO_TYPES,
}


@dataclass(frozen=True, slots=True)
class _Rule:
    """What one gateway kind takes for one media kind."""

    types: frozenset[str]
    max_bytes: int | None
    caption: bool


def _rules(
    image: frozenset[str], video: frozenset[str], *, limits: bool = True
) -> Mapping[str, _Rule]:
    def size(megabytes: int) -> int | None:
        return megabytes * MB if limits else None

    return {
        "image": _Rule(image, size(5), True),
        "document": _Rule(DOCUMENT_TYPES, size(100), True),
        "audio": _Rule(AUDIO_TYPES, size(16), False),
        "video": _Rule(video, size(16), True),
    }


# gateway kind (campaigns.gateways.GATEWAY_KINDS) -> media kind -> rule; see the docstring
RULES: Mapping[str, Mapping[str, _Rule]] = {
    "cloud-api": _rules(IMAGE_TYPES, VIDEO_TYPES),
    "waha": _rules(frozenset({"image/jpeg"}), frozenset({"video/mp4"})),  # sizes UNCONFIRMED
    "evolution": _rules(IMAGE_TYPES, VIDEO_TYPES),  # types and sizes UNCONFIRMED
    "console": _rules(IMAGE_TYPES, VIDEO_TYPES, limits=False),
}


@dataclass(frozen=True, slots=True)
class MediaSpec:
    """One media file a campaign sends by URL; the message's text is its caption."""

    kind: str
    """One of :data:`MEDIA_KINDS`."""
    url: str
    """The http(s) URL the gateway downloads the file from."""
    mime: str
    """Its type (``image/jpeg``...), given or derived from the URL's extension."""
    filename: str | None = None
    """Documents: the name shown to the person (None for the other kinds)."""

    def to_json(self) -> dict[str, Any]:
        """The JSON object a campaign stores (``Campaign.media``)."""
        return {"kind": self.kind, "url": self.url, "mime": self.mime, "filename": self.filename}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> MediaSpec:
        """The spec :meth:`to_json` stored (already checked at creation)."""
        try:
            filename = value.get("filename")
            return cls(
                kind=str(value["kind"]),
                url=str(value["url"]),
                mime=str(value["mime"]),
                filename=None if filename is None else str(filename),
            )
        except (KeyError, TypeError, AttributeError):
            raise InvalidArgument(
                f"stored media must be an object with kind, url and mime, got {value!r}"
            ) from None


def file_name(spec: MediaSpec) -> str:
    """The file's name as the gateways want one (Evolution's ``fileName``, WAHA's
    ``file.filename``): the document's filename, else the URL's last path segment when it has
    an extension, else ``<kind><extension of its type>``."""
    if spec.filename:
        return spec.filename
    base = _url_basename(spec.url)
    if posixpath.splitext(base)[1]:
        return base
    extension = next((ext for ext, mime in EXTENSION_TYPES.items() if mime == spec.mime), "")
    return f"{spec.kind}{extension}"


def type_from_url(url: str) -> str | None:
    """The type :data:`EXTENSION_TYPES` gives the URL's file extension, or None."""
    return EXTENSION_TYPES.get(posixpath.splitext(_url_basename(url))[1].lower())


def media_spec(
    value: object, gateways: Collection[str], *, caption: str = "", name: str = "media"
) -> MediaSpec | None:
    """Check a campaign's media against every gateway kind in ``gateways`` (its pool's) and
    return it as a :class:`MediaSpec`; None when ``value`` is None.

    ``value`` is a :class:`MediaSpec` or a mapping with ``kind``, ``url`` and optionally
    ``mime`` (else derived from the URL's extension) and ``filename`` (documents only; defaults
    to the URL's file name). ``caption`` is the message text sent with it: its length is
    checked as written (variables filled per recipient may lengthen it). Raises
    :class:`InvalidArgument` naming ``name`` and the problem (the gateway, for a type or a
    caption that gateway refuses)."""
    if value is None:
        return None
    fields = value.to_json() if isinstance(value, MediaSpec) else value
    if not isinstance(fields, Mapping):
        raise InvalidArgument(f"{name} must be an object with kind and url, got {value!r}")
    unknown = sorted(set(map(str, fields)) - {"kind", "url", "mime", "filename"})
    if unknown:
        raise InvalidArgument(
            f"{name} has unknown field {unknown[0]!r} (known: kind, url, mime, filename)"
        )
    kind = fields.get("kind")
    if kind not in MEDIA_KINDS:
        raise InvalidArgument(f"{name}.kind must be one of {', '.join(MEDIA_KINDS)}, got {kind!r}")
    url = _check_url(fields.get("url"), name)
    mime = _check_mime(fields.get("mime"), kind, url, name)
    filename = _check_filename(fields.get("filename"), kind, url, name)
    pool = _check_gateways(gateways, name)
    for gateway in pool:
        rule = RULES[gateway][kind]
        if mime not in rule.types:
            raise InvalidArgument(
                f"{name}: gateway {gateway} does not send {kind} of type {mime} "
                f"(it takes {', '.join(sorted(rule.types))})"
            )
        if caption.strip() and not rule.caption:
            raise InvalidArgument(
                f"{name}: gateway {gateway} sends {kind} without a caption; leave the message "
                "text empty or send the text as its own campaign"
            )
    if len(caption) > MAX_CAPTION:
        raise InvalidArgument(
            f"{name}: the caption is {len(caption)} characters; WhatsApp takes at most "
            f"{MAX_CAPTION} with a media"
        )
    return MediaSpec(kind=kind, url=url, mime=mime, filename=filename)


def size_limit(spec: MediaSpec, gateways: Collection[str]) -> tuple[int, str] | None:
    """``(bytes, gateway)``: the smallest size limit among ``gateways`` for ``spec``'s kind,
    and the gateway that sets it; None when none of them has a limit (console only)."""
    limits = [
        (rule.max_bytes, gateway)
        for gateway in _check_gateways(gateways, "media")
        if (rule := RULES[gateway][spec.kind]).max_bytes is not None
    ]
    return min(limits, default=None, key=lambda pair: (pair[0], pair[1]))


def check_size(spec: MediaSpec, gateways: Collection[str], *, timeout: float) -> int | None:
    """One ``HEAD`` request to ``spec.url`` (redirects followed, as the gateways download it):
    its ``Content-Length``, checked against :func:`size_limit`.

    Raises :class:`InvalidArgument` when the file is larger than the smallest limit of the
    pool's gateways (naming the limit and the gateway), or when the URL does not answer or
    answers an error status (the gateway would fail to download it, every recipient's send
    with it). An answer without a usable ``Content-Length`` (chunked, or a server that only
    sizes GETs) is accepted and returns None: the size is then the gateway's to check."""
    try:
        response = requests.head(spec.url, timeout=timeout, allow_redirects=True)
    except requests.RequestException as exc:
        raise InvalidArgument(
            f"media URL {spec.url} cannot be reached ({type(exc).__name__}); the gateway would "
            "fail to download it"
        ) from None
    with response:
        if response.status_code >= 400:
            raise InvalidArgument(
                f"media URL {spec.url} answers HTTP {response.status_code}; the gateway would "
                "fail to download it"
            )
        raw = response.headers.get("Content-Length", "").strip()
    if not raw.isdigit():
        return None
    length = int(raw)
    limit = size_limit(spec, gateways)
    if limit is not None and length > limit[0]:
        raise InvalidArgument(
            f"media {spec.url} is {length:,} bytes; gateway {limit[1]} sends {spec.kind} of at "
            f"most {limit[0]:,} bytes ({limit[0] // MB} MB)"
        )
    return length


def _check_gateways(gateways: Collection[str], name: str) -> list[str]:
    if isinstance(gateways, str) or not gateways:
        raise InvalidArgument(f"{name}: no gateway kind to check the media against")
    pool = sorted(set(gateways))
    for gateway in pool:
        if gateway not in RULES:
            raise InvalidArgument(
                f"{name}: unknown gateway kind {gateway!r}; expected one of {', '.join(RULES)}"
            )
    return pool


def _check_url(value: object, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgument(f"{name}.url must be an http(s) URL, got {value!r}")
    url = value.strip()
    if len(url) > MAX_URL or any(c.isspace() for c in url):
        raise InvalidArgument(
            f"{name}.url must be an http(s) URL of at most {MAX_URL} characters without spaces"
        )
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        raise InvalidArgument(f"{name}.url is not a valid URL: {url!r}") from None
    if parts.scheme.lower() not in ("http", "https") or not host:
        raise InvalidArgument(f"{name}.url must be an http(s) URL with a host, got {url!r}")
    if parts.username is not None or parts.password is not None:
        # stored with the campaign and sent to the gateway: secrets come from the environment
        raise InvalidArgument(f"{name}.url must not carry a user or password")
    return url


def _check_mime(value: object, kind: str, url: str, name: str) -> str:
    if value is None or value == "":
        mime = type_from_url(url)
        if mime is None:
            raise InvalidArgument(
                f"{name}: cannot tell the type of {url} from its extension; give {name}.mime"
            )
    elif isinstance(value, str):
        mime = value.split(";", 1)[0].strip().lower()  # "audio/ogg; codecs=opus"
        mime = _ALIASES.get(mime, mime)
    else:
        raise InvalidArgument(f"{name}.mime must be a string like image/jpeg, got {value!r}")
    if mime not in _KIND_TYPES[kind]:
        raise InvalidArgument(
            f"{name}: {mime} is not a WhatsApp {kind} type "
            f"(one of {', '.join(sorted(_KIND_TYPES[kind]))})"
        )
    return mime


def _check_filename(value: object, kind: str, url: str, name: str) -> str | None:
    if kind != "document":
        if value not in (None, ""):
            raise InvalidArgument(f"{name}.filename is for documents only, not {kind}")
        return None
    if value in (None, ""):
        value = _url_basename(url) or "document"
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgument(f"{name}.filename must be a file name, got {value!r}")
    filename = value.strip()
    if len(filename) > MAX_FILENAME or "/" in filename or "\\" in filename:
        raise InvalidArgument(
            f"{name}.filename must be a plain file name of at most {MAX_FILENAME} characters"
        )
    return filename


def _url_basename(url: str) -> str:
    return unquote(posixpath.basename(urlsplit(url).path))
