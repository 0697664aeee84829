from .core.errors import exit_on_signals_at_start

exit_on_signals_at_start()  # Ctrl-C or SIGTERM while the CLI imports: one line, not a traceback

from .cli import main  # noqa: E402

main()
