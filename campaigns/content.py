"""What each recipient reads: personalisation checked up front, fallbacks, spintax, variants.

Pure: no store, no gateway, no Redis. A campaign's texts are parsed once (:func:`plan`); while
its list streams into PostgreSQL an :class:`EntryChecker` sees every entry and refuses, before
anything is created, a message that would go out half-rendered; each recipient's choice of text
is a short label (:func:`choose`) stored in the ledger, and :func:`render` turns it into text.

Syntax of a message text
  ``{name}``            the recipient's variable ``name``: a column of the number file, a key of
                        a dict entry. Refused at creation when the list has no such column, or
                        when any recipient's value is empty (or only spaces), with their count.
  ``{name|fallback}``   the variable, or ``fallback`` when the recipient's value is empty, only
                        spaces, or missing. Spaces around the name and the fallback are dropped.
  ``{Olá|Oi|Bom dia}``  spintax: one option per recipient, exactly as written (spaces kept; an
                        option may be empty, ``{!|}``).
  ``{{`` and ``}}``     a literal ``{`` and ``}`` (also the way to write JSON in a text).

A group ``{...}`` is a variable when its first part (before any ``|``) is one of the list's
columns; otherwise a group of two or more parts is spintax. Refused, naming the variant (1-based)
and the character: unbalanced braces; a group inside a group (nesting is not supported); a
one-part group that is no variable name (``{}``, ``{a b}``); a variable with two fallbacks
(``{name|a|b}``); and, so that a misspelt variable never silently becomes a coin toss, a
two-part group whose first part is a bare name (ASCII letters, digits, ``_``) that is not a
column (``{nmae|cliente}``). A two-option spintax puts first an option that is not a bare name
(``{Olá|Oi}``, ``{Bom dia|Oi}``, ``{Oi!|Olá}``) or gives three options. Cloud API template
parameter texts take ``{name}`` and ``{name|fallback}`` the same way, and no spintax.

Variants: ``message`` is variant 1, ``variants`` the others. For campaign C and ledger position
P (1-based input order) the variant and each spintax choice come from blake2b of (C, P, which
choice): never ``hash()`` (salted per process) or ``random``, so a resumed campaign, another
worker and a retried copy pick the same text. The label names the choice: ``"2"`` is variant 2
without spintax, ``"2:0.1"`` variant 2 with the first option of its first spintax group and the
second of its second. Which groups are spintax follows from the texts alone (in any text
creation accepts), so a loader may choose while the list streams, before its columns are known.

Campaigns from before these checks have no columns stored. Without columns, what creation would
now refuse renders as it always did: ``{x}`` takes the recipient's ``x`` when it has one and
otherwise stays as written, ``{x|y}`` stays as written, and a text that does not parse (an
unbalanced brace) is filled by the old rule (:func:`fill_as_before`). ``{{``/``}}`` and groups
of three or more parts do take their new meaning.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from campaigns import inputs
from campaigns.content_syntax import (
    NAME,
    Group,
    Segment,
    Spin,
    Var,
    body_parameters,
    classify,
    declared_parameters,
    is_spintax,
    no_spintax,
    parse,
    template_strings,
    text_name,
)
from campaigns.errors import InvalidArgument, InvalidMessage

MAX_VARIANTS = 100
"""Texts per campaign, the message included: variety needs a handful; a hundred is a mistake."""

_LABEL = re.compile(r"([0-9]+)(?::([0-9]+(?:\.[0-9]+)*))?")
_OLD_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_PERSON = b"cc-content-v1"  # blake2b's personalisation: these digests mean only this
_MAX_PROBLEMS = 5


@dataclass(frozen=True, slots=True)
class ContentPlan:
    """A campaign's texts, variant 1 first, each parsed once. ``parsed`` follows from
    ``texts``, so plans compare (and hash) by their texts alone; build one with :func:`plan`."""

    texts: tuple[str, ...]
    parsed: tuple[tuple[Segment, ...], ...] = field(compare=False, repr=False)
    sizes: tuple[tuple[int, ...], ...] = field(compare=False, repr=False)
    """Per text, the option count of each spintax group in order: what a label chooses."""

    def __post_init__(self) -> None:
        if not len(self.texts) == len(self.parsed) == len(self.sizes):
            raise InvalidArgument("a ContentPlan comes from content.plan(message, variants)")


@dataclass(frozen=True, slots=True)
class _AsBefore:
    """A group a campaign without columns renders as it did before: ``{x}`` from the
    recipient's ``x`` when there is one (``name``), else as written."""

    name: str | None
    raw: str


@dataclass(frozen=True, slots=True)
class _Choice:
    """A spintax group: its options and which of the label's choices picks one."""

    options: tuple[str, ...]
    slot: int


@dataclass(frozen=True, slots=True)
class _Refused:
    problem: str


_Piece = str | Var | _Choice | _AsBefore | _Refused


def plan(message: str, variants: Sequence[str] = ()) -> ContentPlan:
    """Parse the campaign's texts: ``message`` is variant 1, ``variants`` the others. Raises
    :class:`InvalidMessage` naming the variant and the character of a syntax error, and
    :class:`InvalidArgument` for variants that are not a list of texts."""
    if isinstance(variants, str | bytes) or not isinstance(variants, Sequence):
        raise InvalidArgument(
            f"variants must be a list of message texts, got a {type(variants).__name__}"
        )
    texts = (message, *variants)
    if len(texts) > MAX_VARIANTS:
        raise InvalidArgument(
            f"variants holds {len(variants)} texts; a campaign takes at most "
            f"{MAX_VARIANTS - 1} besides the message"
        )
    for index, text in enumerate(texts):
        if index == 0 and text == "":
            continue  # a media campaign without caption; creation refuses it for a text
        inputs.message_text(text, "message" if index == 0 else f"variant {index + 1}")
    parsed = tuple(parse(text, text_name(i, len(texts))) for i, text in enumerate(texts))
    sizes = tuple(
        tuple(len(g.parts) for g in segments if isinstance(g, Group) and is_spintax(g))
        for segments in parsed
    )
    return ContentPlan(texts, parsed, sizes)


def choose(plan: ContentPlan, columns: Collection[str], campaign_id: int, position: int) -> str:
    """The label of recipient ``position``'s text: its variant and spintax choices.

    ``columns`` does not change it: in any text creation accepts, which groups are spintax
    follows from the text alone (:func:`~campaigns.content_syntax.is_spintax`), so the loader
    may choose while the list streams, before :meth:`EntryChecker.finish` knows the columns."""
    variant, picks = _choices(plan, campaign_id, position)
    return _label(variant, picks)


def render(
    plan: ContentPlan,
    columns: Collection[str],
    label: str | None,
    variables: Mapping[str, str] | None,
    *,
    campaign_id: int,
    position: int,
) -> str:
    """The text of one recipient, from its stored ``label`` (None: :func:`choose` it now).
    Never half-rendered: a variable without fallback that is empty here raises
    :class:`InvalidMessage` (the creation check makes that unreachable)."""
    if label is None:
        variant, picks = _choices(plan, campaign_id, position)
    else:
        variant, picks = _read_label(label, plan)
    return _fill(_resolved(plan, _set(columns))[variant], picks, variables, position)


def fill(text: str, columns: Collection[str], variables: Mapping[str, str] | None) -> str:
    """A template parameter text with the recipient's variables filled in (no spintax)."""
    columns = _set(columns)
    pieces = _parameter_pieces(text, columns)
    if pieces is None:  # unparseable: only a campaign from before the checks gets here
        if columns:
            parse(text, "a template parameter")  # raises, saying why
        return fill_as_before(text, variables)
    return _fill(pieces, (), variables, None)


def fill_as_before(text: str, variables: Mapping[str, Any] | None) -> str:
    """The rule of campaigns from before these checks: ``{name}`` from the variables,
    unknown ones stay as written (a message with braces is not an error)."""
    if not variables:
        return text
    return _OLD_PLACEHOLDER.sub(lambda m: str(variables.get(m.group(1), m.group(0))), text)


class EntryChecker:
    """Fed every entry while the list streams into PostgreSQL (one pass, flat memory for 1M
    rows): counts, per variable used without a fallback, the entries whose value is empty,
    and collects the column names; :meth:`finish` refuses what would go out half-rendered."""

    __slots__ = ("_empty", "_required", "_seen", "_uses")

    def __init__(self, plan: ContentPlan, template: Mapping[str, Any] | None = None) -> None:
        uses: list[tuple[str, Group, bool]] = []  # (where, group, in a template)
        for index, segments in enumerate(plan.parsed):
            where = text_name(index, len(plan.texts))
            uses += [(where, g, False) for g in segments if isinstance(g, Group)]
        if template:
            template_check(template)
            for where, text in template_strings(
                template.get("components", []), "template['components']"
            ):
                uses += [(where, g, True) for g in parse(text, where) if isinstance(g, Group)]
        self._uses = tuple(uses)
        names = {g.parts[0].strip() for _, g, _ in uses if len(g.parts) == 1}
        self._required = tuple(sorted(n for n in names if NAME.fullmatch(n)))
        self._empty = dict.fromkeys(self._required, 0)
        self._seen: set[str] = set()

    def see(self, variables: Mapping[str, str] | None) -> None:
        """One entry's variables (None: it has none)."""
        if variables:
            self._seen.update(variables)
        for name in self._required:
            value = variables.get(name) if variables else None
            if not value or value.isspace():
                self._empty[name] += 1

    def finish(self) -> tuple[str, ...]:
        """The list's columns (sorted names seen), which the campaign stores and passes back
        to :func:`choose` and :func:`render`; raises :class:`InvalidMessage` naming every
        problem (the first five) when the texts do not fit the list."""
        columns = tuple(sorted(self._seen))
        problems: dict[str, None] = {}  # ordered, each once
        for where, group, in_template in self._uses:
            kind = classify(group, self._seen, where)
            if isinstance(kind, str):
                problems[kind] = None
            elif isinstance(kind, Spin) and in_template:
                problems[no_spintax(where, group)] = None
            elif isinstance(kind, Var) and kind.fallback is None and self._empty[kind.name]:
                count = self._empty[kind.name]
                problems[
                    f"{count:,} {'recipient has' if count == 1 else 'recipients have'} an empty "
                    f"'{kind.name}' and {where} uses {{{kind.name}}} without a fallback; write "
                    f"{{{kind.name}|cliente}} or fill the column"
                ] = None
        if problems:
            listed = list(problems)[:_MAX_PROBLEMS]
            more = len(problems) - len(listed)
            tail = f"; and {more} more" if more else ""
            raise InvalidMessage("; ".join(listed) + f"{tail}; nothing was created")
        return columns


def template_check(template: Mapping[str, Any]) -> None:
    """When the template declares its approved body (``body``, e.g. ``"Olá {{1}}, seu pedido
    {{2}}"``, kept locally, never sent) or a ``parameter_count``, the body parameters in its
    ``components`` must number that many: else :class:`InvalidMessage` naming both counts."""
    declared = declared_parameters(template)
    if declared is None:
        return
    count, source = declared
    given = body_parameters(template.get("components", []))
    if given != count:
        raise InvalidMessage(
            f"the template's body takes {count} parameter{'' if count == 1 else 's'} "
            f"({source}) but template['components'] gives {given}; nothing was created"
        )


def _set(columns: Collection[str]) -> frozenset[str]:
    return columns if isinstance(columns, frozenset) else frozenset(columns)


@lru_cache(maxsize=256)
def _resolved(plan: ContentPlan, columns: frozenset[str]) -> tuple[tuple[_Piece, ...], ...]:
    """Each text's pieces for a list with these columns, worked out once per campaign, so the
    send path only joins strings."""
    return tuple(
        _pieces(segments, columns, text_name(index, len(plan.texts)), spintax=True)
        for index, segments in enumerate(plan.parsed)
    )


@lru_cache(maxsize=1024)
def _parameter_pieces(text: str, columns: frozenset[str]) -> tuple[_Piece, ...] | None:
    try:
        segments = parse(text, "a template parameter")
    except InvalidMessage:
        return None
    return _pieces(segments, columns, "a template parameter", spintax=False)


def _pieces(
    segments: tuple[Segment, ...], columns: frozenset[str], where: str, *, spintax: bool
) -> tuple[_Piece, ...]:
    pieces: list[_Piece] = []
    slots = 0  # the label's choices, one per spintax group of the text (refused ones too)
    for segment in segments:
        if isinstance(segment, str):
            pieces.append(segment)
            continue
        kind = classify(segment, columns, where)
        slots += is_spintax(segment)
        if isinstance(kind, Var):
            pieces.append(kind)
        elif isinstance(kind, Spin) and spintax:
            pieces.append(_Choice(kind.options, slots - 1))
        elif not columns:  # a campaign from before the checks: as it always rendered
            name = segment.raw[1:-1]
            pieces.append(_AsBefore(name if NAME.fullmatch(name) else None, segment.raw))
        else:
            pieces.append(_Refused(kind if isinstance(kind, str) else no_spintax(where, segment)))
    return tuple(pieces)


# ----------------------------------------------------------------------- choice and text


def _pick(campaign_id: int, position: int, what: str, count: int) -> int:
    if count == 1:
        return 0
    key = f"{campaign_id}:{position}:{what}".encode()
    digest = hashlib.blake2b(key, digest_size=8, person=_PERSON).digest()
    return int.from_bytes(digest, "big") % count  # 2**64 values: the bias is negligible


def _choices(plan: ContentPlan, campaign_id: int, position: int) -> tuple[int, tuple[int, ...]]:
    variant = _pick(campaign_id, position, "variant", len(plan.texts))
    sizes = plan.sizes[variant]
    picks = tuple(
        _pick(campaign_id, position, f"{variant + 1}.{group}", count)
        for group, count in enumerate(sizes)
    )
    return variant, picks


def _label(variant: int, picks: tuple[int, ...]) -> str:
    return f"{variant + 1}:{'.'.join(map(str, picks))}" if picks else str(variant + 1)


def _read_label(label: str, plan: ContentPlan) -> tuple[int, tuple[int, ...]]:
    match = _LABEL.fullmatch(label) if isinstance(label, str) else None
    if match is not None:
        variant = int(match.group(1)) - 1
        picks = tuple(int(p) for p in match.group(2).split(".")) if match.group(2) else ()
        if 0 <= variant < len(plan.texts):
            sizes = plan.sizes[variant]
            if len(picks) == len(sizes) and all(p < n for p, n in zip(picks, sizes, strict=True)):
                return variant, picks
    raise InvalidArgument(
        f"the variant label {label!r} does not fit the campaign's {len(plan.texts)} text(s) "
        "(labels look like '2' or '2:0.1' and come from content.choose)"
    )


def _fill(
    pieces: tuple[_Piece, ...],
    picks: tuple[int, ...],
    variables: Mapping[str, str] | None,
    position: int | None,
) -> str:
    out: list[str] = []
    for piece in pieces:
        if isinstance(piece, str):
            out.append(piece)
        elif isinstance(piece, Var):
            value = variables.get(piece.name) if variables else None
            if not value or value.isspace():
                if piece.fallback is None:
                    raise InvalidMessage(
                        f"recipient #{position}: its '{piece.name}' is empty and "
                        f"{{{piece.name}}} has no fallback; nothing was sent"
                    )
                value = piece.fallback
            out.append(value)
        elif isinstance(piece, _Choice):
            out.append(piece.options[picks[piece.slot]])
        elif isinstance(piece, _AsBefore):
            found = variables.get(piece.name) if variables and piece.name else None
            out.append(piece.raw if found is None else str(found))
        else:
            raise InvalidMessage(f"{piece.problem}; nothing was sent")
    return "".join(out)
