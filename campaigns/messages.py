"""The outgoing message of one recipient: the campaign's text (its variant, spintax and
variables, :mod:`campaigns.content`) or Cloud API template, filled in. Pure: no store, no
gateway."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from campaigns import content
from campaigns.domain import Campaign, ClaimedRecipient
from campaigns.errors import InvalidMessage
from campaigns.gateways.base import OutgoingMessage, TemplateSpec, typing_seconds
from campaigns.media import MediaSpec


def render(text: str, variables: Mapping[str, Any] | None) -> str:
    """Fill ``{name}`` placeholders from the recipient's variables; unknown ones stay as
    written (a message with braces is not an error). The rule of campaigns created before
    :mod:`campaigns.content`; :func:`build_message` renders through that module."""
    return content.fill_as_before(text, variables)


def build_message(campaign: Campaign, claim: ClaimedRecipient) -> OutgoingMessage:
    """The outgoing message of one recipient: text, or a Cloud API template, filled in. A
    template goes out with its name, language and components only: its locally declared
    ``body`` and ``parameter_count`` are never sent."""
    if campaign.template:
        columns = frozenset(campaign.columns)
        components = _fill_any(campaign.template.get("components", []), columns, claim.variables)
        spec = TemplateSpec(
            name=str(campaign.template["name"]),
            language=str(campaign.template.get("language", "en_US")),
            components=tuple(components),
        )
        return OutgoingMessage(to=claim.phone, template=spec)
    if campaign.media:
        # the text is the caption, personalised like any text; an empty one is no caption
        caption = _text(campaign, claim) if campaign.message else ""
        return OutgoingMessage(to=claim.phone, text=caption, media=_media(campaign.media))
    return OutgoingMessage(to=claim.phone, text=_text(campaign, claim))


def _media(value: Mapping[str, Any]) -> MediaSpec:
    return _media_of(tuple(sorted((k, v) for k, v in value.items() if isinstance(v, str))))


@lru_cache(maxsize=256)
def _media_of(items: tuple[tuple[str, str], ...]) -> MediaSpec:
    return MediaSpec.from_json(dict(items))


def _text(campaign: Campaign, claim: ClaimedRecipient) -> str:
    plan = plan_of(campaign.message, campaign.variants)
    if plan is None:
        return render(campaign.message, claim.variables)
    return content.render(
        plan,
        campaign.columns,
        claim.variant,
        claim.variables,
        campaign_id=campaign.id,
        position=claim.position,
    )


@lru_cache(maxsize=256)
def plan_of(message: str, variants: tuple[str, ...] = ()) -> content.ContentPlan | None:
    """The campaign's parsed texts, parsed once per process, not once per message. None for
    a one-text campaign created before :mod:`campaigns.content` whose text does not parse (an
    unbalanced brace): it renders by the old rule, as it always did."""
    try:
        return content.plan(message, variants)
    except InvalidMessage:
        if variants:
            raise  # variants exist only since the checks, which parsed them at creation
        return None


def _fill_any(value: Any, columns: frozenset[str], variables: Mapping[str, str] | None) -> Any:
    if isinstance(value, str):
        return content.fill(value, columns, variables)
    if isinstance(value, list):
        return [_fill_any(v, columns, variables) for v in value]
    if isinstance(value, dict):
        return {k: _fill_any(v, columns, variables) for k, v in value.items()}
    return value


def typing_plan(gateway: object, campaign: Campaign) -> tuple[float, float]:
    """``(typing_s, lead)`` for a lane's messages. ``typing_s``: how long the session shows
    "typing…" before each text, sized to the campaign's longest text (``typing_seconds``: the
    lane plans it once, not per recipient) and never longer than the campaign's shortest gap;
    0 when the session does not type (option ``typing``) or the campaign has no gap. ``lead``:
    the part of it spent before the text request leaves (WAHA's calls before sendText;
    Evolution waits inside its request, so 0); the lane fits it inside the gap it draws
    (``LaneRun.gap_with_typing``)."""
    if not getattr(gateway, "typing", False) or campaign.template or campaign.min_interval <= 0:
        return 0.0, 0.0
    longest = max((campaign.message, *campaign.variants), key=len)
    seconds = min(typing_seconds(longest), campaign.min_interval)
    return seconds, seconds if getattr(gateway, "typing_leads", False) else 0.0
