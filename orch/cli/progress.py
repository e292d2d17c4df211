"""The progress line on stderr: redrawn on a timer, so a silent fleet still shows time pass.

A bar that moves only when a reply arrives sits still for the whole timeout while a node is
silent, and the operator cannot tell a hung client from a slow node. The line is redrawn
every :data:`REDRAW_SECONDS` with the elapsed time and how many nodes are still awaited
(and, in ``--batch`` mode, which batch). Replies printed to stdout while it runs go through
:meth:`Progress.printing`, which clears the line first and draws it again after.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, TextIO

REDRAW_SECONDS = 0.25
WIDTH = 30


class Progress:
    """A one-line progress indicator on stderr, shown only when stderr is a terminal."""

    def __init__(self, enabled: bool = True, stream: TextIO | None = None,
                 interval: float = REDRAW_SECONDS) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled and self.stream.isatty()
        self.total: int | None = None
        self.count = 0
        self.batch: tuple[int, int] | None = None
        self._interval = interval
        self._started = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._shown = False
        self._thread: threading.Thread | None = None
        if self.enabled:
            self._thread = threading.Thread(target=self._tick, name="orch-progress",
                                            daemon=True)
            self._thread.start()

    def expect(self, nodes: list[str]) -> None:
        self.total = len(nodes)
        self._draw()

    def start_batch(self, index: int, count: int, _nodes: list[str]) -> None:
        self.batch = (index, count)
        self._draw()

    def advance(self, *_: Any) -> None:
        self.count += 1
        self._draw()

    def text(self) -> str:
        """The line as drawn now (without the carriage return)."""
        elapsed = time.monotonic() - self._started
        batch = f", batch {self.batch[0]} of {self.batch[1]}" if self.batch else ""
        if self.total:
            filled = int(WIDTH * min(self.count, self.total) / self.total)
            bar = "#" * filled + " " * (WIDTH - filled)
            awaited = max(self.total - self.count, 0)
            return (f" [{bar}] {self.count} / {self.total}, {awaited} awaited{batch}, "
                    f"{elapsed:.1f}s")
        return f" {self.count} replies{batch}, {elapsed:.1f}s"

    def _tick(self) -> None:
        while not self._stop.wait(self._interval):
            self._draw()

    def _draw(self) -> None:
        if not self.enabled or self._stop.is_set():
            return
        with self._lock:
            self.stream.write("\r" + self.text() + "\x1b[K")
            self.stream.flush()
            self._shown = True

    def _clear(self) -> None:
        if self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False

    @contextlib.contextmanager
    def printing(self) -> Iterator[None]:
        """Clear the line while the caller prints a result, then draw it again."""
        if not self.enabled:
            yield
            return
        with self._lock:
            self._clear()
            yield
        self._draw()

    def done(self) -> None:
        """Stop the timer and clear the line (safe to call twice)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=1.0)
        if self.enabled:
            with self._lock:
                self._clear()
