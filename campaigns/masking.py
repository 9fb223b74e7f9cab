"""Masking of personal data in logs. Phone numbers are masked by default (``LOG_FULL_NUMBERS``
turns it off for local debugging); message texts and tokens are never logged."""

from __future__ import annotations

import os


def _full_numbers() -> bool:
    return os.environ.get("LOG_FULL_NUMBERS", "").lower() in {"1", "true", "yes"}


def mask_phone(number: str | None) -> str:
    """``+5511999991234`` → ``+551*******34``: enough to tell numbers apart in a log, not
    enough to dial."""
    if number is None:
        return "-"
    if _full_numbers():
        return number
    plus = "+" if number.startswith("+") else ""
    digits = number[len(plus) :]
    if len(digits) <= 5:
        return plus + "*" * len(digits)
    return plus + digits[:3] + "*" * (len(digits) - 5) + digits[-2:]
