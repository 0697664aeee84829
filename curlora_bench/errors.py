"""The one error type the CLI turns into a friendly line."""


class BenchError(Exception):
    """A problem with the user's input or environment, reported as one line (exit code 2)."""
