"""Results in the paper's layout: R-1, R-5, R-10, mAP (%), PRID2011 as PRID-CamA / PRID-CamB."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence

from sagan_jax import fileio
from sagan_jax.experiments.config import VARIANT_NAMES

COLUMNS = ("R-1", "R-5", "R-10", "mAP")
# Translation fidelity against the synthetic benchmark's ground truth (sagan_jax/fidelity.py).
FIDELITY_COLUMNS = ("pixel_error", "detail_error", "viewpoint_error", "coverage_error", "precision_error")
REFERENCES = ("flat_colour", "flat_colour_blur", "constant", "true_colours", "true_warp")
# Two-camera targets' column groups: Table III's PRID-CamA = cam_a queries against the cam_b gallery.
VIEWS = {"a2b": "CamA", "b2a": "CamB"}
LABELS = {"prid2011": "PRID", "viper": "VIPeR", "cuhk01": "CUHK01"}


def method_name(result: Mapping) -> str:
  """The row label: the variant's name in the paper, with the actual M when a run overrides it."""
  variant, codes = result["variant"], result["settings"]["num_codes"]
  if variant in ("sagan", "sagan_m10"):
    return f"SA-GAN [M={codes}]"
  name = VARIANT_NAMES.get(variant, variant)
  return name if codes in (0, 1) else f"{name} [M={codes}]"


def table_rows(result: Mapping) -> dict[str, dict[str, float]]:
  """One result (`evaluate` stage output) → {column group: {R-1, ..., mAP}}."""
  if result["protocol"] in ("two_camera", "prid2011"):  # "prid2011": results written before VIPeR and CUHK01
    label = LABELS.get(result["target"], result["target"])
    return {f"{label}-{VIEWS[d]}": {k: result["tables"][d]["mean"][k] for k in COLUMNS} for d in VIEWS}
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
    lines.append(f"Splits evaluated: {', '.join(map(str, settings['evaluated_splits']))}.")
  if settings.get("ide_steps"):
    lines.append(f"IDE updates: {settings['ide_steps']} (the same for every variant and M).")
  repeats = settings.get("ide_repeats", 1)
  if repeats > 1:
    line = f"Each score is the mean of {repeats} IDE trainings, each with its own seed"
    if len(results) == 1 and "tables_per_training" in results[0]:
      each = [table_rows({**results[0], "tables": t}) for t in results[0]["tables_per_training"]]
      line += "; R-1 / mAP of each: " + "; ".join(
        f"{g} " + ", ".join(f"{rows[g]['R-1']:.1f} / {rows[g]['mAP']:.1f}" for rows in each) for g in each[0]
      )
    lines.append(line + ".")
  lines += [f"Note: {n}" for n in settings.get("notes", [])]
  for r in results:
    t = r.get("translation")
    if t:
      lines.append(
        f"Translation ({method_name(r)}; no ground truth, {t['feature_space']}): domain gap {t['domain_gap']:.2f} "
        f"(untranslated source {t['domain_gap_raw']:.2f}), identity kept {_kept(t)}, artifact energy "
        f"{t['artifact_energy']:.2f} (untranslated source {t['artifact_energy_raw']:.2f}; target 1)"
        + _framing(t)
        + "."
        + _per_reference(t)
      )
  if fidelity:
    lines.append(
      "Fidelity of the X→Y translation on held-out paired images (source test identities, never a GAN "
      "input), each against its nearest true view: pixel_error (L1) and detail_error (1 − SSIM) on the "
      "person, 1 for no translation and 0 for an exact one; viewpoint_error against the central view, "
      "coverage_error (each true view's nearest code) and precision_error (each code's nearest true "
      "view), in units of the central view's change."
    )
    refs = results[0].get("fidelity", {}).get("references")
    if refs:
      shown = "; ".join(
        f"{name} {refs[name]['pixel_error']:.3f} / {refs[name]['detail_error']:.3f}" for name in REFERENCES
      )
      lines.append(
        f"Trivial translations (pixel_error / detail_error): {shown}; best single warp coverage_error "
        f"{refs['best_single_warp']['coverage_error']:.3f}."
      )
  return "\n".join(lines) + "\n"


def _framing(t: Mapping) -> str:
  """The person masks' framing gap to the target's, when the source and target have masks."""
  if t.get("framing_gap") is None or t.get("framing_gap_raw") is None:
    return ""
  return f", framing gap {t['framing_gap']:.4f} (untranslated source {t['framing_gap_raw']:.4f})"


def _per_reference(t: Mapping) -> str:
  """Each reference IDE's gap ratio and identity figure, when the report averages several."""
  each = t.get("per_reference")
  if not each:
    return ""
  shown = lambda v: "n/a" if v is None else f"{v:.3f}"
  ratios = ", ".join(f"{d['domain_gap'] / d['domain_gap_raw']:.3f}" for d in each)
  kept = ", ".join(shown(d["identity_kept"]) for d in each)
  seeds = ", ".join(str(d["seed"]) for d in each)
  return f" Per reference IDE (seeds {seeds}): domain gap / untranslated {ratios}; identity kept {kept}."


def _kept(t: Mapping) -> str:
  """``identity_kept`` with the rank-1s it is the ratio of (reports before them had only the first)."""
  if "identity_rank1" not in t:
    return f"{t['identity_kept']:.3f}"
  if t["identity_kept"] is None:
    return "n/a (no sampled person has two images)"
  out = f"{t['identity_kept']:.3f} (rank-1 {t['identity_rank1']:.3f}, untranslated {t['identity_rank1_raw']:.3f}"
  if t.get("identity_kept_recoloured") is not None:
    out += f"; the people recoloured keep {t['identity_kept_recoloured']:.3f}"
  return out + ")"


def write(workdir: str, result: Mapping) -> None:
  """``results.json`` and ``results.md`` of one run (written to temporary names, then renamed)."""
  for name, text in (
    ("results.json", json.dumps(result, indent=1)),
    ("results.md", markdown([result], f"{result['experiment']}: {method_name(result)}")),
  ):
    fileio.write_text_atomic(os.path.join(workdir, name), text)
