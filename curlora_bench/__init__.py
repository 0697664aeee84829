"""curlora-bench: how much does continual fine-tuning with LoRA, CURLoRA and friends forget?"""

__version__ = "0.1.0"

__all__ = ["load_adapter", "load_model"]

# OpenMP threads that spin while they wait for a core another process holds cost a run an order of
# magnitude when it shares the cores (two runs, a run beside a test suite); waiting passively costs
# a run alone nothing measurable (docs/performance.md, "Sharing the cores"). Read by the OpenMP
# runtime when torch loads it, so set here, before; a setting of the user's own wins.
__import__("os").environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

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
