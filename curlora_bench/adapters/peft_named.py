"""PEFT's methods by name, each built by PEFT itself (nothing re-implemented) with its options
checked when the config loads: `{method: dora, r: 8}`, `{method: pissa}`, `{method: adalora}`, ...

Every entry is one PEFT config: the entry's own options (PEFT's key names) plus what makes the
method (`use_dora: true`, `init_lora_weights: "olora"`, ...), which the entry fixes. What PEFT
runs is stated per entry on the concepts page (`docs/concepts.md`, "PEFT methods by name").

Three families of behaviour beside a plain injection:
- initialisations that move the base weights (PiSSA, OLoRA, CorDA, LoRA-GA subtract the initial
  adapter from W): the run's drift reference is snapshotted right after attach as the layer's
  *effective* weight (W_res + B A = W), so drift and intruders are measured against the original
  model; CorDA's and LoRA-GA's residual base, which only data can rebuild, is checkpointed;
- data-driven initialisations (CorDA, EVA, LoRA-GA): attached as plain LoRA (B = 0), then
  initialised by PEFT in the first stage's `before_stage` hook from `init_examples` examples of
  the first stage's first task's *training* split, drawn with a generator seeded by the run seed
  (never an eval split, never the perplexity corpora);
- AdaLoRA's rank allocator: PEFT's `AdaLoraModel.update_and_allocate` after every optimizer step
  (the `after_step` hook), its budget over the run's total optimizer steps, and its orthogonal
  regulariser (PEFT's `AdaLoraModel.forward`) added to the loss in the `step` hook.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, ClassVar, Literal

from ..core.env import module_seed
from ..core.errors import BenchError
from ..core.parse import positive
from .base import Adapter, AdapterConfig, check_rank, find_targets, freeze, set_module, uses_conv1d

# keys of an entry that are the bench's, not PEFT's
OWN_KEYS = ("init_examples",)


@dataclass
class NamedPeftConfig(AdapterConfig):
    """Options of a named PEFT entry: PEFT's own keys (its defaults unless noted)."""

    peft_type: ClassVar[str] = "LORA"
    method: ClassVar[str] = ""
    fixed: ClassVar[dict[str, Any]] = {}  # the PEFT keys that make this method
    data_driven: ClassVar[bool] = False  # initialised from data in the first stage's before_stage
    moves_base: ClassVar[bool] = False  # its init rewrites W as W - B A (and only data can redo it)
    no_conv1d: ClassVar[str] = ""  # why PEFT cannot run it on GPT-2's Conv1D layers, where it cannot

    def default_label(self) -> str:
        return f"{self.method}-r{self.r}"  # type: ignore[attr-defined]

    def peft_options(self) -> dict[str, Any]:
        """The PEFT config's keys: the entry's own (less the bench's) and the method's fixed ones."""
        own = {k: v for k, v in dataclasses.asdict(self).items() if k not in OWN_KEYS}
        return {**own, **self.fixed}

    def validate(self, where: str) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("positive"):
                positive(where, f.name, value, allow_zero=f.metadata["positive"] == "zero")
        self.build([], where)

    def build(self, targets: list[str], where: str, **extra: Any):
        """PEFT's config of this entry (`extra`: keys set at attach, such as fan_in_fan_out)."""
        from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING
        from peft.utils import PeftType

        cls = PEFT_TYPE_TO_CONFIG_MAPPING[PeftType[self.peft_type]]
        options = {**self.peft_options(), **extra}
        try:
            return cls(**options, **({"target_modules": targets} if targets else {}))
        except (TypeError, ValueError) as exc:
            key = next((k for k in options if f"`{k}`" in str(exc) or f"{k} " in str(exc)), None)
            raise BenchError(f"{where}{'.' + key if key else ''}: PEFT {cls.__name__} rejected it: "
                             f"{str(exc).splitlines()[0]}") from None


def _lora_fields(r: int = 8, alpha: float = 8):
    """r, lora_alpha, lora_dropout as fields (defaults: the `lora` entry's scale of 1)."""
    return (
        field(default=r, metadata={"help": "rank r", "positive": "strict"}),
        field(default=alpha, metadata={"help": "lora_alpha: PEFT scales the update by lora_alpha / r "
                                                "(rsLoRA: / sqrt(r)); default r, the `lora` entry's scale of 1",
                                        "positive": "zero"}),
        field(default=0.0, metadata={"help": "lora_dropout", "positive": "zero"}),
    )


def _lora_config(name: str, fixed: dict[str, Any], doc: str, **flags: Any) -> type[NamedPeftConfig]:
    r, alpha, dropout = _lora_fields()
    ns = {"__annotations__": {"r": int, "lora_alpha": float, "lora_dropout": float},
          "r": r, "lora_alpha": alpha, "lora_dropout": dropout, "method": name, "fixed": fixed, "__doc__": doc,
          "__module__": __name__, **flags}
    return dataclass(type(f"{name.title().replace('-', '')}Config", (NamedPeftConfig,), ns))


DoRAConfig = _lora_config("dora", {"use_dora": True}, "DoRA: PEFT LoraConfig(use_dora=True).")
RsLoRAConfig = _lora_config("rslora", {"use_rslora": True}, "rsLoRA: PEFT LoraConfig(use_rslora=True).")
PiSSAConfig = _lora_config("pissa", {"init_lora_weights": "pissa"},
                           "PiSSA: PEFT LoraConfig(init_lora_weights='pissa'), full SVD.")
OLoRAConfig = _lora_config("olora", {"init_lora_weights": "olora"},
                           "OLoRA: PEFT LoraConfig(init_lora_weights='olora'), QR of W (not O-LoRA).",
                           no_conv1d="PEFT's OLoRA init (LoraLayer.olora_init) takes the QR of the stored weight "
                                     "without fan_in_fan_out, so it does not fit GPT-2's Conv1D")
MiCAConfig = _lora_config("mica", {"init_lora_weights": "mica"},
                          "MiCA: PEFT LoraConfig(init_lora_weights='mica'): B the minor left singular vectors, frozen.")


def _init_examples():
    return field(default=32, metadata={
        "help": "examples of the first stage's first task's training split the initialisation reads (drawn with "
                "the run seed; never an eval split or a perplexity corpus)", "positive": "strict"})


@dataclass
class CorDAConfig(NamedPeftConfig):
    """CorDA in its knowledge-preserving mode: PEFT LoraConfig(init_lora_weights='corda',
    corda_config=CordaConfig(corda_method='kpm')), after PEFT's `preprocess_corda`."""

    method: ClassVar[str] = "corda"
    fixed: ClassVar[dict[str, Any]] = {"init_lora_weights": "corda"}
    data_driven: ClassVar[bool] = True
    moves_base: ClassVar[bool] = True
    r: int = _lora_fields()[0]
    lora_alpha: float = _lora_fields()[1]
    lora_dropout: float = _lora_fields()[2]
    init_examples: int = _init_examples()

    def peft_options(self) -> dict[str, Any]:
        from peft.tuners.lora.config import CordaConfig

        return {**super().peft_options(), "corda_config": CordaConfig(corda_method="kpm")}


@dataclass
class EVAConfig(NamedPeftConfig):
    """EVA: PEFT LoraConfig(init_lora_weights='eva', eva_config=EvaConfig(...)), A from the SVD of
    each layer's inputs (PEFT's `get_eva_state_dict`), B = 0."""

    method: ClassVar[str] = "eva"
    fixed: ClassVar[dict[str, Any]] = {"init_lora_weights": "eva"}
    data_driven: ClassVar[bool] = True
    r: int = _lora_fields()[0]
    lora_alpha: float = _lora_fields()[1]
    lora_dropout: float = _lora_fields()[2]
    rho: float = field(default=1.0, metadata={
        "help": "EVA's rank redistribution: a layer's rank is at most rho * r (PEFT's default 2.0; 1.0 keeps every "
                "layer at r, so trainable parameters match LoRA's; above 1 the run counts them before redistribution)"})
    tau: float = field(default=0.99, metadata={"help": "EVA's convergence threshold (cosine of successive SVDs)"})
    whiten: bool = field(default=False, metadata={"help": "whiten the singular vectors"})
    init_examples: int = _init_examples()

    def peft_options(self) -> dict[str, Any]:
        from peft.tuners.lora.config import EvaConfig

        own = super().peft_options()
        eva = EvaConfig(**{k: own.pop(k) for k in ("rho", "tau", "whiten")})
        return {**own, "eva_config": eva}

    def validate(self, where: str) -> None:
        if self.rho < 1:
            raise BenchError(f"{where}.rho: must be >= 1 (a layer's rank is at most rho * r), got {self.rho!r}")
        if not 0 <= self.tau <= 1:
            raise BenchError(f"{where}.tau: must be between 0 and 1, got {self.tau!r}")
        super().validate(where)


@dataclass
class LoRAGAConfig(NamedPeftConfig):
    """LoRA-GA: PEFT LoraConfig(init_lora_weights='lora_ga', lora_ga_config=LoraGAConfig(...)),
    after PEFT's `preprocess_loraga` (the gradient of the model's own next-token loss)."""

    method: ClassVar[str] = "lora-ga"
    fixed: ClassVar[dict[str, Any]] = {"init_lora_weights": "lora_ga"}
    data_driven: ClassVar[bool] = True
    moves_base: ClassVar[bool] = True
    r: int = _lora_fields()[0]
    lora_alpha: float = _lora_fields()[1]
    lora_dropout: float = _lora_fields()[2]
    direction: Literal["ArBr", "A2rBr", "ArB2r", "random"] = field(default="ArB2r", metadata={
        "help": "which singular vectors of the gradient go to A and B"})
    scale: Literal["stable", "weight_svd", "gd_scale", "unit"] = field(default="stable", metadata={
        "help": "LoRA-GA's scaling of the initial factors"})
    stable_gamma: int = field(default=16, metadata={"help": "gamma of the stable scaling", "positive": "strict"})
    init_examples: int = _init_examples()

    def peft_options(self) -> dict[str, Any]:
        from peft.tuners.lora.config import LoraGAConfig as PeftLoraGA

        own = super().peft_options()
        ga = {k: own.pop(k) for k in ("direction", "scale", "stable_gamma")}
        return {**own, "lora_ga_config": PeftLoraGA(**ga)}


@dataclass
class AdaLoRAConfig(NamedPeftConfig):
    """AdaLoRA: PEFT AdaLoraConfig; total_step is the run's optimizer steps over every stage."""

    peft_type: ClassVar[str] = "ADALORA"
    method: ClassVar[str] = "adalora"
    init_r: int = field(default=12, metadata={"help": "each layer's rank before the budget shrinks",
                                              "positive": "strict"})
    target_r: int = field(default=8, metadata={"help": "the mean rank the budget ends at", "positive": "strict"})
    tinit: int = field(default=0, metadata={"help": "optimizer steps before the budget starts to shrink",
                                            "positive": "zero"})
    tfinal: int = field(default=0, metadata={"help": "optimizer steps at the final budget, at the run's end",
                                             "positive": "zero"})
    deltaT: int = field(default=1, metadata={"help": "steps between two budget allocations", "positive": "strict"})
    beta1: float = field(default=0.85, metadata={"help": "EMA of the sensitivity"})
    beta2: float = field(default=0.85, metadata={"help": "EMA of the uncertainty"})
    orth_reg_weight: float = field(default=0.5, metadata={"help": "weight of the orthogonal regulariser",
                                                          "positive": "zero"})
    lora_alpha: float = field(default=8, metadata={"help": "lora_alpha (AdaLoRA scales by lora_alpha / rank)",
                                                   "positive": "zero"})
    lora_dropout: float = field(default=0.0, metadata={"help": "lora_dropout", "positive": "zero"})

    def default_label(self) -> str:
        return f"adalora-r{self.target_r}"

    def validate(self, where: str) -> None:
        for key in ("beta1", "beta2"):
            if not 0 < getattr(self, key) < 1:
                raise BenchError(f"{where}.{key}: must be between 0 and 1 (an EMA's factor), got {getattr(self, key)!r}")
        if self.target_r > self.init_r:
            raise BenchError(f"{where}.target_r: {self.target_r} exceeds init_r ({self.init_r}): the budget only shrinks")
        super().validate(where)

    def build(self, targets, where, **extra):
        extra.setdefault("total_step", max(self.tinit + self.tfinal + 1, 1))  # the run's, set in before_stage
        return super().build(targets, where, **extra)


@dataclass
class OFTConfig(NamedPeftConfig):
    """OFT: PEFT OFTConfig (Linear layers only in PEFT: no GPT-2 Conv1D)."""

    peft_type: ClassVar[str] = "OFT"
    method: ClassVar[str] = "oft"
    no_conv1d: ClassVar[str] = "PEFT's OFT has layers for Linear and Conv2d, not GPT-2's Conv1D"
    oft_block_size: int = field(default=32, metadata={"help": "size of each orthogonal block (divides in_features)",
                                                      "positive": "strict"})
    coft: bool = field(default=False, metadata={"help": "constrained OFT"})
    eps: float = field(default=6e-5, metadata={"help": "COFT's control strength", "positive": "zero"})
    module_dropout: float = field(default=0.0, metadata={"help": "multiplicative dropout", "positive": "zero"})

    def default_label(self) -> str:
        return f"oft-b{self.oft_block_size}"

    def peft_options(self) -> dict[str, Any]:
        return {**super().peft_options(), "r": 0}  # the block size decides the number of blocks


@dataclass
class VeRAConfig(NamedPeftConfig):
    """VeRA: PEFT VeraConfig; the frozen random projections follow the run seed."""

    peft_type: ClassVar[str] = "VERA"
    method: ClassVar[str] = "vera"
    r: int = field(default=256, metadata={"help": "rank of the shared random projections", "positive": "strict"})
    d_initial: float = field(default=0.1, metadata={"help": "initial value of lambda_d"})
    vera_dropout: float = field(default=0.0, metadata={"help": "vera_dropout", "positive": "zero"})


def unwrap(model, modules: list[str]) -> None:
    """PEFT's layers at `modules` replaced by their base layers; the tuner's record dropped."""
    for name in modules:
        set_module(model, name, model.get_submodule(name).get_base_layer())
    if hasattr(model, "peft_config"):
        del model.peft_config


def inject(model, peft_config, names: list[str]):
    """PEFT's tuner of the config's type, in place; PEFT marks which of its tensors train (MiCA
    keeps B frozen). Returns the tuner."""
    from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING

    freeze(model)
    return PEFT_TYPE_TO_TUNER_MAPPING[peft_config.peft_type](model, peft_config, "default")


def init_batches(ctx, n: int) -> list[dict]:
    """`n` examples of the first stage's first task's training split (fewer if it has fewer),
    drawn with a generator seeded by the run seed, as batches of the stage's batch size on the
    model's device: input_ids, attention_mask."""
    import torch

    task = ctx.tasks[0]
    gen = torch.Generator().manual_seed(module_seed(ctx.seed, "peft-init:" + task.name))
    rows = torch.randperm(len(task.train), generator=gen)[:n].tolist()
    device = next(ctx.model.parameters()).device
    out = []
    for i in range(0, len(rows), ctx.batch_size):
        batch = ctx.collate(task, rows[i:i + ctx.batch_size])
        out.append({k: batch[k].to(device) for k in ("input_ids", "attention_mask")})
    return out


class NamedPeft(Adapter):
    """One named PEFT method (a subclass per name sets `name`, `config_cls`, `help`)."""

    claim: str = ""  # what the method's paper claims, for `methods` and the docs

    @property
    def stem(self) -> str:
        from peft.mapping import PEFT_TYPE_TO_PREFIX_MAPPING
        from peft.utils import PeftType

        return PEFT_TYPE_TO_PREFIX_MAPPING[PeftType[self.config_cls.peft_type]].split("_")[0] + "_"

    def check(self, model, targets, cfg, where):
        from transformers.pytorch_utils import Conv1D

        names = find_targets(model, targets, where)
        if cfg.no_conv1d and any(isinstance(model.get_submodule(n), Conv1D) for n in names):
            raise BenchError(f"{where}.method: {cfg.no_conv1d}; use a model with Linear projections "
                             "(SmolLM2, Gemma, Llama)")
        if cfg.peft_type == "LORA":
            check_rank(model, targets, cfg.r, where, "r")
        if cfg.peft_type == "ADALORA":
            check_rank(model, targets, cfg.init_r, where, "init_r")
        if cfg.peft_type == "OFT":
            bad = next((n for n in names if model.get_submodule(n).weight.shape[1] % cfg.oft_block_size), None)
            if bad is not None:
                raise BenchError(f"{where}.oft_block_size: {cfg.oft_block_size} does not divide the "
                                 f"{model.get_submodule(bad).weight.shape[1]} inputs of {bad}")

    def attach(self, model, targets, cfg, seed, where):
        names = find_targets(model, targets, where)
        extra: dict[str, Any] = {}
        if uses_conv1d(model, names):
            extra["fan_in_fan_out"] = True  # GPT-2 Conv1D stores weights (in, out)
        if cfg.peft_type == "VERA":
            extra["projection_prng_key"] = seed  # the fixed projections follow the run seed
        if cfg.data_driven:  # plain LoRA (B = 0) until the first stage initialises it from data
            extra["init_lora_weights"] = True
            extra.update({k: None for k in ("corda_config", "eva_config", "lora_ga_config")})
        tuner = inject(model, cfg.build(names, where, **extra), names)
        if cfg.peft_type == "ADALORA":
            # PEFT's allocator and the config it reads, kept with the model (per run; never a module)
            model.__dict__["adalora"] = SimpleNamespace(
                peft_config=tuner.peft_config, trainable_adapter_name="default", rankallocator=tuner.rankallocator,
                model=model, step=0)
        return names

    def state_dict(self, model, modules, cfg):
        sd = model.state_dict()
        out = {k: v for k, v in sd.items() if self.stem in k}
        if cfg.moves_base:  # the residual W - B0 A0 only data can rebuild
            out.update({f"{m}.base_layer.weight": sd[f"{m}.base_layer.weight"] for m in modules})
        return out

    def structure_for(self, model, modules, cfg, position, where, tensors):
        import torch

        if cfg.method == "eva" and position >= 1:  # EVA's redistributed ranks, as PEFT loads them
            from peft.tuners.lora.eva import _load_eva_state_dict

            key = "{}.lora_A.default.weight"
            eva = {n: tensors[key.format(n)] for n in modules if key.format(n) in tensors}
            if any(eva[n].shape != model.get_submodule(n).lora_A["default"].weight.shape for n in eva):
                model.peft_config["default"].eva_config = cfg.build([], where).eva_config
                with torch.no_grad():
                    _load_eva_state_dict(model, eva, "default")
        if cfg.peft_type == "ADALORA" and position >= 1:
            # the budget's mask as it stood: the triplets the allocator zeroed (PEFT's rank_pattern)
            model.adalora.peft_config["default"].rank_pattern = {
                k: (v != 0).view(-1).tolist() for k, v in tensors.items() if ".lora_E." in k}

    # -- the hooks ---------------------------------------------------------------------------------
    def before_stage(self, ctx):
        cfg = ctx.method
        if cfg.peft_type == "ADALORA":
            self._budget(ctx)
        if cfg.data_driven and ctx.stage.position == 1:
            self._initialise(ctx)

    def step(self, ctx, loss, examples):
        if ctx.method.peft_type != "ADALORA" or not ctx.method.orth_reg_weight:
            return loss
        from peft.tuners.adalora.model import AdaLoraModel

        # PEFT's orthogonal regulariser as its forward adds it (peft/tuners/adalora/model.py,
        # `AdaLoraModel.forward`), on the loss the task's kind computed
        state, model = ctx.model.adalora, ctx.model
        outer = SimpleNamespace(
            model=SimpleNamespace(forward=lambda: SimpleNamespace(loss=loss.clone()), named_parameters=model.named_parameters),
            peft_config=state.peft_config, trainable_adapter_name="default")
        return AdaLoraModel.forward(outer).loss

    def after_step(self, ctx):
        if ctx.method.peft_type != "ADALORA":
            return
        from peft.tuners.adalora.model import AdaLoraModel

        state = ctx.model.adalora
        AdaLoraModel.update_and_allocate(state, state.step)
        state.step += 1

    def _budget(self, ctx) -> None:
        """AdaLoRA's schedule over the run: total_step its optimizer steps over every stage, the
        global step at this stage's start; the allocator's averages restart with each stage."""
        import math

        def stage_steps(examples: int, train) -> int:  # run.train.stage_steps (a layer below plugins)
            return train.epochs * math.ceil(examples / train.batch_size)

        state, cfg = ctx.model.adalora, ctx.method
        tasks = list(ctx.by_name.values())
        first = min(ctx.stage.tasks)
        total = sum(stage_steps(len(t.train), ctx.train) for t in tasks)
        if cfg.tinit >= total - cfg.tfinal:
            raise BenchError(f"{ctx.where}.tinit: tinit ({cfg.tinit}) + tfinal ({cfg.tfinal}) leave no budgeting "
                             f"phase in the run's {total} optimizer steps")
        state.peft_config["default"].total_step = total
        state.step = sum(stage_steps(len(t.train), ctx.train) for t in tasks[:first])
        state.rankallocator.reset_ipt()

    def _initialise(self, ctx) -> None:
        """PEFT's data-driven initialisation from the first stage's training examples."""
        import torch

        model, names, cfg, where = ctx.model, ctx.modules, ctx.method, ctx.where
        device = next(model.parameters()).device
        batches = init_batches(ctx, cfg.init_examples)
        extra = {"fan_in_fan_out": True} if uses_conv1d(model, names) else {}
        peft_config = cfg.build(names, where, **extra)
        was_training = model.training
        unwrap(model, names)
        model.eval()
        # PEFT's randomised SVDs (LoRA-GA's svd_lowrank) draw from the global RNG: seeded by the run
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(module_seed(ctx.seed, "peft-init"))
            self._run_init(model, names, cfg, peft_config, batches, ctx, where)
        model.to(device)
        model.train(was_training)

    @staticmethod
    def _run_init(model, names, cfg, peft_config, batches, ctx, where) -> None:
        import torch

        try:
            if cfg.method == "corda":
                from peft.tuners.lora.corda import preprocess_corda

                def run_model():  # CorDA's hook reads one sequence at a time (its (tokens, dim) input)
                    for b in batches:
                        for ids, mask in zip(b["input_ids"], b["attention_mask"]):
                            model(input_ids=ids[mask.bool()][None])

                preprocess_corda(model, peft_config, run_model=run_model)
                inject(model, peft_config, names)
            elif cfg.method == "lora-ga":
                from peft.tuners.lora.loraga import preprocess_loraga

                def train_step():  # the model's own next-token loss (a stage's heads do not exist yet)
                    for b in batches:
                        labels = b["input_ids"].masked_fill(b["attention_mask"] == 0, -100)
                        model(**b, labels=labels).loss.backward()

                preprocess_loraga(model, peft_config, train_step)
                inject(model, peft_config, names)
            else:  # eva
                from peft.tuners.lora.eva import _load_eva_state_dict, get_eva_state_dict

                eva = get_eva_state_dict(model, batches, peft_config, show_progress_bar=False)
                inject(model, peft_config, names)
                with torch.no_grad():
                    _load_eva_state_dict(model, eva, "default")
        except ValueError as exc:
            raise BenchError(f"{where}.init_examples: PEFT's {cfg.method} initialisation failed on "
                             f"{cfg.init_examples} examples of {ctx.tasks[0].name}: {str(exc).splitlines()[0]}") from None


def _named(name: str, config: type[NamedPeftConfig], help_: str) -> type[NamedPeft]:
    return type(f"Peft_{name.replace('-', '_')}", (NamedPeft,), {"name": name, "config_cls": config, "help": help_,
                                                               "__module__": __name__})


DoRA = _named("dora", DoRAConfig, "DoRA through PEFT (use_dora): LoRA's direction plus a learned magnitude per column")
RsLoRA = _named("rslora", RsLoRAConfig, "rsLoRA through PEFT (use_rslora): the update scaled by lora_alpha / sqrt(r)")
PiSSA = _named("pissa", PiSSAConfig, "PiSSA through PEFT: A, B from W's top singular directions, W keeps the rest")
OLoRA = _named("olora", OLoRAConfig, "OLoRA through PEFT (init 'olora'): A, B from W's QR, W keeps the rest "
               "(not O-LoRA, the continual method)")
MiCA = _named("mica", MiCAConfig, "MiCA through PEFT: B from W's minor left singular vectors (frozen), A = 0 trains")
CorDA = _named("corda", CorDAConfig, "CorDA through PEFT, knowledge-preserving mode (kpm): the adapter from the "
               "directions the first task's inputs use least; W keeps the rest")
EVA = _named("eva", EVAConfig, "EVA through PEFT: A from the SVD of each layer's inputs on the first task, B = 0")
LoRAGA = _named("lora-ga", LoRAGAConfig, "LoRA-GA through PEFT: A, B from the SVD of the first task's gradient; "
                "W keeps W - B A")
AdaLoRA = _named("adalora", AdaLoRAConfig, "AdaLoRA through PEFT: SVD-form LoRA whose rank budget shrinks from "
                 "init_r to target_r by importance, over the run's optimizer steps")
OFT = _named("oft", OFTConfig, "OFT through PEFT: an orthogonal block-diagonal rotation of W's inputs (Linear only)")
VeRA = _named("vera", VeRAConfig, "VeRA through PEFT: shared frozen random projections, per-layer scaling vectors")

NAMED = {cls.name: cls for cls in (DoRA, RsLoRA, PiSSA, OLoRA, MiCA, CorDA, EVA, LoRAGA, AdaLoRA, OFT, VeRA)}
