"""A dry-run gateway: sends nothing, logs one line per message.

For demos and rehearsals of a campaign's pacing without a WhatsApp number. The line names the
session and the masked number, never the text (it may be personal) and never a token.
"""

from __future__ import annotations

import logging
import uuid

from campaigns.gateways.base import (
    GatewayConfig,
    OutcomeKind,
    OutgoingMessage,
    SendOutcome,
    SessionHealth,
)
from campaigns.masking import mask_phone

logger = logging.getLogger(__name__)


class ConsoleGateway:
    """Every message is SENT with a generated ``console-<hex>`` id."""

    kind = "console"

    def __init__(self, config: GatewayConfig) -> None:
        self.session = config.session_name

    def send(self, message: OutgoingMessage) -> SendOutcome:
        """Log the message's recipient (masked) and kind; answer SENT."""
        message_id = f"console-{uuid.uuid4().hex}"
        what = f"template {message.template.name}" if message.template else "text"
        if message.media is not None:
            what = f"{message.media.kind} ({message.media.mime})"
        logger.info(
            "console %s: %s to %s (%s)", self.session, what, mask_phone(message.to), message_id
        )
        return SendOutcome(OutcomeKind.SENT, message_id=message_id)

    def health(self) -> SessionHealth:
        """Always connected."""
        return SessionHealth(True, "console")

    def close(self) -> None:
        """Nothing to release."""
