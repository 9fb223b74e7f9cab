"""Validation of Cloud API send bodies, answering the way the Graph API does: code 100 for an
unsupported or misspelled parameter, 131008 for a missing one, 131009 for an invalid value
(gateways.md §1.5).

Media messages (``image``, ``document``, ``audio``, ``video``) are checked as Meta's
``MediaObject`` by ``link`` (see :mod:`campaigns.sandbox.media` for what the sandbox cannot
check: it downloads nothing)."""

from __future__ import annotations

import re
from typing import Any

from campaigns.media import MAX_CAPTION, MEDIA_KINDS, RULES
from campaigns.sandbox.media import is_link, link_type

Problem = tuple[int, str, str]
"""(code, title, details) of a Cloud API error."""

_TOP_LEVEL = frozenset(
    {
        "messaging_product",
        "recipient_type",
        "to",
        "type",
        "text",
        "template",
        *MEDIA_KINDS,
        "context",
        "biz_opaque_callback_data",
        "status",
    }
)
_COMPONENT_TYPES = frozenset({"header", "body", "button", "footer"})
_PARAMETER_TYPES = frozenset(
    {
        "text",
        "currency",
        "date_time",
        "image",
        "document",
        "video",
        "payload",
        "location",
        "coupon_code",
        "action",
    }
)
_TO = re.compile(r"^\+?[0-9][0-9 ()-]{3,20}$")
MAX_TEXT = 4096


def unsupported(name: str) -> Problem:
    return (100, "Invalid parameter", f"Param {name} is not a valid parameter.")


def missing(name: str) -> Problem:
    return (131008, "Required parameter is missing", f"The parameter {name} is required.")


def invalid(name: str, why: str) -> Problem:
    return (131009, "Parameter value is not valid", f"Param {name} {why}.")


def validate_send(body: Any) -> Problem | None:
    """The first problem of a send body, or None when the sandbox accepts it."""
    if not isinstance(body, dict):
        return (100, "Invalid parameter", "The request body must be a JSON object.")
    for name in body:
        if name not in _TOP_LEVEL:
            return unsupported(name)
    if "messaging_product" not in body:
        return missing("messaging_product")
    if body["messaging_product"] != "whatsapp":
        return invalid("messaging_product", "must be one of {WHATSAPP}")
    # The Graph API defaults recipient_type to "individual"; only a wrong value is an error.
    if body.get("recipient_type", "individual") not in ("individual", "group"):
        return invalid("recipient_type", "must be one of {INDIVIDUAL, GROUP}")
    to = body.get("to")
    if to is None:
        return missing("to")
    if not isinstance(to, str) or not _TO.match(to):
        return invalid("to", "must be a phone number")
    kind = body.get("type", "text")
    if kind == "text":
        return _validate_text(body.get("text"))
    if kind == "template":
        return _validate_template(body.get("template"))
    if kind in MEDIA_KINDS:
        return _validate_media(kind, body.get(kind))
    return invalid("type", "must be text, template, image, document, audio or video")


def _validate_media(kind: str, media: Any) -> Problem | None:
    """A ``MediaObject`` by link: ``caption`` (not for audio), ``filename`` (documents)."""
    if media is None:
        return missing(kind)
    if not isinstance(media, dict):
        return invalid(kind, "must be an object")
    allowed = {"link", "id"} | ({"caption"} if kind != "audio" else set())
    for name in media:
        if name not in allowed | ({"filename"} if kind == "document" else set()):
            return unsupported(f"{kind}['{name}']")
    if "id" in media:
        return invalid(f"{kind}['id']", "is not a media the sandbox has (send a link)")
    link = media.get("link")
    if link is None:
        return missing(f"{kind}['link']")
    if not is_link(link):
        return invalid(f"{kind}['link']", "must be an http(s) URL")
    mime = link_type(link)
    if mime is not None and mime not in RULES["cloud-api"][kind].types:
        return invalid(f"{kind}['link']", f"is a {mime} file, not a supported {kind} type")
    caption = media.get("caption", "")
    if not isinstance(caption, str) or len(caption) > MAX_CAPTION:
        return invalid(
            f"{kind}['caption']", f"must be a string of at most {MAX_CAPTION} characters"
        )
    if not isinstance(media.get("filename", ""), str):
        return invalid(f"{kind}['filename']", "must be a string")
    return None


def _validate_text(text: Any) -> Problem | None:
    if text is None:
        return missing("text")
    if not isinstance(text, dict):
        return invalid("text", "must be an object")
    for name in text:
        if name not in ("body", "preview_url"):
            return unsupported(f"text['{name}']")
    body = text.get("body")
    if body is None:
        return missing("text['body']")
    if not isinstance(body, str) or not body.strip():
        return invalid("text['body']", "must be a non-empty string")
    if len(body) > MAX_TEXT:
        return invalid("text['body']", f"must be at most {MAX_TEXT} characters long")
    if not isinstance(text.get("preview_url", False), bool):
        return invalid("text['preview_url']", "must be a boolean")
    return None


def _validate_template(template: Any) -> Problem | None:
    if template is None:
        return missing("template")
    if not isinstance(template, dict):
        return invalid("template", "must be an object")
    for name in template:
        if name not in ("name", "language", "components", "namespace"):
            return unsupported(f"template['{name}']")
    name = template.get("name")
    if name is None:
        return missing("template['name']")
    if not isinstance(name, str) or not name:
        return invalid("template['name']", "must be a non-empty string")
    problem = _validate_language(template.get("language"))
    if problem is not None:
        return problem
    components = template.get("components", [])
    if not isinstance(components, list):
        return invalid("template['components']", "must be an array")
    for index, component in enumerate(components):
        problem = _validate_component(index, component)
        if problem is not None:
            return problem
    return None


def _validate_language(language: Any) -> Problem | None:
    if language is None:
        return missing("template['language']")
    if not isinstance(language, dict):
        return invalid("template['language']", "must be an object")
    code = language.get("code")
    if code is None:
        return missing("template['language']['code']")
    if not isinstance(code, str) or not code:
        return invalid("template['language']['code']", "must be a language code")
    if language.get("policy", "deterministic") != "deterministic":
        return invalid("template['language']['policy']", "must be deterministic")
    return None


def _validate_component(index: int, component: Any) -> Problem | None:
    where = f"template['components'][{index}]"
    if not isinstance(component, dict):
        return invalid(where, "must be an object")
    kind = component.get("type")
    if kind is None:
        return missing(f"{where}['type']")
    if kind not in _COMPONENT_TYPES:
        return invalid(f"{where}['type']", "must be one of {HEADER, BODY, BUTTON, FOOTER}")
    if kind == "button" and ("sub_type" not in component or "index" not in component):
        return missing(f"{where}['sub_type'/'index']")
    parameters = component.get("parameters", [])
    if not isinstance(parameters, list):
        return invalid(f"{where}['parameters']", "must be an array")
    for number, parameter in enumerate(parameters):
        if not isinstance(parameter, dict) or parameter.get("type") not in _PARAMETER_TYPES:
            return invalid(
                f"{where}['parameters'][{number}]['type']", "must be a supported parameter type"
            )
    return None
