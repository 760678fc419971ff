"""The paper's claims over seeds: aggregation, paired tests and Holm's correction by hand, the verdict rule."""

import math

import numpy as np
import pytest
from scipy import stats

from sagan_jax.experiments import claims

from helpers import ranked_result


def _table(sagan_r1, original_r1, sagan_map, original_map, wd_view=None, sagan_view=None):
  rows = {"original": {}, "sagan": {}, "wd": {}}
  for s in range(len(sagan_r1)):
    rows["original"][s] = ranked_result("original", original_r1[s], original_map[s])
    rows["sagan"][s] = ranked_result("sagan", sagan_r1[s], sagan_map[s], sagan_view[s] if sagan_view else None)
    rows["wd"][s] = ranked_result("wd", sagan_r1[s] + 1.0, sagan_map[s] - 1.0, wd_view[s] if wd_view else None)
  return rows


TABLE = _table(
  sagan_r1=[60.0, 51.0, 58.0, 62.0, 59.0],
  original_r1=[50.0, 59.0, 48.0, 50.0, 49.0],
  sagan_map=[45.0, 44.0, 46.0, 47.0, 45.0],
  original_map=[40.0, 41.0, 42.0, 40.0, 41.0],
  wd_view=[0.5, 0.6, 0.9, 0.7, 0.65],
  sagan_view=[0.2, 0.4, 0.3, 0.35, 0.3],
)


def test_summary_means_and_sample_sds_by_hand():
  s = claims.summarize(TABLE)
  assert s["original"]["R-1"]["mean"] == pytest.approx(51.2) and s["original"]["R-1"]["n"] == 5
  assert s["original"]["R-1"]["sd"] == pytest.approx(np.std([50, 59, 48, 50, 49], ddof=1))
  assert s["sagan"]["viewpoint_error"]["mean"] == pytest.approx(0.31) and "viewpoint_error" not in s["original"]
  assert claims.summarize({"x": {0: ranked_result("x", 10.0, 5.0)}})["x"]["R-1"]["sd"] == 0.0


def test_paired_test_by_hand():
  d = [10.0, -1.0, 10.0, 12.0, 10.0]
  t = claims.paired_test(d)
  mean, sd = np.mean(d), np.std(d, ddof=1)
  assert t["mean"] == pytest.approx(8.2)
  half = stats.t.ppf(0.975, 4) * sd / math.sqrt(5)
  assert (t["ci_low"], t["ci_high"]) == pytest.approx((mean - half, mean + half))
  assert t["p_t"] == pytest.approx(2 * stats.t.sf(mean / (sd / math.sqrt(5)), 4))
  assert t["p_sign"] == pytest.approx(2 * 6 / 32)  # one negative of five: 2·P(X ≤ 1), X ~ Bin(5, ½)
  assert claims.paired_test([1.0, 1.0, 1.0, 1.0, 1.0])["p_sign"] == pytest.approx(2 / 32)  # the floor at n = 5


def test_holm_adjustment_by_hand():
  # p sorted: 0.01, 0.02, 0.04, 0.30 → ×4, ×3, ×2, ×1 → 0.04, 0.06, 0.08, 0.30 (already monotone).
  assert claims.holm([0.04, 0.30, 0.01, 0.02]) == pytest.approx([0.08, 0.30, 0.04, 0.06])
  # A later smaller product is lifted to the running maximum.
  assert claims.holm([0.01, 0.011, 0.5]) == pytest.approx([0.03, 0.03, 0.5])


def test_claims_verdicts_follow_the_corrected_tests():
  found = {(c["claim"], c["metric"]): c for c in claims.evaluate_claims(TABLE)}
  over_original = found[("SA-GAN [M=1] > Original", "R-1")]
  assert over_original["differences"] == [10.0, -8.0, 10.0, 12.0, 10.0] and over_original["agree"] == 4
  family = [c["p_t"] for c in found.values()]
  assert len(family) == 5  # R-1 and mAP over Original and over WD, WD's viewpoint error; nothing else was run
  assert over_original["p_holm"] == pytest.approx(
    claims.holm(family)[list(found).index(("SA-GAN [M=1] > Original", "R-1"))]
  )
  assert over_original["p_t"] > 0.05 and over_original["verdict"] == "not shown"  # one seed far the other way
  assert found[("SA-GAN [M=1] > Original", "mAP")]["verdict"] == "holds at α = 0.05"  # +5, +3, +4, +7, +4
  assert found[("SA-GAN [M=1] > SA-GAN (WD)", "R-1")]["verdict"] == "reversed at α = 0.05"  # −1 on every seed
  assert found[("SA-GAN [M=1] > SA-GAN (WD)", "mAP")]["verdict"] == "holds at α = 0.05"  # +1 on every seed
  wd_view = found[("SA-GAN (WD) viewpoint_error above SA-GAN [M=1]'s", "viewpoint_error")]
  assert wd_view["differences"] == pytest.approx([0.3, 0.2, 0.6, 0.35, 0.35])  # lower is better: WD − SA-GAN
  assert claims.verdict(5.0, 0.001, 4) == "not shown"  # fewer than MIN_SEEDS seeds
  assert not any(c.startswith("SA-GAN [M=10]") for c, _ in found)  # rows not run: no claim


def test_markdown_shows_mean_sd_intervals_p_values_and_verdicts():
  labels = {"sagan": "SA-GAN [M=1]", "original": "Original", "wd": "SA-GAN (WD)"}
  text = claims.markdown(TABLE, "ablation", labels)
  assert "| Original | 5 | 51.2 ± 4.4 |" in text
  row = next(line for line in text.splitlines() if line.startswith("| SA-GAN [M=1] > Original | mAP"))
  assert "+4.6 [" in row and "5/5" in row and row.endswith("| holds at α = 0.05 |")


def _two_camera(r1_a, r1_b, map_a, map_b):
  """A two-camera (VIPeR-like) results.json with a translation report."""
  table = {
    d: {"mean": {"R-1": r, "R-5": r, "R-10": r, "mAP": m}} for d, r, m in (("a2b", r1_a, map_a), ("b2a", r1_b, map_b))
  }
  return {
    "experiment": "cuhk01_viper",
    "variant": "sagan",
    "protocol": "two_camera",
    "target": "viper",
    "tables": table,
    "translation": {"domain_gap": 90.0, "identity_kept": 0.5, "feature_space": "pool5"},
  }


def test_compare_pairs_candidate_minus_baseline_by_hand():
  base = [ranked_result("sagan", r, m, v) for r, m, v in zip([50, 52, 48, 51, 49], [40] * 5, [0.5] * 5, strict=True)]
  # R-1 +2 on every pair; viewpoint_error −0.1 on four pairs, +0.05 on one; mAP identical.
  cand = [
    ranked_result("sagan", r + 2, m, v)
    for r, m, v in zip([50, 52, 48, 51, 49], [40] * 5, [0.4, 0.4, 0.4, 0.55, 0.4], strict=True)
  ]
  rows = {c["metric"]: c for c in claims.compare(base, cand)}
  assert list(rows) == ["R-1", "mAP", "pixel_error", "viewpoint_error"]  # code_diversity is not compared
  assert rows["R-1"]["differences"] == pytest.approx([2.0] * 5)
  assert rows["R-1"]["p_t"] == 0.0 and rows["R-1"]["verdict"] == "higher at α = 0.05"
  assert rows["mAP"]["mean"] == 0.0 and rows["mAP"]["verdict"] == "not shown"
  d = [-0.1, -0.1, -0.1, 0.05, -0.1]
  assert rows["viewpoint_error"]["mean"] == pytest.approx(np.mean(d))
  assert rows["viewpoint_error"]["p_t"] == pytest.approx(claims.paired_test(d)["p_t"])
  p = [rows[k]["p_t"] for k in rows]
  assert [rows[k]["p_holm"] for k in rows] == pytest.approx(claims.holm([1.0 if math.isnan(x) else x for x in p]))
  with pytest.raises(ValueError, match="pairs"):
    claims.compare(base, cand[:4])


def test_compare_averages_a_two_camera_targets_directions_and_reads_the_translation_report():
  base = [_two_camera(10.0, 8.0, 18.0, 16.0), _two_camera(9.0, 9.0, 17.0, 15.0)]
  cand = [_two_camera(12.0, 8.0, 18.0, 18.0), _two_camera(9.0, 11.0, 16.0, 15.0)]
  cand[1]["translation"]["domain_gap"] = 80.0
  rows = {c["metric"]: c for c in claims.compare(base, cand)}
  assert rows["R-1"]["differences"] == pytest.approx([1.0, 1.0])  # (12 + 8)/2 − (10 + 8)/2; (9 + 11)/2 − 9
  assert rows["mAP"]["differences"] == pytest.approx([1.0, -0.5])
  assert rows["domain_gap"]["differences"] == pytest.approx([0.0, -10.0])
  assert "feature_space" not in rows and rows["R-1"]["verdict"] == "not shown"  # two pairs never decide
  table = claims.compare_markdown(claims.compare(base, cand), ["b0", "b1"], ["c0", "c1"])
  assert "| R-1 | 9.0 → 10.0 | 9.0 → 10.0 | +1.0 [" in table
  one = claims.compare_markdown(claims.compare(base[:1], cand[:1]), ["b0"], ["c0"])
  assert "| R-1 | 9.0 → 10.0 | +1.0 (one pair: no interval) | – | – | 1.000 | not shown |" in one and "nan" not in one


def test_compare_command_reads_finished_workdirs_and_names_a_missing_one(tmp_path):
  import json
  import subprocess
  import sys

  from helpers import ROOT

  dirs = {}
  for side, r1 in (("base", [50, 52]), ("cand", [53, 54])):
    dirs[side] = []
    for i, r in enumerate(r1):
      d = tmp_path / f"{side}_{i}"
      d.mkdir()
      (d / "results.json").write_text(json.dumps(ranked_result("sagan", r, 40.0)))
      dirs[side].append(str(d))

  def run(baseline, candidate):
    command = [
      sys.executable,
      "-m",
      "sagan_jax.experiments.compare",
      f"--baseline={baseline}",
      f"--candidate={candidate}",
    ]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)

  out = run(",".join(dirs["base"]), ",".join(dirs["cand"]))
  assert out.returncode == 0, out.stderr
  assert "| R-1 | 50.0 → 53.0 | 52.0 → 54.0 | +2.5 [" in out.stdout
  missing = str(tmp_path / "nothing")
  out = run(dirs["base"][0], missing)
  assert out.returncode == 2 and out.stderr.strip().splitlines() == [
    f"error: {missing}/results.json does not exist: {missing!r} is not a finished run "
    "(train.py writes results.json last)"
  ]
  other = tmp_path / "other"
  other.mkdir()
  (other / "results.json").write_text(json.dumps(_two_camera(9.0, 9.0, 17.0, 15.0)))
  out = run(",".join(dirs["base"]), f"{dirs['cand'][0]},{other}")
  assert out.returncode == 2 and "evaluates cuhk01_viper on viper" in out.stderr and out.stdout == ""


def test_a_two_camera_result_is_scored_on_both_directions_averaged():
  # As the real-photo tables report it: A→B 6 / 12 and B→A 8 / 16 give 7 / 14.
  tables = {
    "a2b": {"mean": {"R-1": 6.0, "R-5": 10.0, "R-10": 20.0, "mAP": 12.0}},
    "b2a": {"mean": {"R-1": 8.0, "R-5": 12.0, "R-10": 22.0, "mAP": 16.0}},
  }
  result = {"protocol": "two_camera", "target": "viper", "tables": tables}
  assert claims.metric_values(result) == {"R-1": 7.0, "R-5": 11.0, "R-10": 21.0, "mAP": 14.0}
  text = claims.markdown({"original": dict.fromkeys(range(5), result)}, "t", {"original": "Original"})
  assert "(mean of VIPeR-CamA and VIPeR-CamB;" in text and "| Original | 5 | 7.0 ± 0.0 |" in text
