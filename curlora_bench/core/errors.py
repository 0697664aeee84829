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


_COMMAND = False  # this process is the `curlora-bench` command itself (not a library user, not a test)


def exit_on_signals_at_start() -> None:
    """While the command starts (its imports take up to seconds), SIGINT/SIGTERM end it at once
    with one line and 128 + the signal number: nothing has been written yet, and an exception
    raised inside an import would surface as a traceback. `signals_as_errors` takes over when the
    command itself begins."""
    import os

    global _COMMAND
    _COMMAND = True

    def handler(signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        os.write(2, f"interrupted ({name}) while starting; nothing was written\n".encode())
        os._exit(128 + signum)

    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, handler)


@contextlib.contextmanager
def signals_as_errors() -> Iterator[None]:
    """While a command runs, SIGINT is KeyboardInterrupt and SIGTERM `Interrupted`, both turned into
    one line by the CLI (130 / 143) wherever in the command they arrive (main thread only); the
    handlers before it are put back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        raise Interrupted(signum)

    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        for s, h in previous.items():
            # the command's outcome is decided (done, or its one line printed): a signal while the
            # interpreter shuts down changes nothing, so it is ignored (Python resets handlers to the
            # default, killing, late in its shutdown, but leaves an ignored signal ignored)
            signal.signal(s, signal.SIG_IGN if _COMMAND else h if h is not None else signal.SIG_DFL)


class SignalNote:
    """The first SIGINT/SIGTERM that arrived while `signals_noted` was active (None: none)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def handler(self, signum: int, frame: object) -> None:
        if self.signum is None:
            self.signum = signum

    def install(self) -> None:
        """Take SIGINT/SIGTERM (back): a library may have installed handlers of its own (Ray does)."""
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                signal.signal(s, self.handler)

    def check(self) -> None:
        """Stop here if a signal arrived: `Interrupted`, raised from ordinary code."""
        if self.signum is not None:
            raise Interrupted(self.signum)


@contextlib.contextmanager
def signals_noted() -> Iterator[SignalNote]:
    """SIGINT/SIGTERM noted, not raised, while the block runs; the block calls `check()` where
    stopping is safe. For code that waits inside a C extension calling back into Python (Ray's
    driver loop), where an exception raised by a signal handler surfaces as a SystemError."""
    note = SignalNote()
    if threading.current_thread() is not threading.main_thread():
        yield note
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    note.install()
    try:
        yield note
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM back while a few renames that belong together run (delivered after).

    The Python-level handlers are swapped for one that only notes the signal, and the signal is
    raised again once the block is over. Blocking it in the thread mask alone is not enough: the
    kernel hands a process-directed signal to any thread that does not block it (torch's, a
    tracker's), and CPython then runs the handler in the main thread mid-block anyway."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    note = SignalNote()
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    note.install()
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
        if note.signum is not None:
            signal.raise_signal(note.signum)  # now, to the handler that was in place


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (or its type name), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__
