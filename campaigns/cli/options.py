"""Range checks of the command line's options, as Typer callbacks over :mod:`campaigns.inputs`.

Click's own ``min=``/``max=`` print a usage block and accept ``nan`` for a float (NaN compares
false with every bound), so the options use these callbacks instead: the same checks as the
Python API, raised as :class:`~campaigns.errors.InvalidArgument` naming the option, which the
command line prints as one ``error: ...`` line (exit 1) before any server is started.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer

from campaigns import inputs

Callback = Callable[[typer.Context, typer.CallbackParam, Any], Any]


def option_name(param: typer.CallbackParam) -> str:
    """``--batch-size`` for an option (its longest spelling), ``ID`` for an argument."""
    if param.param_type_name == "argument":
        metavar: object = getattr(param, "metavar", None)
        return str(metavar).strip("[]") if metavar else str(param.name).upper()
    return max(param.opts, key=len) if param.opts else str(param.name)


def _callback(check: Callable[[Any, str], Any]) -> Callback:
    def callback(ctx: typer.Context, param: typer.CallbackParam, value: Any) -> Any:
        if value is None or ctx.resilient_parsing:  # unset, or shell completion
            return value
        return check(value, option_name(param))

    return callback


def count(maximum: int = inputs.MAX_INT, minimum: int = 1) -> Callback:
    """A whole number from ``minimum`` to ``maximum``."""
    return _callback(
        lambda value, name: inputs.whole_number(value, name, minimum=minimum, maximum=maximum)
    )


def seconds(minimum: float = 0.0, maximum: float = inputs.MAX_SECONDS) -> Callback:
    """Finite seconds from ``minimum`` to ``maximum``."""
    return _callback(
        lambda value, name: inputs.finite_number(
            value, name, unit="seconds", minimum=minimum, maximum=maximum
        )
    )


def age(unit: str, maximum: float) -> Callback:
    """A finite, non-negative age threshold in ``unit`` (hours, days)."""
    return _callback(
        lambda value, name: inputs.finite_number(value, name, unit=unit, maximum=maximum)
    )


campaign_id = _callback(inputs.campaign_id)
"""A campaign id: 1 to PostgreSQL's integer maximum, not a driver error for 2**40."""

name = _callback(inputs.session_name)
"""A session name: one line, no control character, at most 100 characters."""

reason = _callback(inputs.reason_text)
"""A reason stored with a campaign."""

batch_size = count(inputs.MAX_BATCH_SIZE)
interval = seconds()
hours = age("hours", inputs.MAX_DAYS * 24)
days = age("days", inputs.MAX_DAYS)
