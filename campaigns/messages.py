"""The outgoing message of one recipient: the campaign's text or Cloud API template, with the
recipient's variables filled in. Pure: no store, no gateway."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from campaigns.domain import Campaign, ClaimedRecipient
from campaigns.gateways.base import OutgoingMessage, TemplateSpec, typing_seconds

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def render(text: str, variables: Mapping[str, Any] | None) -> str:
    """Fill ``{name}`` placeholders from the recipient's variables; unknown ones stay as
    written (a message with braces is not an error)."""
    if not variables:
        return text
    return _PLACEHOLDER.sub(lambda m: str(variables.get(m.group(1), m.group(0))), text)


def build_message(campaign: Campaign, claim: ClaimedRecipient) -> OutgoingMessage:
    """The outgoing message of one recipient: text, or a Cloud API template, filled in."""
    variables = claim.variables or {}
    if campaign.template:
        components = _render_any(campaign.template.get("components", []), variables)
        spec = TemplateSpec(
            name=str(campaign.template["name"]),
            language=str(campaign.template.get("language", "en_US")),
            components=tuple(components),
        )
        return OutgoingMessage(to=claim.phone, template=spec)
    return OutgoingMessage(to=claim.phone, text=render(campaign.message, variables))


def _render_any(value: Any, variables: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        return render(value, variables)
    if isinstance(value, list):
        return [_render_any(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: _render_any(v, variables) for k, v in value.items()}
    return value


def typing_plan(gateway: object, campaign: Campaign) -> tuple[float, float]:
    """``(typing_s, lead)`` for a lane's messages. ``typing_s``: how long the session shows
    "typing…" before each text, sized to the message (``typing_seconds``) and never longer than
    the campaign's shortest gap; 0 when the session does not type (option ``typing``) or the
    campaign has no gap. ``lead``: the part of it spent before the text request leaves (WAHA's
    calls before sendText; Evolution waits inside its request, so 0); the lane fits it inside
    the gap it draws (``LaneRun.gap_with_typing``)."""
    if not getattr(gateway, "typing", False) or campaign.template or campaign.min_interval <= 0:
        return 0.0, 0.0
    seconds = min(typing_seconds(campaign.message), campaign.min_interval)
    return seconds, seconds if getattr(gateway, "typing_leads", False) else 0.0
