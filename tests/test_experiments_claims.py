"""The paper's claims over seeds: aggregation by hand, paired differences and the verdict rule."""

import re

import numpy as np
import pytest

from sagan_jax.experiments import seeds

from helpers import ranked_result

TABLE = {
  "original": {
    0: ranked_result("original", 50.0, 40.0),
    1: ranked_result("original", 52.0, 41.0),
    2: ranked_result("original", 48.0, 42.0),
  },
  "sagan": {
    0: ranked_result("sagan", 60.0, 45.0, 0.2),
    1: ranked_result("sagan", 51.0, 44.0, 0.4),
    2: ranked_result("sagan", 58.0, 46.0, 0.3),
  },
  "wd": {
    0: ranked_result("wd", 55.0, 46.0, 0.5),
    1: ranked_result("wd", 53.0, 45.0, 0.6),
    2: ranked_result("wd", 57.0, 47.0, 0.9),
  },
}


def test_summary_means_and_sample_sds_by_hand():
  s = seeds.summarize(TABLE)
  assert s["original"]["R-1"] == {"mean": 50.0, "sd": pytest.approx(2.0), "n": 3}
  assert s["sagan"]["R-1"]["mean"] == pytest.approx(169 / 3)
  assert s["sagan"]["R-1"]["sd"] == pytest.approx(
    np.sqrt(((60 - 169 / 3) ** 2 + (51 - 169 / 3) ** 2 + (58 - 169 / 3) ** 2) / 2)
  )
  assert s["sagan"]["viewpoint_error"]["mean"] == pytest.approx(0.3) and "viewpoint_error" not in s["original"]
  assert seeds.summarize({"x": {0: ranked_result("x", 10.0, 5.0)}})["x"]["R-1"]["sd"] == 0.0


def test_claims_paired_differences_sign_counts_and_the_rule():
  claims = {(c["claim"], c["metric"]): c for c in seeds.evaluate_claims(TABLE)}
  over_original = claims[("SA-GAN [M=1] > Original", "R-1")]
  assert over_original["differences"] == [10.0, -1.0, 10.0] and over_original["agree"] == 2
  assert over_original["mean"] == pytest.approx(19 / 3) and over_original["verdict"] == "not settled"
  assert claims[("SA-GAN [M=1] > Original", "mAP")]["verdict"] == "holds"  # +5, +3, +4
  assert claims[("SA-GAN [M=1] > SA-GAN (WD)", "mAP")]["verdict"] == "reversed"  # −1, −1, −1
  # Lower is better for fidelity errors: the difference is WD's minus SA-GAN's.
  wd_view = claims[("SA-GAN (WD) viewpoint_error above SA-GAN [M=1]'s", "viewpoint_error")]
  assert wd_view["differences"] == pytest.approx([0.3, 0.2, 0.6]) and wd_view["verdict"] == "holds"
  assert not any(c.startswith("SA-GAN [M=10]") for c, _ in claims)  # rows not run: no claim
  assert seeds.verdict([1.0, 2.0]) == "not settled"  # fewer than MIN_SEEDS seeds
  assert seeds.verdict([1.0, 0.0, 2.0]) == "not settled"


def test_markdown_shows_mean_sd_and_claims():
  text = seeds.markdown(TABLE, "ablation", {"sagan": "SA-GAN [M=1]", "original": "Original", "wd": "SA-GAN (WD)"})
  assert "| Original | 3 | 50.0 ± 2.0 |" in text
  assert "| SA-GAN [M=1] > Original | R-1 | +10.0, -1.0, +10.0 | +6.3 | 2/3 | not settled |" in text
  assert re.search(r"\| SA-GAN \[M=1\] > SA-GAN \(WD\) \| mAP \| .* \| reversed \|", text)
