"""The paper's claims over seeds: per-row means and spreads, per-claim paired differences, a verdict.

A *row* is one variant's results over seeds; a *claim* says row A beats row B on a metric (Tables
I–III, Fig. 5). For each claim and seed the paired difference is A − B on the same seed and data
(B − A for metrics where lower is better), and the verdict follows one rule:

* **holds**: at least `MIN_SEEDS` seeds, and every paired difference is positive;
* **reversed**: at least `MIN_SEEDS` seeds, and every paired difference is negative;
* **not settled**: anything else (mixed signs, a zero, or too few seeds).

All functions are pure: they take ``{variant: {seed: result}}`` (``results.json`` contents).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np

from sagan_jax.experiments import results

MIN_SEEDS = 3
RANK_COLUMNS = results.COLUMNS
FIDELITY_COLUMNS = ("pixel_error", "viewpoint_error")


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
  Claim("SA-GAN [M=1] > SA-GAN (WP)", "sagan", "wp", ("R-1", "mAP")),
  Claim("SA-GAN [M=1] > SA-GAN (WD)", "sagan", "wd", ("R-1", "mAP")),
  Claim("SA-GAN (WD) viewpoint_error above SA-GAN [M=1]'s", "sagan", "wd", ("viewpoint_error",)),
  Claim("SA-GAN [M=10] > SA-GAN [M=1]", "sagan_m10", "sagan", ("R-1", "mAP")),
  Claim("viewpoint groups > one group", "sagan", "sagan_one_group", ("R-1", "mAP")),
)


def metric_values(result: Mapping) -> dict[str, float]:
  """R-1 … mAP of the result's first column group (the target, or PRID-CamA), and its fidelity scores."""
  rows = results.table_rows(result)
  out = dict(next(iter(rows.values())))
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


def verdict(differences: Sequence[float]) -> str:
  """The rule of the module docstring, on a claim's per-seed paired differences."""
  if len(differences) < MIN_SEEDS:
    return "not settled"
  if all(d > 0 for d in differences):
    return "holds"
  if all(d < 0 for d in differences):
    return "reversed"
  return "not settled"


def evaluate_claims(table: Mapping[str, Mapping[int, Mapping]], claims: Sequence[Claim] = CLAIMS) -> list[dict]:
  """Per claim and metric: the seeds both rows have, the paired differences, their mean, sign count, verdict.

  Claims whose rows were not run are left out.
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
        out.append(
          {
            "claim": claim.text,
            "metric": metric,
            "seeds": seeds,
            "differences": diffs,
            "mean": float(np.mean(diffs)) if diffs else math.nan,
            "agree": sum(d > 0 for d in diffs),
            "verdict": verdict(diffs),
          }
        )
  return out


def _cell(stats: Mapping[str, float] | None, digits: int) -> str:
  if stats is None:
    return "–"
  if stats["n"] == 1:
    return f"{stats['mean']:.{digits}f}"
  return f"{stats['mean']:.{digits}f} ± {stats['sd']:.{digits}f}"


def markdown(table: Mapping[str, Mapping[int, Mapping]], title: str, labels: Mapping[str, str]) -> str:
  """Rows (mean ± sd over seeds) and claims (paired differences), as Markdown."""
  summary = summarize(table)
  claims = evaluate_claims(table)
  seeds = sorted({s for by_seed in table.values() for s in by_seed})
  fidelity = [c for c in FIDELITY_COLUMNS if any(c in m for m in summary.values())]
  group = next(iter(results.table_rows(next(iter(next(iter(table.values())).values())))))
  lines = [
    f"### {title}",
    "",
    f"Mean ± sd over seeds {', '.join(map(str, seeds))} ({group}; CMC and mAP in %).",
    "",
    "| Method | seeds | " + " | ".join(RANK_COLUMNS + tuple(fidelity)) + " |",
    "|" + "---|" * (2 + len(RANK_COLUMNS) + len(fidelity)),
  ]
  for variant, stats in summary.items():
    n = len(table[variant])
    cells = [_cell(stats.get(c), 1) for c in RANK_COLUMNS] + [_cell(stats.get(c), 3) for c in fidelity]
    lines.append(f"| {labels.get(variant, variant)} | {n} | " + " | ".join(cells) + " |")
  lines += [
    "",
    "| Claim | metric | paired differences (per seed) | mean | seeds agreeing | verdict |",
    "|---|---|---|---|---|---|",
  ]
  for c in claims:
    digits = 3 if lower_is_better(c["metric"]) else 1
    diffs = ", ".join(f"{d:+.{digits}f}" for d in c["differences"])
    lines.append(
      f"| {c['claim']} | {c['metric']} | {diffs} | {c['mean']:+.{digits}f} | "
      f"{c['agree']}/{len(c['differences'])} | {c['verdict']} |"
    )
  lines += [
    "",
    f"Paired difference: the claimed-better row minus the other on the same seed (for fidelity errors, "
    f"the other minus the claimed-better). Verdict: holds when at least {MIN_SEEDS} seeds all agree in "
    "sign with the claim, reversed when they all disagree, otherwise not settled.",
  ]
  return "\n".join(lines) + "\n"
