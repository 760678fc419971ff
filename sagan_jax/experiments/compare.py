"""Paired comparison of two sets of finished runs: candidate − baseline on the same seeds and data.

    python -m sagan_jax.experiments.compare --baseline=runs/base_0,runs/base_1,... \\
        --candidate=runs/new_0,runs/new_1,...

The i-th baseline and the i-th candidate are one pair: the same seed, split and machine, one option
apart. Every metric both runs of every pair report is tabulated (R-1 and mAP averaged over a
two-camera target's directions, the held-out fidelity scores, the translation report's ratios),
with `claims.compare`'s t interval, sign test and Holm correction over the metrics. It trains
nothing: it reads each workdir's ``results.json``.
"""

from __future__ import annotations

import json
import os

from absl import app, flags

from sagan_jax import cli
from sagan_jax.errors import ConfigError, MissingInputError
from sagan_jax.experiments import claims

_BASELINE = flags.DEFINE_list("baseline", None, "finished workdirs, comma-separated, in pair order", required=True)
_CANDIDATE = flags.DEFINE_list("candidate", None, "finished workdirs, one per baseline, same order", required=True)


def _load(workdir: str) -> dict:
  path = os.path.join(workdir, "results.json")
  if not os.path.isfile(path):
    raise MissingInputError(
      f"{path} does not exist: {workdir!r} is not a finished run (train.py writes results.json last)"
    )
  with open(path) as f:
    return json.load(f)


def _compare() -> None:
  if len(_BASELINE.value) != len(_CANDIDATE.value):
    raise ConfigError(
      f"--baseline has {len(_BASELINE.value)} workdirs and --candidate {len(_CANDIDATE.value)}: "
      "pass one candidate per baseline, in the same order"
    )
  baseline, candidate = [_load(d) for d in _BASELINE.value], [_load(d) for d in _CANDIDATE.value]
  # One comparison, one evaluation: every run must score the same experiment on the same target.
  first = (baseline[0]["experiment"], baseline[0]["target"], baseline[0]["protocol"])
  for workdir, r in zip(_BASELINE.value + _CANDIDATE.value, baseline + candidate, strict=True):
    if (r["experiment"], r["target"], r["protocol"]) != first:
      raise ConfigError(
        f"{workdir!r} evaluates {r['experiment']} on {r['target']}, {_BASELINE.value[0]!r} {first[0]} on "
        f"{first[1]}: compare runs of one experiment"
      )
  names = [os.path.basename(os.path.normpath(d)) for d in _BASELINE.value]
  print(
    claims.compare_markdown(
      claims.compare(baseline, candidate), names, [os.path.basename(os.path.normpath(d)) for d in _CANDIDATE.value]
    ),
    end="",
  )


def main(argv) -> None:
  del argv
  cli.quiet_logging()
  cli.exit_on_user_error(_compare)


if __name__ == "__main__":
  app.run(main)
