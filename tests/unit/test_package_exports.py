"""The original design's names import from the package itself, and lazily: importing the domain
(or the package) loads no database driver and no Celery."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

import campaigns
from tests.conftest import ROOT

HEAVY = ("sqlalchemy", "celery", "kombu", "psycopg2", "alembic", "redis")


def test_original_names__import_from_the_package() -> None:
    from campaigns import CampaignBatchProcessor, CampaignRecoveryManager, CampaignStateManager
    from campaigns.processor import CampaignBatchProcessor as Processor
    from campaigns.recovery import CampaignRecoveryManager as Recovery
    from campaigns.state import CampaignStateManager as State

    assert (CampaignBatchProcessor, CampaignRecoveryManager, CampaignStateManager) == (
        Processor,
        Recovery,
        State,
    )
    assert {"CampaignBatchProcessor", "CampaignRecoveryManager", "CampaignStateManager"} <= set(
        campaigns.__all__
    )
    assert set(campaigns.__all__) <= set(dir(campaigns))


def test_an_unknown_name__is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        campaigns.Nope  # noqa: B018
    with pytest.raises(ImportError):
        exec("from campaigns import Nope")


@pytest.mark.parametrize("module", ["campaigns", "campaigns.domain"])
def test_importing__loads_no_driver_and_no_celery(module: str) -> None:
    script = textwrap.dedent(f"""
        import json, sys
        import {module}
        print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}})))
    """)
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    loaded = set(json.loads(out.stdout))
    assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))
