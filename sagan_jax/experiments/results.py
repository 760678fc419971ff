"""Results in the paper's layout: R-1, R-5, R-10, mAP (%), PRID2011 as PRID-CamA / PRID-CamB."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence

from sagan_jax import fileio
from sagan_jax.experiments.config import VARIANT_NAMES

COLUMNS = ("R-1", "R-5", "R-10", "mAP")
# Translation fidelity against the synthetic benchmark's ground truth (sagan_jax/fidelity.py).
FIDELITY_COLUMNS = ("pixel_error", "viewpoint_error", "code_diversity")
PRID_VIEWS = {"a2b": "PRID-CamA", "b2a": "PRID-CamB"}  # Table III: CamA = cam_a queries, cam_b gallery


def method_name(result: Mapping) -> str:
  """The row label: the variant's name in the paper, with the actual M when a run overrides it."""
  variant, codes = result["variant"], result["settings"]["num_codes"]
  if variant in ("sagan", "sagan_m10"):
    return f"SA-GAN [M={codes}]"
  name = VARIANT_NAMES.get(variant, variant)
  return name if codes in (0, 1) else f"{name} [M={codes}]"


def table_rows(result: Mapping) -> dict[str, dict[str, float]]:
  """One result (`evaluate` stage output) → {column group: {R-1, ..., mAP}}."""
  if result["protocol"] == "prid2011":
    return {PRID_VIEWS[d]: {k: result["tables"][d]["mean"][k] for k in COLUMNS} for d in PRID_VIEWS}
  return {result["target"]: {k: result["tables"]["query_gallery"][k] for k in COLUMNS}}


def markdown(results: Sequence[Mapping], title: str) -> str:
  """A Markdown table with one row per result (method) in the paper's layout."""
  groups = list(table_rows(results[0]))
  fidelity = [c for c in FIDELITY_COLUMNS if any(c in r.get("fidelity", {}) for r in results)]
  titles = [f"{g} {c}" if len(groups) > 1 else c for g in groups for c in COLUMNS] + fidelity
  lines = [f"### {title}", "", "| Method | " + " | ".join(titles) + " |", "|" + "---|" * (1 + len(titles))]
  for r in results:
    rows = table_rows(r)
    cells = [f"{rows[g][c]:.1f}" for g in groups for c in COLUMNS]
    cells += [f"{r['fidelity'][c]:.3f}" if c in r.get("fidelity", {}) else "–" for c in fidelity]
    lines.append(f"| {method_name(r)} | " + " | ".join(cells) + " |")
  settings = results[0]["settings"]
  lines += [
    "",
    f"Features: pool5{', L2-normalised' if settings['normalize_features'] else ''}"
    f"{', flip-averaged' if settings['flip_average'] else ''}; Euclidean distance; AP: "
    f"{settings['ap_mode']}; CMC and mAP in %.",
  ]
  groups = settings.get("viewpoint_groups") or {}
  if len(groups) > 1:
    lines.append(
      "Viewpoint groups, each adapted on its own: "
      + "; ".join(f"{g}: cameras {', '.join(map(str, c))}" for g, c in groups.items())
      + "."
    )
  if settings.get("ide_init") == "from scratch":
    lines.append("IDE trained from scratch (no ImageNet initialisation).")
  if settings.get("evaluated_splits") is not None:
    lines.append(f"PRID2011 splits evaluated: {', '.join(map(str, settings['evaluated_splits']))}.")
  lines += [f"Note: {n}" for n in settings.get("notes", [])]
  if fidelity:
    lines.append(
      "Fidelity of the X→Y translation against the paired ground truth: pixel_error and viewpoint_error are "
      "1 for no translation and 0 for an exact one; code_diversity is the corner spread between spatial codes."
    )
  return "\n".join(lines) + "\n"


def write(workdir: str, result: Mapping) -> None:
  """``results.json`` and ``results.md`` of one run (written to temporary names, then renamed)."""
  for name, text in (
    ("results.json", json.dumps(result, indent=1)),
    ("results.md", markdown([result], f"{result['experiment']}: {method_name(result)}")),
  ):
    fileio.write_text_atomic(os.path.join(workdir, name), text)
