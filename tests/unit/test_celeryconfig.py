"""The Celery settings that prevent known losses are in force, and beat only schedules tasks
the workers know."""

from __future__ import annotations

import os

import pytest

if not (os.environ.get("DATABASE_URL") and os.environ.get("CELERY_BROKER_URL")):
    # importing celeryconfig resolves the worker's settings, which starts the embedded servers
    # in the project's data folder when no URL is configured (as a worker needs): a run of the
    # unit tests without the URLs left them running. CI and `make test` with the README's
    # environment configure them.
    pytest.skip("needs DATABASE_URL and CELERY_BROKER_URL (celeryconfig starts embedded servers "
                "without them)", allow_module_level=True)  # fmt: skip

import celeryconfig
import workers.tasks  # noqa: F401  (registers the tasks, as the worker does via include=)
from workers.app import app


def test_beat_schedule__names_only_registered_tasks() -> None:
    names = {entry["task"] for entry in celeryconfig.beat_schedule.values()}
    assert names == {
        "campaigns.sweep", "campaigns.watch_sessions", "campaigns.report_stuck",
        "campaigns.cleanup",
    }
    assert names <= set(app.tasks)


def test_settings_that_prevent_losses__are_in_force() -> None:
    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.worker_pool == "threads"
    assert conf.task_soft_time_limit < conf.task_time_limit
    assert conf.task_time_limit < conf.broker_transport_options["visibility_timeout"]


def test_transport_options__hold_only_transport_settings() -> None:
    # the stuck-report and cleanup beat entries were once pasted in here, where kombu ignores
    # them; beat must find them in beat_schedule only
    options = celeryconfig.broker_transport_options
    assert set(options) == {"visibility_timeout", "max_retries"}
    assert {"stuck-report", "cleanup"} <= set(celeryconfig.beat_schedule)


def test_every_task_name_the_domain_sends__is_registered_by_the_workers() -> None:
    from campaigns import dispatch

    assert set(dispatch.TASK_NAMES) <= set(app.tasks)
