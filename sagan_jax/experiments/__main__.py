"""Runs several rows of the paper: ``python -m sagan_jax.experiments {ablation,msweep} --config=FILE --workdir=DIR``.

  ablation  Table III: the variants (default original, wp, wd, ws, sagan, sagan_m10), one
            `train.py` run each in DIR/<variant>, then DIR/ablation.md and DIR/ablation.json.
  msweep    Fig. 5: SA-GAN with M = 1, 2, 4, 6, 8, 10 spatial codes (``--codes``) in DIR/m<M>,
            then DIR/msweep.json and DIR/msweep.png (R-1 against M).

Every other ``--config.<field>=value`` is passed to each run. Runs sharing a trained SA-GAN (the
variants sagan and sagan_m10, every M of the sweep) train it once: its checkpoint directory is
copied into the later runs' workdirs before they start. Each run resumes like `train.py`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
from PIL import Image, ImageDraw

from sagan_jax import fileio
from sagan_jax.experiments import results

# The folder holding this package, so a run's subprocess imports the same sagan_jax from any folder.
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TABLE3 = ("original", "wp", "wd", "ws", "sagan", "sagan_m10")
M_VALUES = (1, 2, 4, 6, 8, 10)


def _flag(argv, name, default=None):
  for a in argv:
    if a.startswith(f"--{name}="):
      return a.split("=", 1)[1]
  if default is None:
    sys.exit(f"--{name}=... is required")
  return default


def _run(config_file: str, variant: str, workdir: str, overrides: list[str]) -> dict:
  command = [sys.executable, "-m", "sagan_jax.experiments.train_main", f"--config={config_file}:variant={variant}",
             f"--workdir={workdir}", *overrides]
  print("$", " ".join(command), flush=True)
  path = os.pathsep.join(filter(None, [_PACKAGE_PARENT, os.environ.get("PYTHONPATH")]))
  subprocess.run(command, check=True, env={**os.environ, "PYTHONPATH": path})
  with open(os.path.join(workdir, "results.json")) as f:
    return json.load(f)


def _share_gan(from_workdir: str, to_workdir: str) -> None:
  """Copies a finished SA-GAN stage so another run with the same GAN skips training it."""
  source, target = os.path.join(from_workdir, "sagan"), os.path.join(to_workdir, "sagan")
  if os.path.isdir(source) and not os.path.exists(target):
    os.makedirs(to_workdir, exist_ok=True)
    shutil.copytree(source, target)


def ablation(config_file, workdir, overrides, variants=TABLE3):
  rows = []
  for variant in variants:
    run_dir = os.path.join(workdir, variant)
    if variant == "sagan_m10" and "sagan" in variants:
      _share_gan(os.path.join(workdir, "sagan"), run_dir)
    rows.append(_run(config_file, variant, run_dir, overrides))
  text = results.markdown(rows, f"{rows[0]['experiment']}: ablation (Table III layout)")
  fileio.write_text_atomic(os.path.join(workdir, "ablation.md"), text)
  fileio.write_text_atomic(os.path.join(workdir, "ablation.json"), json.dumps(rows, indent=1))
  print(text)


def line_plot(xs, ys, path: str, x_label: str, y_label: str, size=(480, 320)) -> None:
  """A small PNG line plot (PIL only): points joined by lines, ticks at every x and 5 y values."""
  w, h = size
  left, right, top, bottom = 56, 16, 16, 44
  img = Image.new("RGB", size, "white")
  d = ImageDraw.Draw(img)
  lo, hi = float(np.min(ys)), float(np.max(ys))
  pad = max(1.0, 0.1 * (hi - lo))
  lo, hi = lo - pad, hi + pad
  x_of = lambda x: left + (x - min(xs)) / max(1e-9, max(xs) - min(xs)) * (w - left - right)
  y_of = lambda y: top + (hi - y) / (hi - lo) * (h - top - bottom)
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


def msweep(config_file, workdir, overrides, codes=M_VALUES):
  rows = []
  for m in codes:
    run_dir = os.path.join(workdir, f"m{m}")
    if m != codes[0]:
      _share_gan(os.path.join(workdir, f"m{codes[0]}"), run_dir)
    rows.append(_run(config_file, "sagan", run_dir, [*overrides, f"--config.sagan.num_codes={m}"]))
  r1 = {}
  for m, row in zip(codes, rows):
    r1[m] = {group: cells["R-1"] for group, cells in results.table_rows(row).items()}
  fileio.write_text_atomic(os.path.join(workdir, "msweep.json"), json.dumps({"R-1": r1}, indent=1))
  first_group = next(iter(r1[codes[0]]))
  line_plot(list(codes), [r1[m][first_group] for m in codes], os.path.join(workdir, "msweep.png"), "M",
            f"R-1 (%) {first_group}")
  print(json.dumps(r1, indent=1))


def main(argv) -> None:
  if len(argv) < 2 or argv[1] not in ("ablation", "msweep"):
    sys.exit(__doc__)
  command, rest = argv[1], argv[2:]
  config_file, workdir = _flag(rest, "config"), _flag(rest, "workdir")
  if ":" in config_file:
    sys.exit("--config takes the file only: the runner sets variant=... itself")
  overrides = [a for a in rest if a.startswith("--config.")]
  unknown = [a for a in rest if not a.startswith(("--config=", "--workdir=", "--config.", "--variants=", "--codes="))]
  if unknown:
    sys.exit(f"unknown arguments {unknown}; see `python -m sagan_jax.experiments`")
  if command == "ablation":
    variants = tuple(_flag(rest, "variants", ",".join(TABLE3)).split(","))
    ablation(config_file, workdir, overrides, variants)
  else:
    codes = tuple(int(m) for m in _flag(rest, "codes", ",".join(map(str, M_VALUES))).split(","))
    msweep(config_file, workdir, overrides, codes)


if __name__ == "__main__":
  main(sys.argv)
