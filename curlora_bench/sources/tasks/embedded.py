"""Builders of the embedded tasks and corpora from the cached asset files.

Splits are deterministic and documented: a row goes to eval when the first 8 hex digits of
sha1(row id) mod 100 < 20 (about 20%); `bible-paraphrase` and `bible-rewrite` split by book
instead (books whose number is a multiple of 5 are eval), so no verse's neighbours leak across
splits. The prompted forms of the embedded tasks (`*-prompt.yaml`) read the same builders.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
import re
from pathlib import Path

from datasets import Dataset

from .. import assets
from ..text import sentences
from . import EMBEDDED_TASKS
from .baselines import naive_bayes_accuracy


def is_eval(key: str, percent: int = 20) -> bool:
    return int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) % 100 < percent


def read_ground_truth(path: Path) -> list[tuple[str, float, str]]:
    """VADER *_GroundTruth.txt: id <TAB> mean rating <TAB> text (no quoting; ids as strings)."""
    rows = []
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        for rec in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            if len(rec) >= 3 and rec[0].strip():
                rows.append((rec[0].strip(), float(rec[1]), "\t".join(rec[2:]).strip()))
    return rows


def _split(rows: list[tuple[str, str, int]], text_col: str = "text", percent: int = 20) -> dict[str, Dataset]:
    out = {}
    for name, want in (("train", False), ("eval", True)):
        sel = [r for r in rows if is_eval(r[0], percent) == want]
        out[name] = Dataset.from_dict({"id": [r[0] for r in sel], text_col: [r[1] for r in sel],
                                       "label": [r[2] for r in sel]})
    return out


def _rated(file: str, classes: int, folder: Path, percent: int = 20) -> dict[str, Dataset]:
    rows = read_ground_truth(folder / file)
    out = []
    for rid, rating, text in rows:
        if classes == 2:
            if abs(rating) < 0.5:  # too close to neutral to call
                continue
            label = int(rating > 0)
        else:
            label = 0 if rating <= -0.5 else (2 if rating >= 0.5 else 1)
        out.append((rid, text, label))
    return _split(out, percent=percent)


def rt_sentiment(folder: Path) -> dict[str, Dataset]:
    return _rated("movieReviewSnippets_GroundTruth.txt", 2, folder)


def tweet_sentiment(folder: Path) -> dict[str, Dataset]:
    return _rated("tweets_GroundTruth.txt", 2, folder)


def tweet_sentiment_1k(folder: Path) -> dict[str, Dataset]:
    """`tweet-sentiment` with an eval split of over 1,000 tweets (sha1(id) mod 100 < 35, a superset of
    `tweet-sentiment`'s eval rows), for designs that need eval-example noise small; its own name, so
    runs of `tweet-sentiment` keep their data."""
    return _rated("tweets_GroundTruth.txt", 2, folder, percent=35)


def tweet_sentiment_3(folder: Path) -> dict[str, Dataset]:
    return _rated("tweets_GroundTruth.txt", 3, folder)


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def jaccard(a: str, b: str) -> float:
    wa, wb = words(a), words(b)
    return len(wa & wb) / max(len(wa | wb), 1)


def bible_paraphrase(folder: Path) -> dict[str, Dataset]:
    """KJV verse + the same verse in WEB (label 1) or the WEB verse among the 5 on either side
    in the same book with the highest word overlap (label 0, a hard negative); 50/50 by a
    seeded coin per verse."""
    kjv = json.loads((folder / "kjv.json").read_text())
    web = json.loads((folder / "web.json").read_text())
    ids = sorted((k for k in kjv if k in web and kjv[k] and web[k]), key=int)
    clean = {k: re.sub(r"[\[\]]", "", kjv[k]) for k in ids}  # KJV brackets mark italics
    rng = random.Random(0)
    rows = {"train": [], "eval": []}
    for pos, vid in enumerate(ids):
        book = int(vid) // 1_000_000
        if rng.random() < 0.5:
            other, label = web[vid], 1
        else:
            near = [ids[q] for q in range(max(0, pos - 5), min(len(ids), pos + 6))
                    if q != pos and int(ids[q]) // 1_000_000 == book]
            if not near:
                continue
            best = max(near, key=lambda c: jaccard(clean[vid], web[c]))
            other, label = web[best], 0
        rows["eval" if book % 5 == 0 else "train"].append((vid, clean[vid], other, label))
    return {
        split: Dataset.from_dict({"id": [r[0] for r in rs], "sentence1": [r[1] for r in rs],
                                  "sentence2": [r[2] for r in rs], "label": [r[3] for r in rs]})
        for split, rs in rows.items()
    }


# verses kept for the rewriting task: short enough for a CPU run (prompt, verse and answer in ~100 tokens)
REWRITE_MAX_CHARS = 120


def bible_rewrite(folder: Path) -> dict[str, Dataset]:
    """A generation task: each KJV verse (italics brackets dropped) with the same verse in the WEB
    (its backtick apostrophes made plain), whitespace collapsed, both at most `REWRITE_MAX_CHARS`
    characters; verses the translations word identically are left out (nothing to rewrite)."""
    kjv = json.loads((folder / "kjv.json").read_text())
    web = json.loads((folder / "web.json").read_text())
    rows = {"train": [], "eval": []}
    for vid in sorted((k for k in kjv if k in web and kjv[k] and web[k]), key=int):
        old = " ".join(re.sub(r"[\[\]]", "", kjv[vid]).split())
        new = " ".join(web[vid].replace("`", "'").split())  # the WEB's poetry keeps runs of spaces
        if len(old) > REWRITE_MAX_CHARS or len(new) > REWRITE_MAX_CHARS or old == new:
            continue
        rows["eval" if (int(vid) // 1_000_000) % 5 == 0 else "train"].append((vid, old, new))
    return {split: Dataset.from_dict({"id": [r[0] for r in rs], "kjv": [r[1] for r in rs], "web": [r[2] for r in rs]})
            for split, rs in rows.items()}


def copy_baseline(ds: Dataset) -> tuple[float, float]:
    """ROUGE-L and exact match on `ds` of answering each KJV verse with itself (the copy-the-input
    baseline of `bible-rewrite`)."""
    from ...core.metrics import exact_match, rouge_l

    scores = rouge_l(ds["kjv"], ds["web"])
    return sum(scores) / len(scores), sum(map(exact_match, ds["kjv"], ds["web"])) / len(ds)


def overlap_baseline(splits: dict[str, Dataset]) -> tuple[float, float]:
    """Accuracy on eval of `label = jaccard(s1, s2) >= t`, t chosen on train: (t, accuracy)."""
    def scores(ds):
        return [jaccard(a, b) for a, b in zip(ds["sentence1"], ds["sentence2"])], list(ds["label"])

    s, y = scores(splits["train"])
    best_t, best_acc = 0.0, -1.0
    for t in sorted(set(round(v, 2) for v in s)):
        acc = sum((v >= t) == bool(lab) for v, lab in zip(s, y)) / len(y)
        if acc > best_acc:
            best_t, best_acc = t, acc
    se, ye = scores(splits["eval"])
    return best_t, sum((v >= best_t) == bool(lab) for v, lab in zip(se, ye)) / len(ye)


def nyt_editorials(folder: Path) -> str:
    rows = read_ground_truth(folder / "nytEditorialSnippets_GroundTruth.txt")
    return "\n".join(text for _, _, text in rows)


def detag_brown(raw: str) -> str:
    """'The/at jury/nn said/vbd ./.' -> 'The jury said.'"""
    paragraphs = []
    for para in re.split(r"\n\s*\n", raw):
        toks = [t.rsplit("/", 1)[0] for t in para.split()]
        if not toks:
            continue
        text = " ".join(toks).replace("``", '"').replace("''", '"')
        text = re.sub(r" ([.,;:!?)])", r"\1", text)
        text = re.sub(r"([(]) ", r"\1", text)
        paragraphs.append(text)
    return "\n".join(paragraphs)


def brown(folder: Path) -> str:
    """Every 10th Brown text in file order (50 texts across all 15 genres, ~100k words)."""
    return "\n\n".join(detag_brown(p.read_text(encoding="utf-8", errors="replace")) for p in brown_files(folder)[::10])


def amazon_sentiment(folder: Path) -> dict[str, Dataset]:
    """Amazon product-review sentences in three classes (negative / neutral / positive, as
    `tweet-sentiment-3`), split by review (the id's part before `_`) so that no review's sentences
    sit on both sides."""
    rows = []
    for rid, rating, text in read_ground_truth(folder / "amazonReviewSnippets_GroundTruth.txt"):
        rows.append((rid, text, 0 if rating <= -0.5 else (2 if rating >= 0.5 else 1)))
    out = {}
    for name, want in (("train", False), ("eval", True)):
        sel = [r for r in rows if is_eval(r[0].split("_")[0]) == want]
        out[name] = Dataset.from_dict({"id": [r[0] for r in sel], "text": [r[1] for r in sel],
                                       "label": [r[2] for r in sel]})
    return out


def brown_files(folder: Path) -> list[Path]:
    """The Brown texts in file order (ca01 ... cr09)."""
    return sorted(p for p in folder.iterdir() if p.name[:2].isalpha() and p.name[2:].isdigit())


# the Brown genres by the files' second letter (ca..cr), in the corpus manual's order
BROWN_GENRES = {"a": "press reportage", "b": "press editorial", "c": "press reviews", "d": "religion",
                "e": "skills and hobbies", "f": "popular lore", "g": "belles-lettres", "h": "government",
                "j": "learned", "k": "general fiction", "l": "mystery", "m": "science fiction",
                "n": "adventure", "p": "romance", "r": "humor"}
# positions (mod 10) of the Brown files read for drift: the `brown` corpus (0) and the
# `brown_next_sentence` probe (5); a task reads the other eight in ten
BROWN_DRIFT_POSITIONS = (0, 5)
BROWN_PASSAGES_PER_FILE = 10


def brown_genre(folder: Path) -> dict[str, Dataset]:
    """Passages (consecutive sentences, 40-100 words) labelled with their text's genre (15), from
    the Brown texts the drift corpus and probe leave out; split by text: in each genre every
    fifth of its task texts is eval. At most `BROWN_PASSAGES_PER_FILE` passages per text,
    evenly spaced."""
    genres = list(BROWN_GENRES)
    files = [p for i, p in enumerate(brown_files(folder)) if i % 10 not in BROWN_DRIFT_POSITIONS]
    seen: dict[str, int] = {}
    rows: dict[str, list] = {"train": [], "eval": []}
    for p in files:
        genre = p.name[1]
        k = seen[genre] = seen.get(genre, -1) + 1
        passages, cur = [], []
        for para in detag_brown(p.read_text(encoding="utf-8", errors="replace")).split("\n"):
            for s in sentences(para):
                cur.append(s)
                if len(" ".join(cur).split()) >= 40:
                    if len(" ".join(cur).split()) <= 100:
                        passages.append(" ".join(cur))
                    cur = []
        step = max(1, len(passages) / BROWN_PASSAGES_PER_FILE)
        picked = [passages[int(j * step)] for j in range(min(BROWN_PASSAGES_PER_FILE, len(passages)))]
        split = "eval" if k % 5 == 4 else "train"
        rows[split] += [(f"{p.name}-{j}", text, genres.index(genre)) for j, text in enumerate(picked)]
    return {split: Dataset.from_dict({"id": [r[0] for r in rs], "text": [r[1] for r in rs],
                                      "label": [r[2] for r in rs]}) for split, rs in rows.items()}


# the books of the Protestant canon (1..66) by genre
BIBLE_GENRES = {"law": range(1, 6), "history": [*range(6, 18), 44], "wisdom and poetry": range(18, 23),
                "prophets": [*range(23, 40), 66], "gospels": range(40, 44), "epistles": range(45, 66)}
BIBLE_PASSAGES_PER_BOOK = 80


def bible_genre(folder: Path) -> dict[str, Dataset]:
    """Passages of up to three consecutive verses of one chapter (WEB text, at least 15 words)
    labelled with their book's genre (6); split by book as `bible-paraphrase` (books whose number
    is a multiple of 5 are eval), so the two tasks never train on each other's eval verses. At
    most `BIBLE_PASSAGES_PER_BOOK` passages per book, evenly spaced."""
    web = json.loads((folder / "web.json").read_text())
    genre_of = {b: g for g, (_, books) in enumerate(BIBLE_GENRES.items()) for b in books}
    by_book: dict[int, list] = {}
    chunk: list[str] = []
    for vid in sorted((k for k in web if web[k]), key=int):
        if chunk and int(vid) // 1000 != int(chunk[0]) // 1000 or len(chunk) == 3:
            by_book.setdefault(int(chunk[0]) // 1_000_000, []).append(chunk)
            chunk = []
        chunk.append(vid)
    by_book.setdefault(int(chunk[0]) // 1_000_000, []).append(chunk)
    rows: dict[str, list] = {"train": [], "eval": []}
    for book, chunks in sorted(by_book.items()):
        texts = [(c[0], " ".join(" ".join(web[v].replace("`", "'").split()) for v in c)) for c in chunks]
        texts = [t for t in texts if len(t[1].split()) >= 15]
        step = max(1, len(texts) / BIBLE_PASSAGES_PER_BOOK)
        picked = [texts[int(j * step)] for j in range(min(BIBLE_PASSAGES_PER_BOOK, len(texts)))]
        rows["eval" if book % 5 == 0 else "train"] += [(vid, t, genre_of[book]) for vid, t in picked]
    return {split: Dataset.from_dict({"id": [r[0] for r in rs], "text": [r[1] for r in rs],
                                      "label": [r[2] for r in rs]}) for split, rs in rows.items()}


# the builders whose cards give the bag-of-words baseline (single-text classification tasks)
NAIVE_BAYES = ("amazon-sentiment", "brown-genre", "bible-genre")


def card_stats(task) -> list[str]:
    """Lines for `curlora-bench tasks`: sizes, class balance, majority baseline (built data)."""
    from collections import Counter

    splits = EMBEDDED_TASKS.get(task.builder)(assets.ensure(task.asset))
    lines = []
    for name, ds in splits.items():
        n = len(ds)
        if task.target is not None:  # a generation task: no classes
            lines.append(f"{name}: {n:,} rows")
            continue
        counts = Counter(ds["label"])
        balance = ", ".join(f"{k}: {v / n:.1%}" for k, v in sorted(counts.items()))
        lines.append(f"{name}: {n:,} rows ({balance}); majority baseline {max(counts.values()) / n:.3f}")
    if task.builder == "bible-rewrite":
        rouge, exact = copy_baseline(splits["eval"])
        lines.append(f"copy-the-input baseline (the KJV verse as its own rewrite): ROUGE-L {rouge:.3f}, "
                     f"exact match {exact:.3f} on eval")
    if task.builder in NAIVE_BAYES and task.prompt is None:
        acc = naive_bayes_accuracy(splits["train"]["text"], splits["train"]["label"], splits["eval"]["text"],
                                   splits["eval"]["label"])
        lines.append(f"bag-of-words naive Bayes baseline (fitted on train): {acc:.3f} on eval")
    if task.builder == "bible-paraphrase" and task.prompt is None:
        t, acc = overlap_baseline(splits)
        lines.append(f"word-overlap baseline (Jaccard >= {t:.2f}, tuned on train): {acc:.3f} on eval")
    return lines
