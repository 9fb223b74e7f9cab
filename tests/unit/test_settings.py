"""Settings are validated at load, and each error names its variable."""

from __future__ import annotations

import pytest

from campaigns.errors import ConfigurationError
from campaigns.settings import Settings


def test_settings__defaults_match_the_original_design() -> None:
    s = Settings.from_env({})
    assert (s.pacing.batch_size, s.pacing.min_interval, s.pacing.max_interval) == (300, 4, 10)
    assert (s.pacing.batch_delay_min, s.pacing.batch_delay_max) == (15, 30)
    assert s.default_region == "BR"
    assert s.database_url is None


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"MIN_INTERVAL": "10", "MAX_INTERVAL": "4"}, "MIN_INTERVAL"),
        ({"BATCH_DELAY_MIN": "30", "BATCH_DELAY_MAX": "15"}, "BATCH_DELAY_MIN"),
        ({"MIN_INTERVAL": "-1"}, "MIN_INTERVAL"),
        ({"BATCH_SIZE": "0"}, "BATCH_SIZE"),
        ({"BATCH_SIZE": "many"}, "BATCH_SIZE"),
        ({"DEFAULT_REGION": "XX"}, "DEFAULT_REGION"),
        ({"STALL_TIMEOUT": "0"}, "STALL_TIMEOUT"),
        ({"RESEND_UNKNOWN": "maybe"}, "RESEND_UNKNOWN"),
        ({"RECONNECT_SETTLE": "-1"}, "RECONNECT_SETTLE"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
        ({"CELERY_BROKER_URL": "sqs://x"}, "CELERY_BROKER_URL"),
        ({"STALL_TIMEOUT": "20", "GATEWAY_READ_TIMEOUT": "20"}, "STALL_TIMEOUT"),
    ],
)
def test_settings__bad_value_names_its_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigurationError, match=names):
        Settings.from_env(env)


def test_settings__pacing_redis_defaults_to_a_redis_broker_only() -> None:
    assert Settings.from_env({"CELERY_BROKER_URL": "redis://h:6379/0"}).pacing_redis_url == (
        "redis://h:6379/0"
    )
    assert Settings.from_env({"CELERY_BROKER_URL": "amqp://g@h//"}).pacing_redis_url is None
    assert (
        Settings.from_env(
            {"CELERY_BROKER_URL": "amqp://g@h//", "REDIS_URL": "redis://r/1"}
        ).pacing_redis_url
        == "redis://r/1"
    )


@pytest.mark.parametrize(
    "variable", ["STUCK_HOURS", "STUCK_REPORT_INTERVAL", "CLEANUP_DAYS", "CLEANUP_INTERVAL"]
)
def test_housekeeping_variables__are_checked_when_the_settings_load(variable: str) -> None:
    # they used to be parsed by the beat tasks themselves, so a typo failed only at 3 a.m.
    with pytest.raises(ConfigurationError, match=variable):
        Settings.from_env({variable: "soon"})
    with pytest.raises(ConfigurationError, match=variable):
        Settings.from_env({variable: "0"})
