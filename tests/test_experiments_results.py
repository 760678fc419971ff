"""Results tables in the paper's layout."""

from sagan_jax.experiments import results


def test_results_table_in_the_papers_prid_layout():
  mean = lambda r1: {"R-1": r1, "R-5": r1 + 10, "R-10": r1 + 20, "mAP": r1 / 2}
  result = {
    "experiment": "duke2prid",
    "variant": "sagan_m10",
    "protocol": "two_camera",
    "target": "prid2011",
    "tables": {"a2b": {"mean": mean(10.0)}, "b2a": {"mean": mean(30.0)}},
    "settings": {"normalize_features": False, "flip_average": True, "ap_mode": "step", "num_codes": 10},
  }
  text = results.markdown([result], "Table III")
  assert "| Method | PRID-CamA R-1 | PRID-CamA R-5 | PRID-CamA R-10 | PRID-CamA mAP | PRID-CamB R-1 |" in text
  assert "| SA-GAN [M=10] | 10.0 | 20.0 | 30.0 | 5.0 | 30.0 | 40.0 | 50.0 | 15.0 |" in text
  assert "flip-averaged" in text and "L2" not in text
  # Row labels carry the M a run actually used (the M sweep overrides num_codes of "sagan").
  label = lambda variant, codes: results.method_name({"variant": variant, "settings": {"num_codes": codes}})
  assert [label("sagan", 4), label("sagan_m10", 10), label("ws", 1), label("wd", 3), label("original", 0)] == [
    "SA-GAN [M=4]",
    "SA-GAN [M=10]",
    "SA-GAN (WS)",
    "SA-GAN (WD) [M=3]",
    "Original",
  ]
