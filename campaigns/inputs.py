"""Checks of every argument of the public Python API and of every command-line option.

Pure functions, no database: each takes a value and the name its caller knows it by
(``min_interval``, ``--batch-size``, ``MIN_INTERVAL``), returns it in its canonical type, and
otherwise raises :class:`~campaigns.errors.InvalidArgument` naming it. Callers check before
anything is written, so a bad argument never surfaces as a ``TypeError`` from deep inside, a
psycopg2 error, or half a campaign. :func:`number_entries` is the one lazy check: a list can
hold a million entries, so each is checked as the loader consumes it, inside the transaction
that creating a campaign rolls back on any error.

Longer than 400 lines on purpose: it is the catalogue of the checks, one short function per kind
of argument (the sender pool's brought it past 400), and one module keeps every message in one
style and every caller's import in one place.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from numbers import Integral, Real
from pathlib import Path
from typing import Any, TypeVar

import phonenumbers

from campaigns.errors import InvalidArgument, InvalidMessage, UnsupportedDatabaseUrl
from campaigns.numbers import PHONE_COLUMNS, Entry, entries_from, read_number_file

MAX_INT = 2**31 - 1
"""Ids, positions and counters are PostgreSQL ``integer``: beyond, only the driver fails."""

MAX_BATCH_SIZE = 100_000
"""A batch is the unit of progress and of the pause between batches: 100,000 recipients already
take about 8 days at the default pacing; a bigger batch is a typo, not a plan."""

MAX_SECONDS = 86_400.0
"""A wait of more than a day between two messages or two batches is a schedule, not pacing
(``start_at`` is for that); the cap also keeps every deadline computed from it in range."""

MAX_DAYS = 36_500.0
"""Age thresholds (cleanup, stuck report): a century is past any campaign, and far beyond it
PostgreSQL's interval arithmetic overflows."""

MAX_MESSAGE_LENGTH = 4096
"""WhatsApp's limit for a text message."""

MAX_TEMPLATE_PARAMETERS = 1024
"""A Cloud API template's body has at most 1024 characters, so fewer parameters than that."""

MAX_NAME_LENGTH = 100
"""``campaign_sessions.name`` is ``varchar(100)``."""

MAX_REASON_LENGTH = 1000
"""A reason is one line for an operator, not a document."""

POSTGRES_SCHEMES = frozenset({"postgresql", "postgres", "postgresql+psycopg2"})
"""The URL forms users write. SQLAlchemy 2.1 maps plain ``postgresql://`` to psycopg 3 and no
longer knows ``postgres://``; the project's driver is psycopg2, so all three mean it."""
DRIVER_SCHEME = "postgresql+psycopg2"

# In text: C0 and C1 controls but tab, newline and CR (a Windows file ends lines with CR LF), and
# every surrogate: a Python str can hold a lone one ("\ud800"), which has no UTF-8 encoding, so
# neither PostgreSQL nor a gateway can take it.
_FORBIDDEN_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
# In names (sessions, environment variables, URLs) not even tab or newline belong.
_FORBIDDEN_IN_NAME = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# In a raw phone number only what PostgreSQL cannot store is refused: any other junk is kept in
# the ledger as an `invalid` entry, as for a file.
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")


def _kind(value: object) -> str:
    """The type of a value, for messages that must not echo it (entries, message texts)."""
    return "None" if value is None else f"a {type(value).__name__}"


def _shown(value: object) -> str:
    """A value for an error message: numbers as written, text quoted, others by type."""
    if isinstance(value, bool):
        return f"{value} (a bool)"
    if isinstance(value, int | float):
        text = repr(value)
        return text if len(text) <= 40 else f"{text[:37]}..."
    if isinstance(value, str):
        return f"the text {value if len(value) <= 40 else value[:37] + '...'!r}"
    return _kind(value)


def _forbidden(value: str, pattern: re.Pattern[str]) -> str | None:
    """What is wrong with the first forbidden character of ``value``, or None."""
    match = pattern.search(value)
    if match is None:
        return None
    char = match.group()
    where = f"U+{ord(char):04X} at position {match.start()}"
    if "\ud800" <= char <= "\udfff":
        return f"a surrogate {where}, which has no UTF-8 encoding"
    return f"a control character {where}"


def whole_number(value: object, name: str, *, minimum: int = 1, maximum: int = MAX_INT) -> int:
    """An int from ``minimum`` to ``maximum``; a bool, a float (even 2.0) or text is refused."""
    if (
        isinstance(value, bool)
        or not isinstance(value, Integral)
        or not minimum <= int(value) <= maximum
    ):
        raise InvalidArgument(
            f"{name} must be a whole number from {minimum} to {maximum}, got {_shown(value)}"
        )
    return int(value)


def positive_int(value: object, name: str, maximum: int = MAX_INT) -> int:
    """An int from 1 to ``maximum``: sizes, limits, ids."""
    return whole_number(value, name, minimum=1, maximum=maximum)


def finite_number(
    value: object,
    name: str,
    *,
    unit: str,
    maximum: float,
    minimum: float = 0.0,
    above_minimum: bool = False,
) -> float:
    """A finite real from ``minimum`` (excluded with ``above_minimum``) to ``maximum``. NaN
    compares false with everything, so it would pass any plain range check: refused here."""
    number = math.nan
    if isinstance(value, Real) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an int beyond any float
            pass
    ok = (
        math.isfinite(number)
        and (number > minimum if above_minimum else number >= minimum)
        and number <= maximum
    )
    if not ok:
        low = f"above {minimum:g} and at most" if above_minimum else f"from {minimum:g} to"
        raise InvalidArgument(
            f"{name} must be a finite number of {unit} {low} {maximum:g}, got {_shown(value)}"
        )
    return number


def finite_seconds(
    value: object, name: str, *, maximum: float = MAX_SECONDS, positive: bool = False
) -> float:
    """Seconds (never milliseconds): finite, not negative (above 0 with ``positive``)."""
    return finite_number(value, name, unit="seconds", maximum=maximum, above_minimum=positive)


def campaign_id(value: object, name: str = "campaign_id") -> int:
    """A campaign id: a positive int within PostgreSQL's ``integer``."""
    return positive_int(value, name)


def flag(value: object, name: str) -> bool:
    """A real bool: ``dry_run="no"`` would be true."""
    if not isinstance(value, bool):
        raise InvalidArgument(f"{name} must be True or False, got {_shown(value)}")
    return value


E = TypeVar("E", bound=enum.Enum)


def optional_member(value: object, name: str, kind: type[E]) -> E | None:
    """None, or a member of the enum ``kind`` given as itself or as its value."""
    if value is None:
        return None
    try:
        return kind(value)
    except (ValueError, TypeError):
        choices = ", ".join(str(member.value) for member in kind)
        raise InvalidArgument(
            f"{name} must be one of {choices} or None, got {_shown(value)}"
        ) from None


def message_text(value: object, name: str = "message") -> str:
    """A message: text, not blank, at most 4096 characters, tab and newline the only control
    characters, encodable as UTF-8. Raises :class:`InvalidMessage`; never echoes the text."""
    if not isinstance(value, str):
        raise InvalidMessage(f"the {name} must be text (str), got {_kind(value)}")
    if not value.strip():
        raise InvalidMessage(f"the {name} is empty; nothing was created")
    if len(value) > MAX_MESSAGE_LENGTH:
        raise InvalidMessage(
            f"the {name} has {len(value)} characters, over WhatsApp's limit of "
            f"{MAX_MESSAGE_LENGTH}; nothing was created"
        )
    problem = _forbidden(value, _FORBIDDEN_IN_TEXT)
    if problem is not None:
        raise InvalidMessage(
            f"the {name} has {problem} (tab and newline are the only control characters "
            "allowed); nothing was created"
        )
    return value


def name_text(
    value: object, name: str, *, max_length: int = MAX_NAME_LENGTH, blank_ok: bool = False
) -> str:
    """A name (session, gateway, URL, option): text on one line without control characters,
    at most ``max_length``, not blank unless ``blank_ok``."""
    if not isinstance(value, str) or not (blank_ok or value.strip()):
        what = "text (str)" if blank_ok else "a non-empty name (str)"
        raise InvalidArgument(f"{name} must be {what}, got {_shown(value)}")
    if len(value) > max_length:
        raise InvalidArgument(f"{name} has {len(value)} characters, over {max_length}")
    problem = _forbidden(value, _FORBIDDEN_IN_NAME)
    if problem is not None:
        raise InvalidArgument(f"{name} has {problem}")
    return value


def session_name(value: object, name: str = "session") -> str:
    """The name of one sender session."""
    return name_text(value, name)


def session_names(value: object, name: str = "session") -> tuple[str, ...]:
    """A sender pool: one session name, or a non-empty list (or tuple) of distinct ones, in
    lane order. A set is refused: the order is the pool's."""
    if isinstance(value, str):
        return (session_name(value, name),)
    if not isinstance(value, list | tuple) or not value:
        raise InvalidArgument(
            f"{name} must be a non-empty name (str) or a non-empty list of names, "
            f"got {_shown(value)}"
        )
    names = tuple(session_name(item, f"{name}[{i}]") for i, item in enumerate(value))
    twice = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if twice is not None:
        raise InvalidArgument(f"{name} names session {twice!r} twice; each is one lane")
    return names


def optional_name(value: object, name: str, *, max_length: int = MAX_NAME_LENGTH) -> str | None:
    """None, or a name as :func:`name_text`."""
    return None if value is None else name_text(value, name, max_length=max_length)


def any_text(value: object, name: str) -> str:
    """Any str: for text only logged, e.g. a recovery's reason quoting a gateway's answer."""
    if not isinstance(value, str):
        raise InvalidArgument(f"{name} must be text (str), got {_shown(value)}")
    return value


def reason_text(value: object, name: str = "reason") -> str:
    """A reason stored with a campaign: text, at most 1000 characters, no control character
    but tab and newline."""
    if not isinstance(value, str):
        raise InvalidArgument(f"{name} must be text (str), got {_shown(value)}")
    if len(value) > MAX_REASON_LENGTH:
        raise InvalidArgument(f"{name} has {len(value)} characters, over {MAX_REASON_LENGTH}")
    problem = _forbidden(value, _FORBIDDEN_IN_TEXT)
    if problem is not None:
        raise InvalidArgument(f"{name} has {problem}")
    return value


def region_code(value: object, name: str = "region") -> str | None:
    """None (the configured default), or a region phonenumbers knows, upper-cased."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().upper() in phonenumbers.SUPPORTED_REGIONS:
        return value.strip().upper()
    raise InvalidArgument(
        f"{name} must be a region phonenumbers knows (e.g. BR, US, IN), got {_shown(value)}"
    )


def start_time(value: object, name: str = "start_at") -> datetime | None:
    """None, or an aware datetime: a naive one would be read in PostgreSQL's time zone, which
    is not necessarily the caller's."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise InvalidArgument(f"{name} must be a datetime or None, got {_shown(value)}")
    if value.utcoffset() is None:
        raise InvalidArgument(
            f"{name} must carry a time zone (e.g. datetime(2030, 1, 2, 9, tzinfo=UTC)); "
            "a naive time is ambiguous"
        )
    return value


def template_spec(value: object, name: str = "template") -> dict[str, Any] | None:
    """None, or a Cloud API template: a mapping with a ``name``, an optional ``language`` and
    ``components`` (a list), holding only JSON values and storable text. It may declare the
    approved template's ``body`` text (``"Olá {{1}}"``) or its ``parameter_count``: both are
    kept with the campaign for :func:`campaigns.content.template_check` and never sent (the
    outgoing message takes only name, language and components)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidArgument(f"{name} must be a mapping or None, got {_kind(value)}")
    if not value:
        return None  # as before: an empty template means a text message
    if not isinstance(value.get("name"), str) or not value["name"].strip():
        raise InvalidArgument(f"{name} needs a 'name': the approved template's name (str)")
    if not isinstance(value.get("language", ""), str):
        raise InvalidArgument(f"{name}['language'] must be text (str), e.g. 'en_US'")
    if not isinstance(value.get("components", []), list):
        raise InvalidArgument(f"{name}['components'] must be a list")
    if not isinstance(value.get("body", ""), str):
        raise InvalidArgument(f"{name}['body'] must be the approved template's body text (str)")
    if value.get("parameter_count") is not None:
        whole_number(
            value["parameter_count"], f"{name}['parameter_count']", minimum=0,
            maximum=MAX_TEMPLATE_PARAMETERS,
        )  # fmt: skip
    _check_json(value, name)
    return dict(value)


def _check_json(value: object, where: str) -> None:
    """JSONB takes str keys, finite numbers, and text without NUL or surrogates."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidArgument(f"{where} has a key that is not text: {_kind(key)}")
            _check_json(item, f"{where}[{key!r}]")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_json(item, f"{where}[{index}]")
    elif isinstance(value, str):
        problem = _forbidden(value, _FORBIDDEN_IN_TEXT)
        if problem is not None:
            raise InvalidArgument(f"{where} has {problem}")
    elif isinstance(value, float) and not math.isfinite(value):
        raise InvalidArgument(f"{where} must be a finite number, got {value!r}")
    elif value is not None and not isinstance(value, bool | int | float):
        raise InvalidArgument(f"{where} must be a JSON value, got {_kind(value)}")


def number_entries(value: object, name: str = "numbers") -> Iterator[Entry]:
    """The entries of a number source, checked one by one as they are consumed.

    ``value`` is a :class:`~pathlib.Path` of a number file, or an iterable of numbers (str),
    of mappings with a phone column (the other keys are variables, text or None), or of
    :class:`~campaigns.numbers.Entry`. The source itself is checked now; each entry when the
    returned iterator reaches it (a million entries are never held in memory), so the caller
    must consume it inside the transaction it rolls back on error."""
    if isinstance(value, Path):
        return _checked(read_number_file(value), name)
    if isinstance(value, str | bytes | bytearray | Mapping) or not isinstance(value, Iterable):
        raise InvalidArgument(
            f"{name} must be an iterable of phone numbers (str) or of mappings with a phone "
            f"column, or a pathlib.Path of a number file, got {_shown(value)}"
        )
    return entries_from(_checked(value, name))


def _checked(items: Iterable[Any], name: str) -> Iterator[Any]:
    for position, item in enumerate(items, start=1):
        _check_entry(item, f"{name} entry #{position}")
        yield item


def _check_entry(item: object, where: str) -> None:
    variables: Mapping[Any, Any] | None = None
    if isinstance(item, Entry):
        raw, variables = item.raw, item.variables
    elif isinstance(item, str):
        raw = item
    elif isinstance(item, Mapping):
        column = next((c for c in PHONE_COLUMNS if c in item), None)
        if column is None:
            raise InvalidArgument(
                f"{where} has no phone column (expected one of {', '.join(PHONE_COLUMNS)})"
            )
        raw = item[column]
        variables = {k: v for k, v in item.items() if k != column}
    else:
        raise InvalidArgument(
            f"{where} must be a phone number (str) or a mapping with a phone column, "
            f"got {_kind(item)}"
        )
    if not isinstance(raw, str):
        raise InvalidArgument(f"{where}: the phone number must be text (str), got {_kind(raw)}")
    problem = _forbidden(raw, _UNSTORABLE)
    if problem is not None:
        raise InvalidArgument(f"{where} has {problem}")
    if variables:
        _check_variables(variables, where)


def _check_variables(variables: Mapping[Any, Any], where: str) -> None:
    """Variables are filled into the message, so their text follows the message's rules."""
    for key, value in variables.items():
        if not isinstance(key, str):
            raise InvalidArgument(f"{where}: a variable name is {_kind(key)}, not text")
        if value is None:
            continue  # dropped, as an empty cell of a CSV row
        if not isinstance(value, str):
            raise InvalidArgument(
                f"{where}: variable {key[:40]!r} must be text (str), got {_kind(value)}"
            )
        problem = _forbidden(key, _FORBIDDEN_IN_NAME) or _forbidden(value, _FORBIDDEN_IN_TEXT)
        if problem is not None:
            raise InvalidArgument(f"{where}: variable {key[:40]!r} has {problem}")


def database_url(value: object, name: str = "DATABASE_URL") -> str:
    """The URL with the project's driver: ``postgresql://``, ``postgres://`` and
    ``postgresql+psycopg2://`` become ``postgresql+psycopg2://``; any other scheme raises
    :class:`UnsupportedDatabaseUrl` (one line, without the URL: it may hold a password).
    Plain string work: the settings must not import SQLAlchemy."""
    if not isinstance(value, str) or "://" not in value:
        got = "text without a scheme" if isinstance(value, str) else _kind(value)
        raise UnsupportedDatabaseUrl(
            f"{name} must be a PostgreSQL URL such as postgresql://user@host:5432/db, got {got}"
        )
    scheme, _, rest = value.strip().partition("://")
    if scheme.lower() not in POSTGRES_SCHEMES:
        raise UnsupportedDatabaseUrl(
            f"{name} uses {scheme[:40]!r}, which is not supported: the engine runs on "
            "PostgreSQL through psycopg2 (write postgresql://, postgres:// or "
            "postgresql+psycopg2://)"
        )
    if _FORBIDDEN_IN_NAME.search(rest):
        raise UnsupportedDatabaseUrl(f"{name} has a control character in it")
    return f"{DRIVER_SCHEME}://{rest}"
