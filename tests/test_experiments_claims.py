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
