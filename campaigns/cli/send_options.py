"""The options of ``campaigns send`` for consent and content: the legal basis, variant texts,
media by URL and the duplicate window, each checked before anything is created.

The checks are the Python API's (:mod:`campaigns.consent`, :mod:`campaigns.inputs`,
:mod:`campaigns.media`), raised naming the option the operator typed rather than the
keyword argument it becomes (``--legal-basis``, not ``legal_basis``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer

from campaigns import consent, inputs, media
from campaigns.cli import options
from campaigns.errors import InvalidArgument, InvalidMessage
from campaigns.media import MediaSpec
from campaigns.store import CampaignStateManager
from campaigns.store.creation import MAX_DEDUPE_DAYS

MEDIA_FLAGS = ("--media-url", "--media-type", "--media-mime", "--media-filename")

# media_spec names its fields "media.url", "media.kind"...: the option each one comes from
_MEDIA_FIELDS = {
    "media.url": "--media-url",
    "media.kind": "--media-type",
    "media.mime": "--media-mime",
    "media.filename": "--media-filename",
}


def read_text_file(path: Path, what: str) -> str:
    """A UTF-8 text file (a byte-order mark is dropped), named ``what`` in errors."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidMessage(
            f"cannot read {what} {str(path)!r}: {exc.strerror}; nothing was created"
        ) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidMessage(
            f"{what} {str(path)!r} is not UTF-8 (byte {exc.start}); nothing was created"
        ) from None


def legal_basis(ctx: typer.Context, param: typer.CallbackParam, value: str | None) -> Any:
    """``consent`` or ``legitimate_interest`` (``legitimate-interest`` too)."""
    if value is None or ctx.resilient_parsing:
        return value
    return consent.legal_basis(value, options.option_name(param))


def legal_note(ctx: typer.Context, param: typer.CallbackParam, value: str | None) -> Any:
    if value is None or ctx.resilient_parsing:
        return value
    return consent.legal_note(value, options.option_name(param))


def dedupe_days(ctx: typer.Context, param: typer.CallbackParam, value: float | None) -> Any:
    """Days above 0: a window of 0 days would skip nothing and say it did something."""
    if value is None or ctx.resilient_parsing:
        return value
    return inputs.finite_number(
        value, options.option_name(param), unit="days", maximum=MAX_DEDUPE_DAYS,
        above_minimum=True,
    )  # fmt: skip


def variant_texts(ctx: typer.Context, param: typer.CallbackParam, value: list[str] | None) -> Any:
    """Each ``--variant`` is a message text on its own (not blank, no control character)."""
    if not value or ctx.resilient_parsing:
        return value
    return [inputs.message_text(text, options.option_name(param)) for text in value]


def media_kind(ctx: typer.Context, param: typer.CallbackParam, value: str | None) -> Any:
    if value is None or ctx.resilient_parsing:
        return value
    kind = value.strip().lower()
    if kind not in media.MEDIA_KINDS:
        raise InvalidArgument(
            f"{options.option_name(param)} must be one of {', '.join(media.MEDIA_KINDS)}, "
            f"got {value!r}"
        )
    return kind


def read_variants(variants: Sequence[str], files: Sequence[Path]) -> list[str]:
    """The texts besides the message: ``--variant`` texts, then each ``--variant-file``'s, in
    the order given (so variant 2 is the first of them, as errors number them)."""
    texts = list(variants)
    for path in files:
        what = "variant file"
        text = read_text_file(path, what)
        texts.append(inputs.message_text(text, f"{what} {str(path)!r}"))
    return texts


def media_fields(
    url: str | None, kind: str | None, mime: str | None, filename: str | None
) -> dict[str, Any] | None:
    """The media options as :func:`campaigns.media.media_spec` takes them; None without
    ``--media-url``. The kind, when not given, follows from the type (given, or the URL's
    extension): ``image/*`` an image, ``audio/*`` audio, ``video/*`` a video, else a document.
    Another media option without ``--media-url`` is an error: the operator meant a media."""
    if url is None:
        given = [
            flag for flag, value in zip(MEDIA_FLAGS[1:], (kind, mime, filename), strict=True)
            if value is not None
        ]  # fmt: skip
        if given:
            raise InvalidArgument(f"{given[0]} needs --media-url; nothing was created")
        return None
    if kind is None:
        known = mime or media.type_from_url(url.strip())
        if not known:
            raise InvalidArgument(
                f"cannot tell the kind of media at {url} from its extension; give "
                f"--media-type ({', '.join(media.MEDIA_KINDS)}) and --media-mime"
            )
        major = known.split("/", 1)[0].strip().lower()
        kind = major if major in ("image", "audio", "video") else "document"
    return {"kind": kind, "url": url, "mime": mime, "filename": filename}


def check_media(
    store: CampaignStateManager,
    fields: dict[str, Any] | None,
    pool: Sequence[str],
    caption: str,
) -> MediaSpec | None:
    """The media checked against every gateway of the pool, as creation checks it (the size
    is the processor's one HEAD request), with the options named in the errors."""
    if fields is None:
        return None
    kinds = [store.get_session(name).gateway for name in pool]
    try:
        return media.media_spec(fields, kinds, caption=caption)
    except InvalidArgument as exc:
        raise InvalidArgument(_option_names(str(exc))) from None


def require_legal_basis(store: CampaignStateManager, given: str | None) -> str:
    """The campaign's basis: ``--legal-basis``, else the deployment's ``LEGAL_BASIS``; neither
    is an error (LGPD: the sender must be able to say what it relied on)."""
    basis = given or store.settings.legal_basis
    if basis is None:
        raise InvalidArgument(
            "--legal-basis is required: the LGPD basis this campaign relies on, one of "
            f"{', '.join(consent.LEGAL_BASES)} (or set LEGAL_BASIS for a deployment's "
            "default); nothing was created"
        )
    return basis


def _option_names(message: str) -> str:
    for field, option in _MEDIA_FIELDS.items():
        message = message.replace(field, option)
    if message.startswith("media: "):  # a problem of the media as a whole: its URL names it
        message = "--media-url: " + message.removeprefix("media: ")
    return message
