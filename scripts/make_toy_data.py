"""Write the small synthetic CSV tasks and corpus used by configs/tiny.yaml and the smoke tests.

They are toys (generated text, rule-based labels) for checking the machinery quickly, not
for conclusions. Deterministic: re-running rewrites identical files.
"""

from __future__ import annotations

import csv
import random
import sys
from pathlib import Path

FILLER = "the a this that some every one two red blue small big old new city river house road tree".split()
POS = "good great fine happy bright lovely".split()
NEG = "bad awful poor sad dark ugly".split()


def pairs(rng: random.Random, n: int) -> list[dict]:
    rows = []
    for _ in range(n):
        words = rng.sample(FILLER, 6)
        if rng.random() < 0.5:
            other = words[:]
            rng.shuffle(other)
            rows.append({"sentence1": " ".join(words), "sentence2": " ".join(other), "label": 1})
        else:
            rows.append({"sentence1": " ".join(words), "sentence2": " ".join(rng.sample(FILLER, 6)), "label": 0})
    return rows


def polarity(rng: random.Random, n: int) -> list[dict]:
    rows = []
    for _ in range(n):
        label = rng.randrange(2)
        words = rng.sample(FILLER, 5) + rng.sample(POS if label else NEG, 2)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": label})
    return rows


def rewrite(rng: random.Random, n: int) -> list[dict]:
    """A target task for prompted (generative) configs: the words of `text` in reverse order."""
    rows = []
    for _ in range(n):
        words = rng.sample(FILLER, 4)
        rows.append({"text": " ".join(words), "reversed": " ".join(reversed(words))})
    return rows


def write(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def main(out: Path, n_train: int = 200, n_eval: int = 100) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    write(out / "pairs_train.csv", pairs(rng, n_train))
    write(out / "pairs_dev.csv", pairs(rng, n_eval))
    write(out / "polarity_train.csv", polarity(rng, n_train))
    write(out / "polarity_dev.csv", polarity(rng, n_eval))
    text = "\n".join(" ".join(rng.choices(FILLER + POS + NEG, k=12)) + "." for _ in range(400))
    (out / "corpus.txt").write_text(text + "\n")
    rng = random.Random(1)  # its own generator: the files above stay as they were
    write(out / "rewrite_train.csv", rewrite(rng, n_train))
    write(out / "rewrite_dev.csv", rewrite(rng, n_eval))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "configs" / "data")
