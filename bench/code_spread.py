"""How far apart a finished run's spatial codes put one image's translations, beside what the IDE's
random augmentations move an image by (a table).

    python -m bench.code_spread --workdir=RUN[,RUN2,...] [--images=60] [--seed=0] [--view_ranges=0.02,0.04]

For every complete translated set under ``WORKDIR/translated`` (one per adaptation), on ``--images``
source images spread evenly over the set, in mean absolute error on RGB in [0, 1]:

* ``code spread``: each image's translations under codes 1 … M−1 against its code-0 translation
  (M > 1 only): how different the views that SA-GAN [M=M] hands the IDE are;
* ``two people``: code-0 translations of two different people, paired in a shuffled order (the
  scale an identity lives at);
* one column per IDE augmentation (`sagan_jax.reid.augment`), applied to the code-0 translations:
  ``view`` at each range of ``--view_ranges`` (the ``ide.augment=view`` control at ``ide.view_range``),
  the camera augment's own view alone (±0.08), and the ``camera`` and ``camera_gains`` augments whole.

``ide.view_range``'s default, ±0.02, is the range whose figure matched the code spread of SA-GAN
[M=10] on the first CUHK01 → VIPeR development pair; other runs' codes spread up to three times as
far (docs/results.md): this table, over several ranges, is how a config sizes its own control. Under it the bench names,
for each set and (with several) for their mean row, the range of ``--view_ranges`` whose figure is
nearest the code spread (a tie: the smaller): the rule the configs' ``ide.view_range`` was chosen by.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re

import jax
import numpy as np
from absl import app, flags

from sagan_jax import cli
from sagan_jax.errors import ConfigError, MissingInputError
from sagan_jax.experiments import translation
from sagan_jax.reid import augment

_WORKDIR = flags.DEFINE_list(
  "workdir", None, "finished runs' workdirs, comma-separated (their translated/ sets are read)", required=True
)
_IMAGES = flags.DEFINE_integer("images", 60, "source images per set, spread evenly over it", lower_bound=2)
_SEED = flags.DEFINE_integer("seed", 0, "the pairing's shuffle and the augmentations' draws")
_VIEW_RANGES = flags.DEFINE_list("view_ranges", ["0.02"], "sl(3) ranges of the view augmentation, one column each")

_NAME = re.compile(r"(\d{7})_(\d{2})\.png$")
AUGMENTS = {
  "camera's view alone (±0.08)": dataclasses.replace(augment.VIEW, warp=augment.CAMERA.warp),
  "camera": augment.CAMERA,
  "camera_gains": augment.CAMERA_GAINS,
}


def parse_view_ranges(values: list[str]) -> tuple[float, ...]:
  """``--view_ranges``' numbers, each a positive range; one error names the flag otherwise."""
  try:
    out = tuple(float(v) for v in values)
  except ValueError:
    out = ()
  if not out or not all(0 < r <= 0.5 for r in out):
    raise ConfigError(f"--view_ranges={','.join(values)}: give ranges in (0, 0.5], comma-separated")
  return out


def augmentations(view_ranges: tuple[float, ...]) -> dict[str, augment.CameraRanges]:
  """The table's augmentation columns: the view at each range, then `AUGMENTS`."""
  return {**{f"view (±{r:g})": augment.ranges("view", r) for r in view_ranges}, **AUGMENTS}


def translated_sets(workdir: str) -> list[str]:
  """Every complete translated set under ``workdir/translated``, in sorted order."""
  top = os.path.join(workdir, "translated")
  roots = [d for d, _, files in os.walk(top) if translation.LABELS in files]
  return sorted(r for r in roots if translation.is_complete(r))


def by_source(names) -> dict[int, dict[int, int]]:
  """``{source index: {code: position in names}}`` from the set's image names."""
  out: dict[int, dict[int, int]] = {}
  for i, name in enumerate(names):
    match = _NAME.search(name)
    if match is None:
      raise MissingInputError(
        f"{name!r}: not a translated image name (expected NNNNNNN_CC.png); translate the set again"
      )
    out.setdefault(int(match.group(1)), {})[int(match.group(2))] = i
  return out


def mae(a: np.ndarray, b: np.ndarray) -> float:
  """Mean absolute difference of uint8 (or [0, 255]) images, in [0, 1] units."""
  return float(np.mean(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))) / 255)


def spread(
  source: translation.TranslatedSource, images: int, seed: int, view_ranges: tuple[float, ...] = (augment.VIEW.warp,)
) -> dict[str, float]:
  """The module docstring's figures for one set."""
  codes = by_source(source.names)
  indices = sorted(codes)
  chosen = [indices[i] for i in np.unique(np.linspace(0, len(indices) - 1, images).round().astype(int))]
  first = np.stack([source[codes[i][0]]["image"] for i in chosen])
  people = np.asarray([source.person_ids[codes[i][0]] for i in chosen])
  out = {"codes": max(len(c) for c in codes.values()), "images": len(chosen)}
  between = [mae(source[codes[i][k]]["image"], first[n]) for n, i in enumerate(chosen) for k in codes[i] if k != 0]
  out["code spread"] = float(np.mean(between)) if between else float("nan")
  order = np.random.default_rng(seed).permutation(len(chosen))
  pairs = [(a, b) for a, b in itertools.pairwise(order) if people[a] != people[b]]
  out["two people"] = float(np.mean([mae(first[a], first[b]) for a, b in pairs])) if pairs else float("nan")
  x = first.astype(np.float32) / 127.5 - 1
  for name, ranges in augmentations(view_ranges).items():
    moved = np.asarray(augment.camera(jax.random.key(seed), x, ranges))
    out[name] = mae((moved + 1) * 127.5, (x + 1) * 127.5)
  return out


def nearest_range(row: dict, view_ranges: tuple[float, ...]) -> float | None:
  """The range whose view figure in ``row`` is nearest its code spread (a tie: the smaller); None without codes."""
  if not np.isfinite(row["code spread"]):
    return None
  return min(sorted(view_ranges), key=lambda r: abs(row[f"view (±{r:g})"] - row["code spread"]))


def table(workdirs, images: int, seed: int, view_ranges: tuple[float, ...] = (augment.VIEW.warp,)) -> str:
  """The markdown table of every translated set under each of ``workdirs`` (a path or a list), with a
  mean row when there are several, and the nearest view range of each row."""
  workdirs = [workdirs] if isinstance(workdirs, str) else list(workdirs)
  rows = {}
  for workdir in workdirs:
    roots = translated_sets(workdir)
    if not roots:
      raise MissingInputError(
        f"no complete translated set under {os.path.join(workdir, 'translated')}: pass the workdir of a run whose "
        "translate stage has finished"
      )
    for r in roots:
      name = os.path.relpath(r, workdir) if len(workdirs) == 1 else os.path.join(workdir, os.path.relpath(r, workdir))
      rows[name] = spread(translation.TranslatedSource(r), images, seed, view_ranges)
  columns = list(next(iter(rows.values())))
  if len(rows) > 1:
    rows["mean"] = {c: float(np.mean([row[c] for row in rows.values()])) for c in columns}
  lines = ["| translated set | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
  for name, row in rows.items():
    cells = [f"{row[c]:d}" if isinstance(row[c], int) else f"{row[c]:.3f}" for c in columns]
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  nearest = {name: nearest_range(row, view_ranges) for name, row in rows.items()}
  picked = "; ".join(f"{name} ±{r:g}" for name, r in nearest.items() if r is not None)
  if picked:
    lines.append(f"\nThe view range nearest the code spread: {picked}.")
  return "\n".join(lines)


def main(argv) -> None:
  del argv
  cli.quiet_logging()
  view_ranges = cli.exit_on_user_error(parse_view_ranges, _VIEW_RANGES.value)
  text = cli.exit_on_user_error(table, _WORKDIR.value, _IMAGES.value, _SEED.value, view_ranges)
  print("Mean absolute error, RGB in [0, 1] (`python -m bench.code_spread`)\n")
  print(text)


if __name__ == "__main__":
  app.run(main)
