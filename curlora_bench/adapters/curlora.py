"""CURLoRA (Fawi 2024): fixed C and R sampled from W with inverted norm probabilities, train U.

The options, report rows and registration; the layer and the sampling are in `curlora_layer.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..core.metrics import DiagnosticRow
from ..core.parse import positive
from .base import (
    Adapter,
    RankedConfig,
    check_rank,
    module_seed,
    wrap_targets,
)


@dataclass
class CURLoRAConfig(RankedConfig):
    """CURLoRA options."""

    eps: float = field(
        default=1e-3,
        metadata={"help": "smoothing in q = 1/(p + eps); 1e-3 as the reference code, 0 = paper formula"},
    )
    sampling: Literal["inverse", "normal", "uniform"] = field(
        default="inverse",
        metadata={"help": "inverse: q ~ 1/(p+eps) (paper); normal: q = p (classic CUR); uniform"},
    )
    replacement: bool = field(default=True, metadata={"help": "sample indices with replacement (paper)"})
    cr: Literal["sampled", "random"] = field(default="sampled", metadata={
        "omitted_at_default": True,
        "help": "sampled: C and R are columns and rows of W (the paper); random: a control, Gaussian C and R "
                "with W's scale (its RMS entry), so the r x r bottleneck can be told apart from the CUR selection"})

    def default_label(self) -> str:
        label = f"curlora-r{self.rank}"
        if self.sampling != "inverse":
            label += f"-{self.sampling}"
        if self.eps != 1e-3 and self.sampling == "inverse":
            label += f"-eps{self.eps:g}"
        if not self.replacement:
            label += "-norepl"
        if self.cr == "random":
            label += "-randcr"
        return label

    def validate(self, where: str) -> None:
        super().validate(where)
        positive(where, "eps", self.eps, allow_zero=True)


def _summary(axis: str, key: str) -> tuple[str, ...]:
    return ("sampling", "summary", axis, key)


class CURLoRA(Adapter):
    name = "curlora"
    config_cls = CURLoRAConfig
    help = "CURLoRA: fixed C, R from W (inverted norm sampling), trains U (r x r) from zero"
    prefixes = ("curlora_",)

    report_rows = (
        DiagnosticRow("CUR columns: KL(q ‖ uniform), mean", "kl", (_summary("columns", "kl_from_uniform_mean"),)),
        DiagnosticRow("CUR rows: KL(q ‖ uniform), mean", "kl", (_summary("rows", "kl_from_uniform_mean"),)),
        DiagnosticRow("CUR columns: max/min probability, worst matrix", "ratio",
                      (_summary("columns", "max_min_ratio_max"),)),
        DiagnosticRow("CUR rows: max/min probability, worst matrix", "ratio", (_summary("rows", "max_min_ratio_max"),)),
        DiagnosticRow("CUR duplicate indices (columns + rows)", "count",
                      (_summary("columns", "duplicates_total"), _summary("rows", "duplicates_total"))),
    )

    def check(self, model, targets, cfg, where):
        check_rank(model, targets, cfg.rank, where)

    def attach(self, model, targets, cfg, seed, where):
        from .curlora_layer import CURLoRALayer, cur_indices, random_cr

        def wrap(name, base):
            cols, rows, q_cols, q_rows = cur_indices(
                base.weight, cfg.rank, cfg.sampling, cfg.eps, cfg.replacement, module_seed(seed, name)
            )
            c, r = random_cr(base.weight, cfg.rank, module_seed(seed, "random-cr:" + name)) \
                if cfg.cr == "random" else (None, None)
            return CURLoRALayer(base, cfg.rank, cfg.alpha, cols, rows, q_cols, q_rows, c, r)

        self.check(model, targets, cfg, where)
        names = wrap_targets(model, targets, where, wrap)
        for pname, p in model.named_parameters():
            p.requires_grad_("curlora_U" in pname)
        return names

    def diagnostics(self, model, modules):
        from .curlora_layer import curlora_sampling

        return {"sampling": curlora_sampling(model, modules)}

    def export_extras(self, out, cfg, modules, conv1d, base_model, tensors):
        return {"curlora_indices": {
            name: {"columns": tensors[f"{name}.curlora_col_idx"].tolist(),
                   "rows": tensors[f"{name}.curlora_row_idx"].tolist()}
            for name in modules
        }}
