"""LocalStack: the engine's processes (workers, beat, sandbox gateway, web service) as
children of one process, for the demo, the end-to-end and chaos tests, and the benchmarks.

Each child gets the same environment (database, broker, pacing Redis, timings), its own log file,
and its own process group, so ``kill(-9)`` takes the whole worker down like a crashed machine
would, and ``stop()`` always leaves nothing running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import requests

from campaigns.local.processes import free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Child:
    """One child process of the stack."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class LocalStack:
    """Children sharing one environment. ``env`` holds DATABASE_URL, CELERY_BROKER_URL,
    REDIS_URL and any timing overrides."""

    env: Mapping[str, str]
    log_dir: Path
    children: dict[str, Child] = field(default_factory=dict)
    sandbox_url: str | None = None
    web_url: str | None = None
    _counter: int = 0

    def _env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.env)
        env.update(extra or {})
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def _spawn(self, name: str, argv: list[str], extra: Mapping[str, str] | None = None) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        handle = log_path.open("ab")
        process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=self._env(extra),
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        handle.close()
        child = Child(name, process, log_path)
        self.children[name] = child
        return child

    def start_sandbox(
        self,
        record: Path,
        *,
        api_key: str = "sandbox-token",
        waha_wait: float = 0.5,
        port: int | None = None,
    ) -> str:
        """Start the sandbox gateway; returns its base URL once it answers."""
        port = port or free_port()
        self._spawn(
            "sandbox",
            [
                sys.executable,
                "-m",
                "campaigns.sandbox",
                "--port",
                str(port),
                "--record",
                str(record),
                "--api-key",
                api_key,
                "--waha-wait",
                str(waha_wait),
            ],
        )
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(url + "/_sandbox/health"), 30, "the sandbox to answer")
        self.sandbox_url = url
        return url

    def start_web(self, port: int | None = None) -> str:
        """Start the web service (``campaigns web``); returns its URL once /healthz is 200."""
        port = port or free_port()
        child = self._spawn(
            "web", [sys.executable, "-m", "campaigns.cli", "web", "--port", str(port)]
        )
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _healthy(url + "/healthz") or not child.alive, 60, "the web service")
        if not child.alive:
            raise RuntimeError(f"the web service exited:\n{child.log()[-3000:]}")
        self.web_url = url
        return url

    def start_worker(
        self,
        name: str | None = None,
        *,
        concurrency: int = 8,
        extra_env: Mapping[str, str] | None = None,
        wait_ready: bool = True,
    ) -> Child:
        """Start ``celery -A workers worker`` (the production configuration)."""
        self._counter += 1
        name = name or f"worker{self._counter}"
        child = self._spawn(
            name,
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "workers",
                "worker",
                "-l",
                "INFO",
                "-n",
                f"{name}@%h",
                "--concurrency",
                str(concurrency),
                "--without-mingle",
                "--without-gossip",
            ],
            extra_env,
        )
        if wait_ready:
            wait_until(
                lambda: " ready." in child.log() or not child.alive, 60, f"{name} to be ready"
            )
            if not child.alive:
                raise RuntimeError(f"{name} exited:\n{child.log()[-3000:]}")
        return child

    def start_beat(self, name: str = "beat") -> Child:
        """Start ``celery -A workers beat`` with its schedule file in the log folder."""
        return self._spawn(
            name,
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "workers",
                "beat",
                "-l",
                "INFO",
                "-s",
                str(self.log_dir / f"{name}-schedule"),
            ],
        )

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal a child's whole process group (SIGKILL: a crash, nothing cleaned up)."""
        child = self.children[name]
        try:
            os.killpg(child.process.pid, sig)
        except ProcessLookupError:
            pass
        if sig in (signal.SIGKILL, signal.SIGTERM):
            try:
                child.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(child.process.pid, signal.SIGKILL)
                child.process.wait(timeout=10)

    def stop(self, name: str, timeout: float = 15.0) -> None:
        """Stop one child: SIGTERM (warm shutdown), then SIGKILL after ``timeout``."""
        child = self.children.pop(name)
        if child.alive:
            try:
                os.killpg(child.process.pid, signal.SIGTERM)
                child.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(child.process.pid, signal.SIGKILL)
                child.process.wait(timeout=10)
            except ProcessLookupError:
                pass

    def stop_all(self) -> None:
        """Stop every child; never leaves one running."""
        for name in list(self.children):
            self.stop(name)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code < 500
    except requests.RequestException:
        return False


def _healthy(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def wait_until(
    predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.1
) -> None:
    """Poll ``predicate`` until it is truthy; TimeoutError naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
