"""The benchmarks keep working: ``python -m bench --quick`` runs every benchmark at tiny size
and writes the table with one row per figure. Never a timed assertion: the figures of a quick
run mean nothing, only that each benchmark produced its rows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

EXPECTED = {
    "list loading": 5,
    "engine overhead": 2,
    "many sessions": 2,
    "horizontal scaling": 3,
    "memory flatness": 1,
    "recovery latency": 4,
    "pacing fidelity": 2,
    "cloud api rate": 4,
    "sender pool": 2,
    "sender protection": 3,
    "ledger export": 4,
    "opt-out check": 1,
    "http api": 2,
    "delivery receipts": 2,
    "dashboard": 9,
}


def test_quick_bench__writes_a_table_with_every_row(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    env = {k: v for k, v in os.environ.items() if k != "CAMPAIGNS_QUEUE"}
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=840, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    text = out.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    counts = {name: sum(row.startswith(f"| {name} |") for row in rows) for name in EXPECTED}
    assert counts == EXPECTED, text
    assert "did not finish" not in text, text
    for fact in ("cores", "memory", "PostgreSQL", "Redis", "Python"):
        assert fact in text
    assert "python -m bench --quick" in text
