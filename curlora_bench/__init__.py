"""curlora-bench: how much does continual fine-tuning with LoRA, CURLoRA and friends forget?"""

__version__ = "0.1.0"
