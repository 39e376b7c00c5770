"""`watcher …` as a real subprocess in tests (no tests here): its output read line by line as
it comes, and a free loopback port to serve on."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence

WAIT = 60.0  # an upper bound for a process to say something, never a pause


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class WatcherProcess:
    """``python -m watcher ARGS`` whose output lines are read as they come."""

    def __init__(self, args: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "watcher", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**(env or os.environ), "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put("")

    def wait_for(self, fragment: str) -> str:
        """The next line with ``fragment``; fails when the process ends or says nothing
        for ``WAIT`` seconds."""
        while True:
            try:
                line = self.lines.get(timeout=WAIT)
            except queue.Empty:
                raise AssertionError(f"no {fragment!r} in the log:\n" + "".join(self.log)) from None
            self.log.append(line)
            if line == "":
                raise AssertionError(f"process ended before {fragment!r}:\n" + "".join(self.log))
            if fragment in line:
                return line

    def stop(self) -> int:
        """SIGTERM (once), then the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=WAIT)
