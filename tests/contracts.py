"""Validate gateway request and response bodies against the gateways' own OpenAPI documents.

The documents live in ``tests/contracts/openapi/`` (see its README). Each is parsed once, on
first use, and cached: Meta's YAML is about 1 MB, so it is loaded lazily with the C loader when
PyYAML has one. Schemas are checked with :mod:`jsonschema` (Draft 2020-12) and ``$ref``\\ s are
resolved through a :mod:`referencing` registry holding the whole document, so a schema is
validated exactly as the document defines it, not as a hand-copied excerpt.

Every ``validate_*`` function returns ``None`` when the body conforms and raises
:class:`jsonschema.ValidationError` (the most relevant error, via ``best_match``) when it
does not. Usage::

    from tests.contracts import validate_cloud_request
    validate_cloud_request({"messaging_product": "whatsapp", ...})

Two deliberate adjustments, both documented where they are made:

* Meta's quirk: its message schemas put ``additionalProperties: false`` inside an ``allOf``
  branch, which rejects the base properties of every valid message. The README says to drop it;
  we drop it *and* put ``unevaluatedProperties: false`` on the schema holding the ``allOf``, which
  is what the authors meant: unknown top-level fields still fail.
* Evolution's request schemas list every accepted field but do not forbid others; by default we
  forbid them (``strict=True``) so a misspelled optional field (``linkpreview``) is caught.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

OPENAPI_DIR = Path(__file__).parent / "contracts" / "openapi"
META_DOCUMENT = OPENAPI_DIR / "meta-whatsapp-business-messaging-v23.0.yaml"
EVOLUTION_DOCUMENT = OPENAPI_DIR / "evolution-api-v2.json"

_META_URI = "urn:contracts:meta-whatsapp-business-messaging"
_EVOLUTION_URI = "urn:contracts:evolution-api-v2"
_META_SEND_PATH = "/{Version}/{Phone-Number-ID}/messages"

# The generic Evolution error envelope (docs/gateways.md §3.1, from src/main.ts). The OpenAPI
# document only describes the 404 of a few operations; every other error status of every
# operation comes out of this one handler, so undocumented statuses are checked against it.
EVOLUTION_ERROR_ENVELOPE: dict[str, Any] = {
    "type": "object",
    "required": ["status", "error", "response"],
    "properties": {
        "status": {"type": "integer"},
        "error": {"type": "string"},
        "response": {
            "type": "object",
            "required": ["message"],
            "properties": {"message": {"type": ["string", "array"]}},
        },
    },
}


# --------------------------------------------------------------------------- loading


def _yaml_loader() -> type[yaml.SafeLoader]:
    # CSafeLoader parses the 1 MB document about ten times faster; fall back when PyYAML was
    # built without libyaml.
    loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return loader


_BASE_MESSAGE_REF = {"$ref": "#/components/schemas/BaseMessageProperties"}


def _fix_allof_additional_properties(node: Any) -> Any:
    """Meta's quirk fix (see the README): in place, drop ``additionalProperties: false`` from
    ``allOf`` branches and forbid unknown properties on the parent with
    ``unevaluatedProperties: false`` instead, which sees the properties of every branch.

    The message schemas built on ``BaseMessageProperties`` get the same treatment even where
    the document forgot the ``additionalProperties: false`` (``TemplateMessage``): a message
    is one closed shape, and a typo in a top-level field must fail for every type."""
    if isinstance(node, dict):
        branches = node.get("allOf")
        if isinstance(branches, list):
            closed = _BASE_MESSAGE_REF in branches
            for branch in branches:
                if isinstance(branch, dict) and branch.get("additionalProperties") is False:
                    del branch["additionalProperties"]
                    closed = True
            if closed:
                node.setdefault("unevaluatedProperties", False)
        for value in node.values():
            _fix_allof_additional_properties(value)
    elif isinstance(node, list):
        for item in node:
            _fix_allof_additional_properties(item)
    return node


@functools.cache
def meta_document() -> dict[str, Any]:
    """Meta's OpenAPI 3.1 document, parsed once, with the allOf quirk fixed."""
    with META_DOCUMENT.open("rb") as handle:
        document: dict[str, Any] = yaml.load(handle, Loader=_yaml_loader())
    return _fix_allof_additional_properties(document)  # type: ignore[no-any-return]


@functools.cache
def evolution_document() -> dict[str, Any]:
    """Evolution API's OpenAPI 3.0 document, parsed once."""
    with EVOLUTION_DOCUMENT.open("rb") as handle:
        document: dict[str, Any] = json.load(handle)
    return document


@functools.cache
def _registry(uri: str) -> Registry[Any]:
    document = meta_document() if uri == _META_URI else evolution_document()
    # Neither document declares a JSON Schema dialect; OpenAPI 3.1 is 2020-12, and the 3.0
    # subset Evolution uses (type, properties, required, items, enum) means the same there.
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(uri, resource)
    return registry


def _pointer(*parts: str) -> str:
    escaped = (part.replace("~", "~0").replace("/", "~1") for part in parts)
    return "#/" + "/".join(escaped)


@functools.cache
def _validator(uri: str, pointer: str) -> jsonschema.Draft202012Validator:
    schema = {"$ref": uri + pointer}
    return jsonschema.Draft202012Validator(schema, registry=_registry(uri))


def _check(validator: jsonschema.Draft202012Validator, body: Any) -> None:
    error = jsonschema.exceptions.best_match(validator.iter_errors(body))
    if error is not None:
        raise error


# --------------------------------------------------------------------------- Meta Cloud API


def validate_cloud_request(body: Mapping[str, Any]) -> None:
    """Check a Cloud API send body against schema ``Message`` of operation ``sendMessage``."""
    _check(_validator(_META_URI, _pointer("components", "schemas", "Message")), body)


def validate_cloud_response(status: int, body: Any) -> None:
    """Check a Cloud API send answer: a 200 against the operation's documented success schema
    (``MessageResponsePayload``); any other status against ``GraphAPIError``, the standard Graph
    API error that the document uses for its operations (``sendMessage`` itself documents no
    error response)."""
    if status == 200:
        pointer = _pointer(
            "paths",
            _META_SEND_PATH,
            "post",
            "responses",
            "200",
            "content",
            "application/json",
            "schema",
        )
    else:
        pointer = _pointer("components", "schemas", "GraphAPIError")
    _check(_validator(_META_URI, pointer), body)


# --------------------------------------------------------------------------- Evolution API


def _evolution_operation(path_template: str) -> tuple[str, dict[str, Any]]:
    item = evolution_document()["paths"].get(path_template)
    if item is None:
        raise KeyError(f"Evolution document has no path {path_template!r}")
    for method in ("post", "get", "put", "delete", "patch"):
        if method in item:
            return method, item[method]
    raise KeyError(f"Evolution path {path_template!r} has no operation")


@functools.cache
def _strict_request_validator(pointer: str) -> jsonschema.Draft202012Validator:
    resolved = _registry(_EVOLUTION_URI).resolver().lookup(_EVOLUTION_URI + pointer)
    schema = copy.deepcopy(resolved.contents)
    if schema.get("type") == "object" and "additionalProperties" not in schema:
        schema["additionalProperties"] = False
    return jsonschema.Draft202012Validator(schema, registry=_registry(_EVOLUTION_URI))


def validate_evolution_request(path_template: str, body: Any, *, strict: bool = True) -> None:
    """Check an Evolution request body against the operation at ``path_template`` (for
    example ``/message/sendText/{instance}``). With ``strict`` (the default) top-level fields
    the document does not list are rejected too."""
    method, operation = _evolution_operation(path_template)
    if "requestBody" not in operation:
        raise KeyError(f"Evolution {method.upper()} {path_template!r} takes no body")
    pointer = _pointer(
        "paths", path_template, method, "requestBody", "content", "application/json", "schema"
    )
    validator = (
        _strict_request_validator(pointer) if strict else _validator(_EVOLUTION_URI, pointer)
    )
    _check(validator, body)


def validate_evolution_response(path_template: str, status: int, body: Any) -> None:
    """Check an Evolution answer: against the schema the document gives for that status, or,
    for an error status it does not document, against :data:`EVOLUTION_ERROR_ENVELOPE`.
    An undocumented success status is a contract break and raises :class:`KeyError`."""
    method, operation = _evolution_operation(path_template)
    responses = operation.get("responses", {})
    if str(status) in responses:
        pointer = _pointer(
            "paths",
            path_template,
            method,
            "responses",
            str(status),
            "content",
            "application/json",
            "schema",
        )
        _check(_validator(_EVOLUTION_URI, pointer), body)
    elif status >= 400:
        _check(_envelope_validator(), body)
    else:
        raise KeyError(f"Evolution documents no {status} for {method.upper()} {path_template!r}")


@functools.cache
def _envelope_validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(EVOLUTION_ERROR_ENVELOPE)
