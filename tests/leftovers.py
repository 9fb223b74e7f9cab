"""Finding processes a test (or a whole test session) left behind, by reading /proc.

Embedded servers daemonize (redis-server ``--daemonize``, pg_ctl's postmaster in a session of its
own), so they are not children of whoever started them: they are found by the folder they run in
(their working directory, or a path on their command line) or by a marker in the environment
they inherited.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SESSION_MARKER = "CAMPAIGNS_TEST_SESSION"
"""Environment variable holding a per-session id that every process the session starts inherits."""


@dataclass(frozen=True)
class Proc:
    """A live process: its pid and its command line, for a readable assertion message."""

    pid: int
    cmdline: str


def _live(entry: Path) -> bool:
    try:
        state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie has exited; only its exit status is left


def _cmdline(entry: Path) -> str:
    try:
        raw = (entry / "cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def _processes() -> list[Path]:
    me = os.getpid()
    return [p for p in Path("/proc").iterdir() if p.name.isdigit() and int(p.name) != me]


def processes_in(folder: Path) -> list[Proc]:
    """Live processes whose working directory or command line lies in ``folder``."""
    folder = folder.resolve()
    needle = str(folder)
    found = []
    for entry in _processes():
        cmdline = _cmdline(entry)
        try:
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            cwd = None  # not ours to read, or gone
        inside = cwd is not None and (cwd == folder or folder in cwd.parents)
        if (inside or needle in cmdline) and _live(entry):
            found.append(Proc(int(entry.name), cmdline))
    return found


def processes_with_env(name: str, value: str) -> list[Proc]:
    """Live processes (other than this one) started with ``name=value`` in their environment."""
    needle = f"{name}={value}".encode()
    found = []
    for entry in _processes():
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue  # gone, or another user's
        if needle in environ.split(b"\0") and _live(entry):
            found.append(Proc(int(entry.name), _cmdline(entry)))
    return found
