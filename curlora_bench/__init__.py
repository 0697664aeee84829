"""curlora-bench: how much does continual fine-tuning with LoRA, CURLoRA and friends forget?"""

__version__ = "0.1.0"

__all__ = ["load_adapter", "load_model"]

if __import__("os").path.basename(__import__("sys").argv[0]) == "curlora-bench":
    # the console script: Ctrl-C or SIGTERM while it imports is one line, not a traceback
    from .core.errors import exit_on_signals_at_start

    exit_on_signals_at_start()


def __getattr__(name: str):
    # Lazy, so `curlora-bench --help` does not pay for importing torch and PEFT.
    if name == "load_adapter":
        from .store.export import load_adapter

        return load_adapter
    if name == "load_model":
        from .sources.models import load_model

        return load_model
    raise AttributeError(f"module 'curlora_bench' has no attribute {name!r}")
