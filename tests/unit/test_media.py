"""Media checks at creation (campaigns/media.py): kinds, URLs, types and captions per gateway,
size limits per gateway, and the HEAD request over a real loopback HTTP server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from campaigns.errors import InvalidArgument
from campaigns.gateways import GATEWAY_KINDS
from campaigns.media import (
    MB,
    MEDIA_KINDS,
    RULES,
    MediaSpec,
    check_size,
    file_name,
    media_spec,
    size_limit,
)

ALL = ("cloud-api", "waha", "evolution", "console")


def test_rules__cover_exactly_the_catalogues_gateway_kinds_and_every_media_kind() -> None:
    assert set(RULES) == set(GATEWAY_KINDS)
    for rules in RULES.values():
        assert set(rules) == set(MEDIA_KINDS)


@pytest.mark.parametrize(
    ("kind", "url", "mime"),
    [
        ("image", "https://cdn.example.com/a/promo.JPG", "image/jpeg"),
        ("document", "https://cdn.example.com/price%20list.pdf", "application/pdf"),
        ("audio", "https://cdn.example.com/hello.ogg", "audio/ogg"),
        ("video", "http://cdn.example.com/clip.mp4?sig=abc", "video/mp4"),
    ],
)
def test_media_spec__derives_the_type_from_the_extension(kind: str, url: str, mime: str) -> None:
    spec = media_spec({"kind": kind, "url": url}, ALL)
    assert spec is not None
    assert (spec.kind, spec.url, spec.mime) == (kind, url, mime)


def test_media_spec__none_is_no_media() -> None:
    assert media_spec(None, ["waha"]) is None


def test_media_spec__given_type_is_normalised() -> None:
    spec = media_spec(
        {"kind": "audio", "url": "https://x.example/v", "mime": "Audio/OGG; codecs=opus"}, ALL
    )
    assert spec is not None and spec.mime == "audio/ogg"
    video = media_spec(
        {"kind": "video", "url": "https://x.example/v", "mime": "video/3gp"}, ["cloud-api"]
    )
    assert video is not None and video.mime == "video/3gpp"


def test_media_spec__document_filename_defaults_to_the_urls_file_name() -> None:
    spec = media_spec({"kind": "document", "url": "https://x.example/d/price%20list.pdf"}, ALL)
    assert spec is not None and spec.filename == "price list.pdf"
    named = media_spec(
        {"kind": "document", "url": "https://x.example/d/1.pdf", "filename": "Tabela.pdf"}, ALL
    )
    assert named is not None and named.filename == "Tabela.pdf"


def test_media_spec__accepts_its_own_spec_and_round_trips_through_json() -> None:
    spec = media_spec({"kind": "image", "url": "https://x.example/p.png"}, ["cloud-api"])
    assert spec is not None
    assert media_spec(spec, ["cloud-api"]) == spec
    assert MediaSpec.from_json(spec.to_json()) == spec
    assert spec.to_json() == {
        "kind": "image",
        "url": "https://x.example/p.png",
        "mime": "image/png",
        "filename": None,
    }


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("https://x.example/p.jpg", "must be an object"),
        ({"kind": "sticker", "url": "https://x.example/p.webp"}, "media.kind must be one of"),
        ({"kind": "image"}, "media.url must be an http(s) URL"),
        ({"kind": "image", "url": "ftp://x.example/p.jpg"}, "http(s) URL with a host"),
        ({"kind": "image", "url": "https:///p.jpg"}, "http(s) URL with a host"),
        ({"kind": "image", "url": "https://x.example/a b.jpg"}, "without spaces"),
        ({"kind": "image", "url": "https://u:pw@x.example/p.jpg"}, "user or password"),
        ({"kind": "image", "url": "https://x.example/p"}, "give media.mime"),
        ({"kind": "image", "url": "https://x.example/p.pdf"}, "not a WhatsApp image type"),
        ({"kind": "image", "url": "https://x.example/p.gif", "mime": "image/gif"}, "image/gif"),
        ({"kind": "image", "url": "https://x.example/p.jpg", "size": 3}, "unknown field 'size'"),
        ({"kind": "image", "url": "https://x.example/p.jpg", "filename": "p.jpg"}, "documents"),
        ({"kind": "document", "url": "https://x.example/a.pdf", "filename": "../x"}, "plain"),
        ({"kind": "image", "url": "https://x.example/p.jpg", "mime": 7}, "must be a string"),
    ],
)
def test_media_spec__refuses_naming_the_problem(value: Any, words: str) -> None:
    with pytest.raises(InvalidArgument, match=words.replace("(", r"\(").replace(")", r"\)")):
        media_spec(value, ALL)


def test_media_spec__type_must_suit_every_gateway_of_the_pool() -> None:
    png = {"kind": "image", "url": "https://x.example/p.png"}
    assert media_spec(png, ["cloud-api", "evolution"]) is not None
    # WAHA's docs: images must be sent as JPEG (no convert flag for images)
    with pytest.raises(InvalidArgument, match="gateway waha does not send image of type image/png"):
        media_spec(png, ["cloud-api", "waha"])
    gp = {"kind": "video", "url": "https://x.example/v.3gp"}
    assert media_spec(gp, ["cloud-api"]) is not None
    with pytest.raises(InvalidArgument, match=r"waha .* video/3gpp.*takes video/mp4"):
        media_spec(gp, ["waha"])


def test_media_spec__audio_takes_no_caption_on_any_gateway() -> None:
    voice = {"kind": "audio", "url": "https://x.example/v.mp3"}
    assert media_spec(voice, ALL, caption="") is not None
    assert media_spec(voice, ALL, caption="   ") is not None
    for gateway in ("cloud-api", "waha", "evolution"):
        with pytest.raises(InvalidArgument, match=f"gateway {gateway} sends audio without"):
            media_spec(voice, [gateway], caption="Olá {name}")


def test_media_spec__caption_at_most_1024_characters() -> None:
    image = {"kind": "image", "url": "https://x.example/p.jpg"}
    assert media_spec(image, ALL, caption="x" * 1024) is not None
    with pytest.raises(InvalidArgument, match="1025 characters; WhatsApp takes at most 1024"):
        media_spec(image, ALL, caption="x" * 1025)


def test_media_spec__unknown_or_missing_gateways_are_refused() -> None:
    image = {"kind": "image", "url": "https://x.example/p.jpg"}
    with pytest.raises(InvalidArgument, match="unknown gateway kind 'telegram'"):
        media_spec(image, ["waha", "telegram"])
    with pytest.raises(InvalidArgument, match="no gateway kind"):
        media_spec(image, [])


def test_media_spec__name_prefixes_the_message() -> None:
    with pytest.raises(InvalidArgument, match=r"^--media\.kind must be"):
        media_spec({"kind": "gif", "url": "https://x.example/p.gif"}, ALL, name="--media")


@pytest.mark.parametrize(
    ("kind", "url", "limit"),
    [
        ("image", "https://x.example/p.jpg", 5 * MB),
        ("document", "https://x.example/d.pdf", 100 * MB),
        ("audio", "https://x.example/a.mp3", 16 * MB),
        ("video", "https://x.example/v.mp4", 16 * MB),
    ],
)
def test_size_limit__cloud_apis_published_limits(kind: str, url: str, limit: int) -> None:
    spec = media_spec({"kind": kind, "url": url}, ALL)
    assert spec is not None
    assert size_limit(spec, ["cloud-api"]) == (limit, "cloud-api")
    # WAHA and Evolution document none: the Cloud API's (UNCONFIRMED), console none
    assert size_limit(spec, ["waha"]) == (limit, "waha")
    assert size_limit(spec, ["evolution", "waha"]) == (limit, "evolution")
    assert size_limit(spec, ["console"]) is None


def test_file_name__for_gateways_that_need_one() -> None:
    assert file_name(MediaSpec("image", "https://x.example/a/p.jpg", "image/jpeg")) == "p.jpg"
    assert file_name(MediaSpec("image", "https://x.example/render", "image/jpeg")) == "image.jpg"
    doc = MediaSpec("document", "https://x.example/1", "application/pdf", "Tabela.pdf")
    assert file_name(doc) == "Tabela.pdf"


class _Files(BaseHTTPRequestHandler):
    """Serves ``HEAD /<bytes>`` with that Content-Length, ``/missing`` 404, ``/chunked``
    without a length; counts the requests."""

    calls: ClassVar[list[str]] = []

    def do_HEAD(self) -> None:
        self.calls.append(f"{self.command} {self.path}")
        name = self.path.lstrip("/").split(".")[0]
        if name == "missing":
            self.send_response(404)
            self.send_header("Content-Length", "0")
        elif name == "moved":
            self.send_response(302)
            self.send_header("Location", "/1000.jpg")
            self.send_header("Content-Length", "0")
        elif name == "chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", name)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def files() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Files.calls = []
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _image(url: str, gateways: tuple[str, ...] = ALL) -> MediaSpec:
    spec = media_spec({"kind": "image", "url": url}, gateways)
    assert spec is not None
    return spec


def test_check_size__returns_the_length_under_the_limit(files: str) -> None:
    url = f"{files}/{5 * MB}.jpg"
    assert check_size(_image(url), ALL, timeout=2.0) == 5 * MB
    assert _Files.calls == [f"HEAD /{5 * MB}.jpg"]


def test_check_size__over_the_smallest_limit_names_it_and_the_gateway(files: str) -> None:
    url = f"{files}/{5 * MB + 1}.jpg"
    with pytest.raises(InvalidArgument, match=r"5,000,001 bytes; gateway cloud-api .*5 MB"):
        check_size(_image(url), ("cloud-api", "console"), timeout=2.0)
    # a console-only pool has no limit
    assert check_size(_image(url, ("console",)), ("console",), timeout=2.0) == 5 * MB + 1


def test_check_size__error_status_or_no_answer_fails_the_download(files: str) -> None:
    with pytest.raises(InvalidArgument, match="answers HTTP 404; the gateway would fail"):
        check_size(_image(f"{files}/missing.jpg"), ALL, timeout=2.0)
    closed = "http://127.0.0.1:9/p.jpg"  # discard port: nothing listens
    with pytest.raises(InvalidArgument, match=r"cannot be reached .*would fail to download"):
        check_size(_image(closed), ALL, timeout=2.0)


def test_check_size__follows_redirects_and_accepts_no_length(files: str) -> None:
    assert check_size(_image(f"{files}/moved.jpg"), ALL, timeout=2.0) == 1000
    assert check_size(_image(f"{files}/chunked.jpg"), ALL, timeout=2.0) is None
