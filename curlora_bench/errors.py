"""The one error type the CLI turns into a friendly line."""


class BenchError(Exception):
    """A problem with the user's input or environment, reported as one line (exit code 2)."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (or its type name), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__
