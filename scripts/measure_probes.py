"""The base model's scores on the offline general-ability probes, for their cards (docs/general/).

    python scripts/measure_probes.py [--model smollm2-135m] [--limit 200]

Prints each probe's metrics (lm-evaluation-harness, zero-shot, the first `limit` items) and the
seconds the evaluation took.
"""

from __future__ import annotations

import argparse
import time

from curlora_bench.config.experiment import GeneralConfig
from curlora_bench.run.general import check_general, evaluate_general
from curlora_bench.sources.general import PROBES
from curlora_bench.sources.models import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    general = GeneralConfig(tasks=list(PROBES), limit=args.limit, batch_size=args.batch_size)
    specs = check_general(general)
    lm = load_model(args.model)
    start = time.perf_counter()
    for s in evaluate_general(lm.model, lm.tokenizer, general, specs):
        print(f"{s.task} {s.metric} {s.value:.4f} (n={s.n})")
    print(f"seconds {time.perf_counter() - start:.1f}")


if __name__ == "__main__":
    main()
