"""The offline general-ability probes: lm-evaluation-harness task YAMLs shipped here, over data
built deterministically (seeded) from the embedded assets into `<cache>/general/`.

They are constructed probes in the style of HellaSwag and LAMBADA, not those benchmarks (their
cards, docs/general/, say how each is built, its chance level and the base model's score):

- `brown_next_sentence`: two sentences of a Brown-corpus text, then its real next sentence among
  three sentences of other texts of similar length (4 choices, chance 0.25). The texts are the
  Brown files the `brown` perplexity corpus leaves out (it reads every 10th file from the first).
- `nyt_cloze`: an NYT editorial sentence without its last word, then that word among three words
  that end other sentences (4 choices, chance 0.25).

These two hold 500 items each, drawn with replacement (the Brown one repeats items) and, for the
cloze, from editorials the `nyt-editorials` perplexity corpus reads; they stay exactly as published
runs measured them. Their `_1k` versions are built alike but to be a measure: 1,000 distinct items
each, drawn without replacement, from text no task trains on and no shipped perplexity setting
reads (`brown_next_sentence_1k`: the same Brown texts as `brown_next_sentence`, every position at
most once; `nyt_cloze_1k`: editorials from row `NYT_PROBE_FIRST_ROW` on, beyond the 32,768 tokens
the corpus would need to reach them; the published runs read 2,048 to 8,192).

`probe_yaml(name)` builds a probe's data (once; its fingerprint is in the file name) and a task
YAML beside it that `lm_eval --include_path <cache>/general` reads as well.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from filelock import FileLock

from ...core.errors import BenchError
from .. import assets
from ..text import sentences

PROBE_ITEMS = 500  # items built per first-version probe (a run scores `general.limit` of them)
PROBE_ITEMS_1K = 1000  # items built per `_1k` probe, all distinct
PROBE_SEED = 0
CHOICES = 4
# the first NYT editorial (file order) the `nyt_cloze_1k` probe may use: the `nyt-editorials` corpus
# is read from the start and its first 32,768 tokens end near row 1,380 (SmolLM2's tokenizer) or
# 1,413 (Gemma 3's); the default `max_tokens` (20,000) and the published runs' (<= 8,192) stop far earlier
NYT_PROBE_FIRST_ROW = 1500

def brown_documents(folder: Path) -> list[list[str]]:
    """The sentences of every Brown text the `brown` corpus leaves out (files 5, 15, 25, ...)."""
    from ..tasks.embedded import detag_brown

    files = sorted(p for p in folder.iterdir() if p.name[:2].isalpha() and p.name[2:].isdigit())
    docs = []
    for p in files[5::10]:
        text = detag_brown(p.read_text(encoding="utf-8", errors="replace"))
        docs.append([s for para in text.split("\n") for s in sentences(para) if 6 <= len(s.split()) <= 40])
    return [d for d in docs if len(d) >= 3]


def _similar(pool: list[str], length: int, rng: random.Random, k: int) -> list[str]:
    """k sentences of the pool whose word count is within a third of `length` (any, failing that)."""
    near = [s for s in pool if abs(len(s.split()) - length) <= max(2, length // 3)]
    return rng.sample(near if len(near) >= k else pool, k)


def build_brown_next_sentence(folder: Path) -> list[dict]:
    rng = random.Random(PROBE_SEED)
    docs = brown_documents(folder)
    items = []
    while len(items) < PROBE_ITEMS:
        d = rng.randrange(len(docs))
        i = rng.randrange(2, len(docs[d]))
        true = docs[d][i]
        others = [s for k, doc in enumerate(docs) if k != d for s in doc[:: 7]]
        endings = _similar(others, len(true.split()), rng, CHOICES - 1)
        label = rng.randrange(CHOICES)
        endings.insert(label, true)
        items.append({"id": f"brown-{d}-{i}", "context": " ".join(docs[d][i - 2: i]), "endings": endings,
                      "label": label})
    return items


def build_nyt_cloze(folder: Path) -> list[dict]:
    from ..tasks.embedded import read_ground_truth

    rng = random.Random(PROBE_SEED)
    rows = []
    for rid, _, text in read_ground_truth(folder / "nytEditorialSnippets_GroundTruth.txt"):
        m = re.fullmatch(r"(.{20,}?)\s+([A-Za-z]{4,})[.!?]?[\"']?", text.strip())
        if m:
            rows.append((rid, m.group(1), m.group(2)))
    picked = rng.sample(range(len(rows)), PROBE_ITEMS)
    items = []
    for k in picked:
        rid, context, word = rows[k]
        choices: list[str] = []
        while len(choices) < CHOICES - 1:
            other = rows[rng.randrange(len(rows))][2]
            if other.lower() != word.lower() and other not in choices:
                choices.append(other)
        label = rng.randrange(CHOICES)
        choices.insert(label, word)
        items.append({"id": f"nyt-{rid}", "context": context, "choices": choices, "label": label})
    return items


def build_brown_next_sentence_1k(folder: Path, n: int = PROBE_ITEMS_1K) -> list[dict]:
    """`brown_next_sentence` with `n` distinct items: positions (text, sentence >= 2) of the probe's
    Brown texts drawn without replacement (seeded), the three other endings as there."""
    rng = random.Random(PROBE_SEED)
    docs = brown_documents(folder)
    positions = rng.sample([(d, i) for d, doc in enumerate(docs) for i in range(2, len(doc))], n)
    pools = [[s for k, doc in enumerate(docs) if k != d for s in doc[::7]] for d in range(len(docs))]
    items = []
    for d, i in positions:
        true = docs[d][i]
        endings = _similar(pools[d], len(true.split()), rng, CHOICES - 1)
        label = rng.randrange(CHOICES)
        endings.insert(label, true)
        items.append({"id": f"brown-{d}-{i}", "context": " ".join(docs[d][i - 2: i]), "endings": endings,
                      "label": label})
    return items


def nyt_cloze_rows(folder: Path) -> list[tuple[str, str, str]]:
    """(id, sentence without its last word, that word) of the editorials from `NYT_PROBE_FIRST_ROW`
    on whose last word has four letters or more, each sentence once."""
    from ..tasks.embedded import read_ground_truth

    rows, seen = [], set()
    for rid, _, text in read_ground_truth(folder / "nytEditorialSnippets_GroundTruth.txt")[NYT_PROBE_FIRST_ROW:]:
        m = re.fullmatch(r"(.{20,}?)\s+([A-Za-z]{4,})[.!?]?[\"']?", text.strip())
        if m and m.group(1) not in seen:
            seen.add(m.group(1))
            rows.append((rid, m.group(1), m.group(2)))
    return rows


def build_nyt_cloze_1k(folder: Path, n: int = PROBE_ITEMS_1K) -> list[dict]:
    """`nyt_cloze` with `n` distinct items, from the editorials of `nyt_cloze_rows` only (the
    other choices too): rows drawn without replacement (seeded)."""
    rng = random.Random(PROBE_SEED)
    rows = nyt_cloze_rows(folder)
    items = []
    for k in rng.sample(range(len(rows)), n):
        rid, context, word = rows[k]
        choices: list[str] = []
        while len(choices) < CHOICES - 1:
            other = rows[rng.randrange(len(rows))][2]
            if other.lower() != word.lower() and other.lower() not in {c.lower() for c in choices}:
                choices.append(other)
        label = rng.randrange(CHOICES)
        choices.insert(label, word)
        items.append({"id": f"nyt-{rid}", "context": context, "choices": choices, "label": label})
    return items


# probe -> (the asset it is built from, its builder)
PROBES: dict[str, tuple[str, Callable[[Path], list[dict]]]] = {
    "brown_next_sentence": ("brown", build_brown_next_sentence),
    "nyt_cloze": ("vader", build_nyt_cloze),
    "brown_next_sentence_1k": ("brown", build_brown_next_sentence_1k),
    "nyt_cloze_1k": ("vader", build_nyt_cloze_1k),
}
# items per probe where not `PROBE_ITEMS`
PROBE_SIZES = {"brown_next_sentence_1k": PROBE_ITEMS_1K, "nyt_cloze_1k": PROBE_ITEMS_1K}


def probe_intact(data: Path, digest: Path, items: int = PROBE_ITEMS) -> bool:
    """A built probe's data as it was written: its recorded sha256, or (built before digests were
    kept) `items` whole JSON lines."""
    if digest.is_file():
        return digest.read_text(encoding="utf-8").strip() == assets.sha256(data)
    try:
        lines = data.read_text(encoding="utf-8").splitlines()
        return len(lines) == items and all(isinstance(json.loads(line), dict) for line in lines)
    except (OSError, UnicodeDecodeError, ValueError):
        return False


def probe_yaml(name: str, cache_dir: str | None = None) -> Path:
    """The task YAML of probe `name` in `<cache>/general/`, its data built first if missing."""
    if name not in PROBES:
        raise BenchError(f"{name!r} is not a probe (known: {', '.join(PROBES)})")
    asset, build = PROBES[name]
    out = assets.cache_root(cache_dir) / "general"
    data, yaml_path = out / f"{name}.jsonl", out / f"{name}.yaml"
    digest = data.with_name(data.name + ".sha256")
    template = resources.files(__name__).joinpath(f"{name}.yaml").read_text(encoding="utf-8")
    text = template.replace("__DATA__", json.dumps(str(data)))
    out.mkdir(parents=True, exist_ok=True)
    # processes preparing the probe at once (runs of a sweep, test workers) take turns: the first
    # builds it, the others find it built
    with FileLock(str(out / f"{name}.lock")):
        if not data.is_file() or not probe_intact(data, digest, PROBE_SIZES.get(name, PROBE_ITEMS)):  # a file cut short or changed is built again
            items = build(assets.ensure(asset, cache_dir))
            _write(data, "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items), digest)
            _write(digest, assets.sha256(data) + "\n")
        if not yaml_path.is_file() or yaml_path.read_text(encoding="utf-8") != text:
            _write(yaml_path, text)
    return yaml_path


def _write(path: Path, text: str, drop_first: Path | None = None) -> None:
    """`text` into `path` through a temporary file and a rename (a reader never sees half of it)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    if drop_first is not None:
        drop_first.unlink(missing_ok=True)  # the old digest goes before the data it vouched for
    tmp.replace(path)
