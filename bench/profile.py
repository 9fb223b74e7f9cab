"""Opt-in sampling profile of worker processes while a benchmark runs (BENCH_PROFILE=1 and
py-spy installed): where a worker's CPU time goes, by the engine's steps.

py-spy samples only threads that are running Python (``--gil``: the one holding the GIL), so
shares are shares of the process's Python CPU, not of wall time.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

# inclusive buckets, checked in this order: a stack counts for the first bucket it matches
BUCKETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("claim (PostgreSQL)", ("claim_recipient",)),
    ("record outcome (PostgreSQL)", ("record_outcome",)),
    ("finish batch / heartbeat", ("finish_batch", "heartbeat", "batch_without_pending")),
    ("pacing (Redis Lua)", ("pacing.py",)),
    ("gateway HTTP call", ("gateways/",)),
    ("task run setup (campaign read, health)", ("get_campaign", "execute (campaigns/engine")),
    ("Celery / kombu (broker, task dispatch)", ("celery/", "kombu/")),
)


def _py_spy() -> str | None:
    return shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))


class Profiler:
    """``py-spy record`` attached to some processes until :meth:`stop` (none: disabled)."""

    @staticmethod
    def wanted() -> bool:
        """BENCH_PROFILE is set and py-spy is installed."""
        return bool(os.environ.get("BENCH_PROFILE")) and _py_spy() is not None

    def __init__(self, pids: list[int], out_dir: Path) -> None:
        spy = _py_spy()
        self.enabled = bool(pids) and self.wanted()
        self.outputs: list[Path] = []
        self.processes: list[subprocess.Popen[bytes]] = []
        if not self.enabled:
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        for pid in pids:
            output = out_dir / f"py-spy-{pid}.txt"
            self.outputs.append(output)
            self.processes.append(
                subprocess.Popen(
                    [
                        str(spy),
                        "record",
                        "--pid",
                        str(pid),
                        "--rate",
                        "250",
                        "--gil",
                        "--format",
                        "raw",
                        "--output",
                        str(output),
                        "--nonblocking",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )

    def stop(self) -> str | None:
        """Stop sampling; a one-line summary of the shares, or None when disabled."""
        if not self.enabled:
            return None
        for process in self.processes:
            process.send_signal(signal.SIGINT)
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        return summarize(self.outputs)


def summarize(outputs: list[Path]) -> str:
    """Shares of samples per bucket from py-spy raw (collapsed-stack) files."""
    counts: Counter[str] = Counter()
    total = 0
    for path in outputs:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            stack, _, number = line.rpartition(" ")
            if not number.isdigit():
                continue
            samples = int(number)
            total += samples
            counts[_bucket(stack)] += samples
    if not total:
        return "no samples"
    return ", ".join(f"{name} {100 * n / total:.0f}%" for name, n in counts.most_common())


def _bucket(stack: str) -> str:
    for name, needles in BUCKETS:
        if any(needle in stack for needle in needles):
            return name
    return "other (logging, threads, idle loop)"
