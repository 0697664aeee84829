"""The power of the tests the report runs, and what a design needs to detect an effect.

The report's p is the exact two-sided sign-flip test of per-seed differences (`points.SeedTest`),
Holm-adjusted over its table. A difference's noise has two parts:

- the **seed** part: the spread of one seed's difference (sd); n seeds divide its variance by n;
- the **eval-example** part: every seed is scored on the same eval examples, so the noise of
  which examples were drawn is shared by all seeds and does not shrink with n. The exact test
  conditions on those examples (it asks whether the methods differ *on them*); a claim about the
  task needs the examples' noise too. Its standard error comes from resampling the eval examples
  with the seeds as they ran (`resampling.resample`); with N instead of the N0 examples it had,
  its variance scales by N0 / N.

The minimum detectable effect (MDE) at power 0.8 is that of the exact test at level alpha / m
(Holm's first step over a table of m tests: a bound that holds whatever the other rows do), from
`stats.exact_mde`: none where n is too small for the test to reach that level at all (n = 5 at
0.05; n = 7 at 0.05 / 4). Including the eval part, the MDE is sqrt(MDE_seed^2 + ((z(1 - a/2) +
z(power)) · eval SE)^2), a normal approximation for that part.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from . import stats

EVAL_SIZES = (1000, 2000, 5000)  # eval examples per task `plan` considers beside the current


def z_sum(alpha: float, power: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(1 - alpha / 2) + norm.ppf(power))


@dataclass
class Design:
    """What detecting `effect` takes for one comparison of a table of `family` tests."""

    effect: float  # on the analysis scale (log ratio for drift)
    alpha: float  # per-test level: 0.05 / family
    n: int  # seeds it had
    sd: float  # of one seed's difference
    eval_se: float | None  # standard error from the eval examples alone (None: not resampled)
    examples: int | None  # eval examples per task it had
    mde_seeds: float  # the exact test's MDE at n on these eval examples (inf: none at this n)
    seeds_here: int | None  # seeds the exact test needs on these eval examples (None: over 1000)
    with_examples: dict[int, int | None]  # eval examples per task -> seeds needed with eval noise (None: unreachable)

    @property
    def eval_floor(self) -> float:
        """The MDE no number of seeds can go below: the eval-example part alone."""
        return z_sum(self.alpha, 0.8) * (self.eval_se or 0.0)


def mde_total(sd: float, n: int, eval_se: float | None, alpha: float, power: float = 0.8,
              scale: float = 1.0) -> float:
    """The MDE with the eval-example part (its variance times `scale` = N0 / N)."""
    seed = stats.exact_mde(sd, n, alpha, power)
    if not eval_se or math.isinf(seed):
        return seed
    return math.sqrt(seed**2 + (z_sum(alpha, power) * eval_se) ** 2 * scale)


def seeds_with_examples(sd: float, effect: float, eval_se: float | None, alpha: float, scale: float,
                        power: float = 0.8, limit: int = 1000) -> int | None:
    """The fewest seeds whose MDE, eval part included (scaled by N0 / N), is at most `effect`."""
    if effect <= 0:
        return None
    if eval_se and z_sum(alpha, power) * eval_se * math.sqrt(scale) >= effect:
        return None  # the eval examples alone hide it, whatever the seeds
    for n in range(max(2, stats.fewest_for(alpha)), limit + 1):
        if mde_total(sd, n, eval_se, alpha, power, scale) <= effect:
            return n
    return None


def design(test, effect: float, family: int, eval_se: float | None = None, examples: int | None = None,
           alpha: float = 0.05, power: float = 0.8) -> Design | None:
    """What detecting `effect` (analysis scale, > 0) takes for a comparison with per-seed test `test`
    (a `SeedTest`) in a table of `family` tests; None without a spread (fewer than 2 seeds)."""
    if test is None or test.sd is None:
        return None
    level = alpha / max(1, family)
    effect = abs(effect)
    sizes = sorted({*(s for s in EVAL_SIZES), *([examples] if examples else [])})
    with_examples = {}
    if eval_se is not None and examples:
        with_examples = {size: seeds_with_examples(test.sd, effect, eval_se, level, examples / size, power)
                         for size in sizes}
    return Design(effect, level, test.n, test.sd, eval_se, examples, stats.exact_mde(test.sd, test.n, level, power),
                  stats.seeds_for(test.sd, effect, level, power), with_examples)
