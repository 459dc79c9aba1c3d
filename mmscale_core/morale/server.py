"""Run ``mmscale morale serve`` in a subprocess on loopback (for the load bench and the crash tests).

The child is started with ``python -m mmscale_core.morale.cli`` (no torch
import) on 127.0.0.1 and a free port; :meth:`ServerProcess.start` returns when
``/healthz`` answers. ``kill()`` is SIGKILL, the crash the durability test
needs; ``stop()`` is a graceful SIGTERM.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

LOOPBACK = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A port free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


class ServerProcess:
    def __init__(self, data: str | os.PathLike, predictions: str | os.PathLike, db: str, admin_token: str,
                 *extra_args: str, port: int | None = None, log: str | os.PathLike | None = None):
        self.port = port or free_port()
        self.base_url = f"http://{LOOPBACK}:{self.port}"
        self.cmd = [sys.executable, "-m", "mmscale_core.morale.cli", "serve", "--data", str(data),
                    "--predictions", str(predictions), "--db", str(db), "--host", LOOPBACK,
                    "--port", str(self.port), "--log-level", "warning", *extra_args]
        self.admin_token = admin_token  # passed in the environment: argv is visible in `ps`
        self.log = Path(log) if log else None
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> "ServerProcess":
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL
        env = {**os.environ, "MMSCALE_MORALE_ADMIN_TOKEN": self.admin_token, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                                          os.environ.get("PYTHONPATH")]))}
        self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.base_url, trust_env=False, timeout=2) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    detail = self.log.read_text(errors="replace")[-2000:] if self.log else ""
                    raise RuntimeError(f"morale server exited with code {self.proc.returncode}: {detail}")
                try:
                    if client.get("/healthz").status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"morale server did not answer on {self.base_url} within {timeout:.0f} s")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs (a crash)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
