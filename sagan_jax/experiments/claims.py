"""The paper's claims over seeds: per-row means and spreads, per-claim paired tests, a verdict.

A *row* is one variant's results over seeds; a *claim* says row A beats row B on a metric (Tables
I–III, Fig. 5). For each claim and seed the paired difference is A − B on the same seed and data
(B − A for the fidelity errors, where lower is better). Each claim-metric pair is tested:

* the mean paired difference with its 95 % confidence interval (Student's t, n − 1 degrees of
  freedom);
* a two-sided paired t-test, and beside it the exact two-sided sign test (distribution-free: with
  5 seeds it cannot go below p = 0.0625, so it can never decide alone);
* Holm's correction of the t-tests' p-values over every claim-metric pair of the table (the
  family: what one ablation asserts at once).

Verdict: **holds at α = 0.05** when the Holm-adjusted p is below 0.05 and the mean difference is
positive; **reversed at α = 0.05** when it is below 0.05 and the mean is negative; otherwise **not
shown**. Fewer than `MIN_SEEDS` seeds is always "not shown". All functions are pure: they take
``{variant: {seed: result}}`` (``results.json`` contents).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats

from sagan_jax.experiments import results

MIN_SEEDS = 5
ALPHA = 0.05
RANK_COLUMNS = results.COLUMNS
FIDELITY_COLUMNS = results.FIDELITY_COLUMNS


@dataclasses.dataclass(frozen=True)
class Claim:
  text: str
  better: str  # the variant claimed better
  worse: str
  metrics: tuple[str, ...]  # rank columns (higher is better) or fidelity columns (lower is better)


CLAIMS = (
  Claim("SA-GAN [M=1] > Original", "sagan", "original", ("R-1", "mAP")),
  Claim("SA-GAN [M=1] > CycleGAN", "sagan", "cyclegan", ("R-1", "mAP")),
  Claim("SA-GAN [M=1] > CycleGAN*", "sagan", "cyclegan_star", ("R-1", "mAP")),
  Claim("SA-GAN [M=1] > SA-GAN (WS)", "sagan", "ws", ("R-1", "mAP")),
  Claim("SA-GAN [M=1] > SA-GAN (WS), critics without the mask", "sagan", "ws_nomask", ("R-1", "mAP")),
  Claim("SA-GAN [M=1] > SA-GAN (WP)", "sagan", "wp", ("R-1", "mAP")),
  Claim("SA-GAN [M=1] > SA-GAN (WD)", "sagan", "wd", ("R-1", "mAP")),
  Claim("SA-GAN (WD) viewpoint_error above SA-GAN [M=1]'s", "sagan", "wd", ("viewpoint_error",)),
  Claim("SA-GAN [M=10] > Original", "sagan_m10", "original", ("R-1", "mAP")),
  Claim("SA-GAN [M=10] > SA-GAN [M=1]", "sagan_m10", "sagan", ("R-1", "mAP")),
  # Ten codes give the IDE nine more views of each person: the codes earn credit only beyond random views.
  Claim("SA-GAN [M=10] > SA-GAN [M=1] with a view jitter", "sagan_m10", "sagan_view", ("R-1", "mAP")),
  Claim("viewpoint groups > one group", "sagan", "sagan_one_group", ("R-1", "mAP")),
)


def metric_values(result: Mapping) -> dict[str, float]:
  """R-1 … mAP averaged over the result's column groups (the target; both directions of a two-camera
  target, as the real-photo tables report them), and its held-out fidelity scores."""
  rows = list(results.table_rows(result).values())
  out = {k: float(np.mean([row[k] for row in rows])) for k in RANK_COLUMNS}
  out.update({k: float(v) for k, v in result.get("fidelity", {}).items() if k in FIDELITY_COLUMNS})
  return out


def lower_is_better(metric: str) -> bool:
  return metric in FIDELITY_COLUMNS


def summarize(table: Mapping[str, Mapping[int, Mapping]]) -> dict[str, dict[str, dict[str, float]]]:
  """``{variant: {metric: {"mean", "sd", "n"}}}``; sd is the sample standard deviation (0 for one seed)."""
  out = {}
  for variant, by_seed in table.items():
    values: dict[str, list[float]] = {}
    for seed in sorted(by_seed):
      for k, v in metric_values(by_seed[seed]).items():
        values.setdefault(k, []).append(v)
    out[variant] = {
      k: {"mean": float(np.mean(v)), "sd": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, "n": len(v)}
      for k, v in values.items()
    }
  return out


def paired_test(differences: Sequence[float]) -> dict[str, float]:
  """Mean, its 95 % t interval, the two-sided paired t-test's p and the exact two-sided sign test's p."""
  d = np.asarray(differences, np.float64)
  n = len(d)
  mean = float(np.mean(d)) if n else math.nan
  if n < 2:
    return {"mean": mean, "ci_low": math.nan, "ci_high": math.nan, "p_t": math.nan, "p_sign": math.nan}
  sd = float(np.std(d, ddof=1))
  half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
  if sd == 0:
    p_t = 0.0 if mean != 0 else 1.0
  else:
    p_t = float(2 * stats.t.sf(abs(mean) / (sd / math.sqrt(n)), n - 1))
  nonzero = d[d != 0]
  k = int(min(np.sum(nonzero > 0), np.sum(nonzero < 0)))
  p_sign = float(min(1.0, 2 * stats.binom.cdf(k, len(nonzero), 0.5))) if len(nonzero) else 1.0
  return {"mean": mean, "ci_low": mean - half, "ci_high": mean + half, "p_t": p_t, "p_sign": p_sign}


def holm(p_values: Sequence[float]) -> list[float]:
  """Holm's step-down adjustment: ``max_{j ≤ i} min(1, (m − j + 1)·p_(j))`` in ascending order of p."""
  p = np.asarray(p_values, np.float64)
  order = np.argsort(p, kind="stable")
  adjusted = np.empty_like(p)
  running = 0.0
  for rank, i in enumerate(order):
    running = max(running, min(1.0, (len(p) - rank) * p[i]))
    adjusted[i] = running
  return [float(a) for a in adjusted]


def verdict(mean: float, holm_p: float, n: int) -> str:
  """The rule of the module docstring."""
  if n < MIN_SEEDS or not np.isfinite(holm_p) or holm_p >= ALPHA:
    return "not shown"
  return f"holds at α = {ALPHA}" if mean > 0 else f"reversed at α = {ALPHA}"


def evaluate_claims(table: Mapping[str, Mapping[int, Mapping]], claims: Sequence[Claim] = CLAIMS) -> list[dict]:
  """Per claim and metric: the seeds both rows have, the paired differences, their test, the verdict.

  Claims whose rows were not run are left out; Holm's family is the claim-metric pairs returned.
  """
  out = []
  for claim in claims:
    if claim.better not in table or claim.worse not in table:
      continue
    seeds = sorted(set(table[claim.better]) & set(table[claim.worse]))
    for metric in claim.metrics:
      diffs = []
      for s in seeds:
        a, b = metric_values(table[claim.better][s]), metric_values(table[claim.worse][s])
        if metric not in a or metric not in b:
          break
        diffs.append(b[metric] - a[metric] if lower_is_better(metric) else a[metric] - b[metric])
      else:
        out.append({"claim": claim.text, "metric": metric, "seeds": seeds, "differences": diffs, **paired_test(diffs)})
  tested = [i for i, c in enumerate(out) if np.isfinite(c["p_t"])]
  adjusted = holm([out[i]["p_t"] for i in tested])
  for c in out:
    c["p_holm"] = math.nan
  for i, p in zip(tested, adjusted):
    out[i]["p_holm"] = p
  for c in out:
    c["agree"] = sum(d > 0 for d in c["differences"])
    c["verdict"] = verdict(c["mean"], c["p_holm"], len(c["differences"]))
  return out


# What `compare` pairs beyond the rank columns: the translation report's ratios, where both runs have one.
COMPARED_TRANSLATION = ("domain_gap", "identity_kept", "artifact_energy")


def comparison_values(result: Mapping) -> dict[str, float]:
  """R-1 and mAP averaged over the result's column groups (both directions of a two-camera target,
  as the real-photo tables report them), its held-out fidelity scores and its translation report."""
  rows = list(results.table_rows(result).values())
  out = {k: float(np.mean([row[k] for row in rows])) for k in ("R-1", "mAP")}
  out.update({k: float(v) for k, v in result.get("fidelity", {}).items() if k in FIDELITY_COLUMNS})
  out.update({k: float(v) for k, v in result.get("translation", {}).items() if k in COMPARED_TRANSLATION})
  return out


def compare(baseline: Sequence[Mapping], candidate: Sequence[Mapping]) -> list[dict]:
  """Candidate − baseline, pair by pair (same seed and data, one machine), for every metric both
  sides of every pair report: `paired_test`, Holm over those metrics, and the direction shown
  (`MIN_SEEDS` pairs or more, Holm-adjusted p below `ALPHA`) or "not shown"."""
  if len(baseline) != len(candidate) or not baseline:
    raise ValueError(f"compare needs pairs: {len(baseline)} baseline and {len(candidate)} candidate results")
  values = [(comparison_values(b), comparison_values(c)) for b, c in zip(baseline, candidate, strict=True)]
  metrics = [k for k in values[0][0] if all(k in b and k in c for b, c in values)]
  out = []
  for metric in metrics:
    differences = [c[metric] - b[metric] for b, c in values]
    out.append({"metric": metric, "baseline": [b[metric] for b, _ in values], "differences": differences})
    out[-1].update(paired_test(differences))
  for c, p in zip(out, holm([c["p_t"] if np.isfinite(c["p_t"]) else 1.0 for c in out]), strict=True):
    c["p_holm"] = p
    shown = len(c["differences"]) >= MIN_SEEDS and p < ALPHA
    c["verdict"] = ("higher" if c["mean"] > 0 else "lower") + f" at α = {ALPHA}" if shown else "not shown"
  return out


def compare_markdown(compared: Sequence[Mapping], baseline_names: Sequence[str], candidate_names: Sequence[str]) -> str:
  """`compare`'s rows as Markdown: each pair's baseline → candidate, the mean difference and its tests."""
  lines = [
    "| metric | "
    + " | ".join(f"{b} → {c}" for b, c in zip(baseline_names, candidate_names, strict=True))
    + " | mean difference [95 % CI] | sign p | t p | Holm p | candidate |",
    "|---|" + "---|" * (len(baseline_names) + 5),
  ]
  for c in compared:
    digits = 1 if c["metric"] in ("R-1", "mAP", "domain_gap") else 3
    pairs = [f"{b:.{digits}f} → {b + d:.{digits}f}" for b, d in zip(c["baseline"], c["differences"], strict=True)]
    interval = _interval(c, digits)
    lines.append(
      f"| {c['metric']} | " + " | ".join(pairs) + f" | {interval} | {_p(c['p_sign'])} | {_p(c['p_t'])} | "
      f"{_p(c['p_holm'])} | {c['verdict']} |"
    )
  return "\n".join(lines) + "\n"


def _cell(stats_: Mapping[str, float] | None, digits: int) -> str:
  if stats_ is None:
    return "–"
  if stats_["n"] == 1:
    return f"{stats_['mean']:.{digits}f}"
  return f"{stats_['mean']:.{digits}f} ± {stats_['sd']:.{digits}f}"


def _interval(c: Mapping, digits: int) -> str:
  """A paired difference's mean and its 95 % interval; one pair has none."""
  if not np.isfinite(c["ci_low"]):
    return f"{c['mean']:+.{digits}f} (one pair: no interval)"
  return f"{c['mean']:+.{digits}f} [{c['ci_low']:+.{digits}f}, {c['ci_high']:+.{digits}f}]"


def _p(p: float) -> str:
  return "–" if not np.isfinite(p) else (f"{p:.1e}" if p < 1e-3 else f"{p:.3f}")


def markdown(table: Mapping[str, Mapping[int, Mapping]], title: str, labels: Mapping[str, str]) -> str:
  """Rows (mean ± sd over seeds) and claims (paired differences, tests, verdicts), as Markdown."""
  summary = summarize(table)
  claims = evaluate_claims(table)
  seeds = sorted({s for by_seed in table.values() for s in by_seed})
  fidelity = [c for c in FIDELITY_COLUMNS if any(c in m for m in summary.values())]
  groups = list(results.table_rows(next(iter(next(iter(table.values())).values()))))
  group = groups[0] if len(groups) == 1 else "mean of " + " and ".join(groups)
  lines = [
    f"### {title}",
    "",
    f"Mean ± sd over seeds {', '.join(map(str, seeds))} ({group}; CMC and mAP in %; fidelity on held-out images).",
    "",
    "| Method | seeds | " + " | ".join(RANK_COLUMNS + tuple(fidelity)) + " |",
    "|" + "---|" * (2 + len(RANK_COLUMNS) + len(fidelity)),
  ]
  for variant, s in summary.items():
    cells = [_cell(s.get(c), 1) for c in RANK_COLUMNS] + [_cell(s.get(c), 3) for c in fidelity]
    lines.append(f"| {labels.get(variant, variant)} | {len(table[variant])} | " + " | ".join(cells) + " |")
  lines += [
    "",
    "| Claim | metric | paired differences (per seed) | mean [95 % CI] | seeds agreeing | sign p | t p | Holm p "
    "| verdict |",
    "|---|---|---|---|---|---|---|---|---|",
  ]
  for c in claims:
    digits = 3 if lower_is_better(c["metric"]) else 1
    diffs = ", ".join(f"{d:+.{digits}f}" for d in c["differences"])
    interval = _interval(c, digits)
    lines.append(
      f"| {c['claim']} | {c['metric']} | {diffs} | {interval} | {c['agree']}/{len(c['differences'])} | "
      f"{_p(c['p_sign'])} | {_p(c['p_t'])} | {_p(c['p_holm'])} | {c['verdict']} |"
    )
  lines += [
    "",
    "Paired difference: the claimed-better row minus the other on the same seed (for fidelity errors, "
    "the other minus the claimed-better). Tests: two-sided paired t (its 95 % interval beside the mean) "
    "and exact sign test; Holm's correction over the table's t-tests. Verdict: holds (or reversed) at "
    f"α = {ALPHA} when the Holm-adjusted p is below it, with {MIN_SEEDS} seeds or more; otherwise not shown.",
  ]
  return "\n".join(lines) + "\n"
