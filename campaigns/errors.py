"""Errors of Campaign Continuity.

One root, :class:`CampaignError`. Each subclass's docstring is its default message, so a raise
site only adds what it knows (``raise UnknownSession(name=...)``) and the command line prints the
chain of causes, one line each, without a traceback.
"""

from __future__ import annotations

from typing import Any


class CampaignError(Exception):
    """A campaign operation failed."""

    def __init__(self, message: str | None = None, **context: Any) -> None:
        self.context = context
        text = message or (self.__doc__ or "").strip().splitlines()[0]
        if context:
            details = ", ".join(f"{key}={value!r}" for key, value in context.items())
            text = f"{text} ({details})"
        super().__init__(text)


class ConfigurationError(CampaignError):
    """The configuration is invalid."""


class InvalidInput(CampaignError):
    """The campaign input is invalid; nothing was created."""


class EmptyNumberList(InvalidInput):
    """The number list is empty; nothing was created."""


class NoValidNumber(InvalidInput):
    """The number list holds no valid phone number; nothing was created."""


class InvalidMessage(InvalidInput):
    """The message is empty or longer than 4096 characters; nothing was created."""


class InvalidNumberFile(InvalidInput):
    """The number file cannot be read; nothing was created."""


class InvalidArgument(InvalidInput):
    """An argument has the wrong type or is out of range; nothing was written."""


class UnsupportedDatabaseUrl(ConfigurationError):
    """DATABASE_URL must be a PostgreSQL URL for psycopg2 (postgresql://user@host:5432/db)."""


class UnknownSession(CampaignError):
    """No sender session has that name; add it with `campaigns sessions add`."""


class SessionExists(CampaignError):
    """A sender session with that name exists already."""


class SessionInUse(CampaignError):
    """The sender session has campaigns that are not finished; it was not removed."""


class CampaignNotFound(CampaignError):
    """No campaign has that id."""


class InvalidTransition(CampaignError):
    """The campaign cannot go to that status from the status it is in."""


class StoreUnavailable(CampaignError):
    """PostgreSQL cannot be reached."""
