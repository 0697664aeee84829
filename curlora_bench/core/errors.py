"""The one error type the CLI turns into a friendly line, and the stop a signal causes."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class BenchError(Exception):
    """A problem with the user's input or environment, reported as one line (exit code 2)."""


class Interrupted(BaseException):
    """SIGINT/SIGTERM arrived: the work in flight is dropped, finished stages stay on disk.

    A BaseException, so no `except Exception` on the way up swallows it; the CLI exits with
    128 + the signal number (130 for Ctrl-C, 143 for SIGTERM), as a shell does.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into `Interrupted` while the block runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM back while a few renames that belong together run (delivered after)."""
    mask = getattr(signal, "pthread_sigmask", None)
    if mask is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    old = mask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        mask(signal.SIG_SETMASK, old)


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (or its type name), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__
