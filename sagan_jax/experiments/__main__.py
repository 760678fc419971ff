"""Runs several rows of the paper over seeds.

  python -m sagan_jax.experiments {ablation,msweep} --config=FILE --workdir=DIR

  ablation  Tables I–III: the rows (``--variants``, default the eight variants and ``ws_nomask``,
            WS whose critics do not see the mask; ``sagan_one_group`` adds SA-GAN [M=1] with the
            source adapted as one group), for every seed of ``--seeds`` (default 0), one `train.py`
            run each in DIR/seed<S>/<row>; then DIR/ablation.md and DIR/ablation.json: per row the
            mean and sd over seeds, per claim of the paper the paired differences, tests and a
            verdict (`sagan_jax.experiments.claims`). ``--report_only`` runs nothing and tabulates
            the pairs already complete (and lists the others).
  msweep    Fig. 5: SA-GAN with M = 1, 2, 4, 6, 8, 10 spatial codes (``--codes``) per seed in
            DIR/seed<S>/m<M>, then DIR/msweep.json and DIR/msweep.png (mean R-1 against M, ±1 sd band).
            Every M's IDE takes the same number of updates (an epoch counts the source images).

Every other ``--config.<field>=value`` is passed to each run, with ``--config.seed=S``. Runs sharing a
trained SA-GAN (sagan and sagan_m10 of one seed, every M of one seed) train it once: its stage folder
is copied into the later runs' workdirs. A seed-variant pair whose workdir holds its results is not
run again; others resume like `train.py`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
from absl import app, flags
from ml_collections import config_flags
from PIL import Image, ImageDraw

from sagan_jax import cli, fileio
from sagan_jax.experiments import claims, results
from sagan_jax.experiments import config as config_lib

# The folder holding this package, so a run's subprocess imports the same sagan_jax from any folder.
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Runner rows that are a variant plus overrides.
EXTRA_ROWS = {
  "sagan_one_group": ("sagan", ["--config.data.viewpoint_groups=none"]),
  # WS's critics see the unwarped source mask, whose geometry G1 cannot change: a control without it.
  "ws_nomask": ("ws", ["--config.sagan.critic_mask=none"]),
}
ROW_LABELS = {
  **config_lib.VARIANT_NAMES,
  "sagan_one_group": "SA-GAN [M=1], one group",
  "ws_nomask": "SA-GAN (WS), critics without the mask",
}
# The default rows: every variant, and the WS control right after WS.
ALL_VARIANTS = tuple(v for name in config_lib.VARIANTS for v in ((name, "ws_nomask") if name == "ws" else (name,)))
M_VALUES = (1, 2, 4, 6, 8, 10)


def _fail(message: str) -> None:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(cli.USER_ERROR_EXIT)


def _complete(workdir: str) -> dict | None:
  path = os.path.join(workdir, "results.json")
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    return json.load(f)


def _run(config_file: str, variant: str, workdir: str, overrides: list[str]) -> dict:
  done = _complete(workdir)
  if done is not None:
    print(f"complete, not run again: {workdir}", flush=True)
    return done
  command = [
    sys.executable,
    "-m",
    "sagan_jax.experiments.train_main",
    f"--config={config_file}:variant={variant}",
    f"--workdir={workdir}",
    *overrides,
  ]
  print("$", " ".join(command), flush=True)
  path = os.pathsep.join(filter(None, [_PACKAGE_PARENT, os.environ.get("PYTHONPATH")]))
  done = subprocess.run(command, check=False, env={**os.environ, "PYTHONPATH": path})
  if done.returncode:
    _fail(
      f"the run in {workdir} stopped with status {done.returncode} (its output is above); rerun this command "
      "to resume it and the rest"
    )
  return _complete(workdir)


def _share_gan(from_workdir: str, to_workdir: str) -> None:
  """Copies a finished SA-GAN stage so another run with the same GAN skips training it."""
  source, target = os.path.join(from_workdir, "sagan"), os.path.join(to_workdir, "sagan")
  if os.path.isdir(source) and not os.path.exists(target):
    os.makedirs(to_workdir, exist_ok=True)
    shutil.copytree(source, target)


def ablation(config_file, workdir, overrides, variants=ALL_VARIANTS, seeds=(0,), report_only=False):
  """Runs (or with ``report_only`` only collects) every seed-variant pair; writes the tables."""
  table: dict[str, dict[int, dict]] = {}
  missing = []
  for seed in seeds:
    seed_dir = os.path.join(workdir, f"seed{seed}")
    for row in variants:
      variant, extra = EXTRA_ROWS.get(row, (row, []))
      run_dir = os.path.join(seed_dir, row)
      if report_only:
        done = _complete(run_dir)
        if done is None:
          missing.append(f"{row} seed {seed}")
        else:
          table.setdefault(row, {})[seed] = done
        continue
      if row == "sagan_m10" and _complete(os.path.join(seed_dir, "sagan")) is not None:
        _share_gan(os.path.join(seed_dir, "sagan"), run_dir)  # the same GAN: only M differs
      table.setdefault(row, {})[seed] = _run(
        config_file, variant, run_dir, [*overrides, *extra, f"--config.seed={seed}"]
      )
  if not table:
    _fail(f"no complete run under {workdir} for these seeds and variants")
  experiment = next(iter(next(iter(table.values())).values()))["experiment"]
  done_seeds = sorted({s for by_seed in table.values() for s in by_seed})
  text = claims.markdown(table, f"{experiment}: ablation over seeds {', '.join(map(str, done_seeds))}", ROW_LABELS)
  if missing:
    text += f"\nNot run yet (--report_only): {', '.join(missing)}.\n"
  record = {
    "seeds": done_seeds,
    "variants": list(table),
    "missing": missing,
    "summary": claims.summarize(table),
    "claims": claims.evaluate_claims(table),
    "runs": {row: {str(s): r for s, r in by_seed.items()} for row, by_seed in table.items()},
  }
  fileio.write_text_atomic(os.path.join(workdir, "ablation.json"), json.dumps(record, indent=1))
  fileio.write_text_atomic(os.path.join(workdir, "ablation.md"), text)
  print(text)
  return record


def line_plot(xs, ys, path: str, x_label: str, y_label: str, size=(480, 320), spread=None) -> None:
  """A small PNG line plot (PIL only): points joined by lines, ticks at every x and 5 y values;
  with ``spread`` (one value per point), a shaded band from ys − spread to ys + spread."""
  w, h = size
  left, right, top, bottom = 56, 16, 16, 44
  img = Image.new("RGB", size, "white")
  d = ImageDraw.Draw(img)
  spread = np.zeros(len(ys)) if spread is None else np.asarray(spread, np.float64)
  lo, hi = float(np.min(np.asarray(ys) - spread)), float(np.max(np.asarray(ys) + spread))
  pad = max(1.0, 0.1 * (hi - lo))
  lo, hi = lo - pad, hi + pad
  x_of = lambda x: left + (x - min(xs)) / max(1e-9, max(xs) - min(xs)) * (w - left - right)
  y_of = lambda y: top + (hi - y) / (hi - lo) * (h - top - bottom)
  if np.any(spread > 0):
    band = [(x_of(x), y_of(y + e)) for x, y, e in zip(xs, ys, spread)]
    band += [(x_of(x), y_of(y - e)) for x, y, e in reversed(list(zip(xs, ys, spread)))]
    d.polygon(band, fill=(245, 200, 200))
  d.line([(left, top), (left, h - bottom), (w - right, h - bottom)], fill="black")
  for x in xs:
    d.line([(x_of(x), h - bottom), (x_of(x), h - bottom + 4)], fill="black")
    d.text((x_of(x) - 4, h - bottom + 6), f"{x:g}", fill="black")
  for y in np.linspace(lo, hi, 5):
    d.line([(left - 4, y_of(y)), (left, y_of(y))], fill="black")
    d.text((4, y_of(y) - 6), f"{y:.1f}", fill="black")
  points = [(x_of(x), y_of(y)) for x, y in zip(xs, ys)]
  d.line(points, fill=(200, 30, 30), width=2)
  for px, py in points:
    d.ellipse([px - 3, py - 3, px + 3, py + 3], fill=(200, 30, 30))
  d.text((w // 2 - 20, h - 18), x_label, fill="black")
  d.text((left + 6, top), y_label, fill="black")
  img.save(path)


def msweep(config_file, workdir, overrides, codes=M_VALUES, seeds=(0,)):
  r1: dict[int, dict[int, dict[str, float]]] = {}
  for seed in seeds:
    seed_dir = os.path.join(workdir, f"seed{seed}")
    for m in codes:
      run_dir = os.path.join(seed_dir, f"m{m}")
      if m != codes[0]:
        _share_gan(os.path.join(seed_dir, f"m{codes[0]}"), run_dir)
      row = _run(config_file, "sagan", run_dir, [*overrides, f"--config.sagan.num_codes={m}", f"--config.seed={seed}"])
      r1.setdefault(m, {})[seed] = {group: cells["R-1"] for group, cells in results.table_rows(row).items()}
  first_group = next(iter(r1[codes[0]][seeds[0]]))
  values = {m: [r1[m][s][first_group] for s in seeds] for m in codes}
  mean = {m: float(np.mean(v)) for m, v in values.items()}
  sd = {m: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for m, v in values.items()}
  record = {
    "seeds": list(seeds),
    "group": first_group,
    "R-1": {str(m): {"mean": mean[m], "sd": sd[m], "per_seed": values[m]} for m in codes},
  }
  fileio.write_text_atomic(os.path.join(workdir, "msweep.json"), json.dumps(record, indent=1))
  line_plot(
    list(codes),
    [mean[m] for m in codes],
    os.path.join(workdir, "msweep.png"),
    "M",
    f"R-1 (%) {first_group}, mean ± sd of {len(seeds)}",
    spread=[sd[m] for m in codes],
  )
  print(json.dumps(record, indent=1))
  return record


COMMANDS = ("ablation", "msweep")


def _define_flags() -> None:
  """The runner's flags (defined only when run as a command, so importing the module defines none)."""
  cli.define_config_file("config", None, "experiment config file (configs/*.py, without :variant=: the runner sets it)")
  flags.DEFINE_string("workdir", None, "one folder per seed and row: WORKDIR/seed<S>/<row>")
  flags.DEFINE_list("seeds", ["0"], "seeds to run, e.g. 0,1,2,3,4")
  flags.DEFINE_list("variants", list(ALL_VARIANTS), f"ablation rows (also: {', '.join(EXTRA_ROWS)})")
  flags.DEFINE_list("codes", [str(m) for m in M_VALUES], "msweep: the numbers of spatial codes M")
  flags.DEFINE_bool("report_only", False, "ablation: run nothing, tabulate the seed-row pairs already complete")
  flags.mark_flags_as_required(["config", "workdir"])


def _integers(name: str, values, minimum: int, example: str) -> tuple[int, ...]:
  try:
    out = tuple(int(v) for v in values)
  except ValueError:
    out = ()
  if not out or min(out) < minimum:
    _fail(f"--{name}={','.join(values)!r}: expected integers of at least {minimum}, like --{name}={example}")
  return out


def main(argv) -> None:
  if len(argv) != 2 or argv[1] not in COMMANDS:
    raise app.UsageError(f"usage: python -m sagan_jax.experiments {{{','.join(COMMANDS)}}} --config=FILE --workdir=DIR")
  f = flags.FLAGS
  config_file = config_flags.get_config_filename(f["config"])
  if ":" in config_file:
    _fail("--config takes the file only: the runner sets variant=... itself")
  overrides = [f"--config.{k}={v}" for k, v in config_flags.get_override_values(f["config"]).items()]
  if any(o.startswith("--config.seed=") for o in overrides):
    _fail("--config.seed is set per run by the runner: pass --seeds=0,1,2 instead")
  seeds = _integers("seeds", f.seeds, 0, "0,1,2,3,4")
  if argv[1] == "ablation":
    bad = [v for v in f.variants if v not in config_lib.VARIANTS and v not in EXTRA_ROWS]
    if bad:
      _fail(f"--variants: unknown {bad}; choose from {', '.join(config_lib.VARIANTS + tuple(EXTRA_ROWS))}")
    ablation(config_file, f.workdir, overrides, tuple(f.variants), seeds, report_only=f.report_only)
  else:
    msweep(config_file, f.workdir, overrides, _integers("codes", f.codes, 1, "1,2,4,6,8,10"), seeds)


if __name__ == "__main__":
  _define_flags()
  app.run(main, flags_parser=cli.parse_flags)
