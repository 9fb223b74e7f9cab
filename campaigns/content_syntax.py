"""The syntax of message texts (:mod:`campaigns.content` describes it): parsing a text into
literal runs and ``{...}`` groups, deciding what a group is for a list with given columns, and
counting a Cloud API template's parameters.

Pure and separate from :mod:`campaigns.content` only to keep each module short: parsing is the
part that raises the syntax errors, content the part that chooses and renders.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from campaigns.errors import InvalidArgument, InvalidMessage
from campaigns.inputs import MAX_TEMPLATE_PARAMETERS, whole_number

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
"""A bare name: what a variable is called. ASCII on purpose: ``\\w`` would take "Olá", and a
spintax option like ``{Olá|Oi}`` must not be mistaken for a misspelt variable."""

_OUTSIDE = re.compile(r"\{\{|\}\}|[{}]")
_INSIDE = re.compile(r"[{}]")  # inside a group, "{{" is a nested "{" too: no escapes there
_META_PARAMETER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")  # {{1}} or {{first_name}}


@dataclass(frozen=True, slots=True)
class Group:
    """One ``{...}`` of a text: its parts split on ``|``, as written, and where it starts."""

    parts: tuple[str, ...]
    raw: str
    start: int


Segment = str | Group


@dataclass(frozen=True, slots=True)
class Var:
    """A group that is the recipient's variable ``name``, with its fallback (None: none)."""

    name: str
    fallback: str | None


@dataclass(frozen=True, slots=True)
class Spin:
    """A spintax group: one option per recipient."""

    options: tuple[str, ...]


def text_name(index: int, count: int) -> str:
    """How errors name text ``index`` (0-based) of a campaign with ``count`` texts."""
    if count == 1:
        return "the message"
    return "variant 1 (the message)" if index == 0 else f"variant {index + 1}"


def parse(text: str, where: str) -> tuple[Segment, ...]:
    """Literal runs (``{{``/``}}`` already made single braces) and groups, in order. Raises
    :class:`InvalidMessage` naming ``where`` and the character (1-based) of the first unbalanced
    brace, nested group, or one-part group that is no variable name."""
    segments: list[Segment] = []
    literal: list[str] = []
    position = 0
    while (match := _OUTSIDE.search(text, position)) is not None:
        literal.append(text[position : match.start()])
        position = match.end()
        token = match.group()
        if token in ("{{", "}}"):
            literal.append(token[0])
            continue
        if token == "}":
            raise _syntax(where, text, match.start(), "a '}' that closes no '{'")
        end = _INSIDE.search(text, position)
        if end is None:
            raise _syntax(where, text, match.start(), "a '{' that is never closed")
        if end.group() == "{":
            raise _syntax(where, text, end.start(), "a group inside a group (not supported)")
        inner = text[position : end.start()]
        group = Group(tuple(inner.split("|")), text[match.start() : end.end()], match.start())
        if len(group.parts) == 1 and not NAME.fullmatch(group.parts[0].strip()):
            raise _syntax(
                where, text, match.start(), f"the group {group.raw}",
                "which is neither a variable name nor a spintax of two or more options",
            )  # fmt: skip
        if "".join(literal):
            segments.append("".join(literal))
        literal = []
        segments.append(group)
        position = end.end()
    literal.append(text[position:])
    if "".join(literal):
        segments.append("".join(literal))
    return tuple(segments)


def _syntax(where: str, text: str, at: int, problem: str, why: str = "") -> InvalidMessage:
    near = text[max(at - 15, 0) : at + 15]
    return InvalidMessage(
        f"{where} has {problem} at character {at + 1} (near {near!r}){', ' if why else ''}"
        f"{why}; write {{{{ and }}}} for a literal brace; nothing was created"
    )


def is_spintax(group: Group) -> bool:
    """Whether ``group`` is spintax in any text creation accepts, whatever the list's columns:
    three or more parts, or two not led by a bare name. (Led by a column, three parts are
    refused; two parts led by a bare name are a variable, or refused by the typo guard.) So
    the choices, and the label, follow from the texts alone."""
    return len(group.parts) > 2 or (
        len(group.parts) == 2 and NAME.fullmatch(group.parts[0].strip()) is None
    )


def classify(group: Group, columns: Collection[str], where: str) -> Var | Spin | str:
    """What ``group`` is for a list with these columns: a variable, spintax, or the problem
    (a sentence naming ``where``) that refuses it."""
    first = group.parts[0].strip()
    named = NAME.fullmatch(first) is not None
    if named and first in columns:
        if len(group.parts) > 2:
            return (
                f"{where}: {group.raw} gives '{first}' more than one fallback; write "
                f"{{{first}|...}} with one"
            )
        return Var(first, group.parts[1].strip() if len(group.parts) == 2 else None)
    if is_spintax(group):
        return Spin(group.parts)
    if len(group.parts) == 1:
        return f"{where} uses {group.raw} but the list has no '{first}' column ({_shown(columns)})"
    # the typo guard: two parts led by a bare name that is no column ({nmae|cliente}) would
    # otherwise be a coin toss between the two words
    second = group.parts[1]
    example = (
        f"{{{second}|{group.parts[0]}}}"
        if not NAME.fullmatch(second.strip())
        else f"{{{group.parts[0]}!|{second}}}"
    )
    return (
        f"{where}: {group.raw} would be spintax, but '{first}' looks like a variable and "
        f"the list has no '{first}' column ({_shown(columns)}); fix the name, or write a "
        f"two-option spintax whose first option is not a bare name ({example}) or give "
        "three options"
    )


def no_spintax(where: str, group: Group) -> str:
    """The problem of a spintax group in a template parameter."""
    return (
        f"{where}: {group.raw} is spintax, which a template parameter cannot take "
        "(WhatsApp sends the approved template); use one text"
    )


def _shown(columns: Collection[str]) -> str:
    if not columns:
        return "it has no column besides the phone number"
    return "its columns besides the phone: " + ", ".join(sorted(columns))


# ------------------------------------------------------ templates' parameter counts


def template_strings(value: Any, where: str) -> Iterator[tuple[str, str]]:
    """Every text inside a template's components, with its path."""
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from template_strings(item, f"{where}[{key!r}]")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from template_strings(item, f"{where}[{index}]")


def declared_parameters(template: Mapping[str, Any]) -> tuple[int, str] | None:
    """How many body parameters the template declares, and where it says so: its approved
    ``body`` text (distinct ``{{1}}``/``{{name}}`` placeholders) or its ``parameter_count``
    (both: they must agree). None when it declares neither."""
    body, count = template.get("body"), template.get("parameter_count")
    from_body = None
    if body is not None:
        if not isinstance(body, str):
            raise InvalidArgument("template['body'] must be the approved body's text (str)")
        from_body = len(set(_META_PARAMETER.findall(body)))
    if count is None:
        return None if from_body is None else (from_body, "its body text")
    count = whole_number(
        count, "template['parameter_count']", minimum=0, maximum=MAX_TEMPLATE_PARAMETERS
    )
    if from_body is not None and from_body != count:
        raise InvalidMessage(
            f"template['body'] has {from_body} parameters but template['parameter_count'] "
            f"says {count}; nothing was created"
        )
    return count, "its parameter_count"


def body_parameters(components: Any) -> int:
    """How many parameters the template's ``body`` components give."""
    if not isinstance(components, list | tuple):
        raise InvalidArgument("template['components'] must be a list")
    given = 0
    for index, component in enumerate(components):
        if isinstance(component, Mapping) and str(component.get("type", "")).lower() == "body":
            parameters = component.get("parameters", [])
            if not isinstance(parameters, list | tuple):
                raise InvalidArgument(
                    f"template['components'][{index}]['parameters'] must be a list"
                )
            given += len(parameters)
    return given
