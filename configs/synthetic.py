"""The README's main job: the synthetic two-domain benchmark, at a scale a 2-core CPU runs in minutes.

  python train.py --config=configs/synthetic.py --workdir=runs/synthetic
  python train.py --config=configs/synthetic.py:variant=original --workdir=runs/synthetic_original

The benchmark (generated on first use under ``synthetic_benchmark/``) gives both domains ground-truth
masks, so no U-Net is trained. Images are 64×32 (the benchmark's 128×64 crops halved), the networks
narrow (`sagan_jax.experiments.config.cpu_scale`).
"""

import dataclasses

import ml_collections

from sagan_jax.data.synthetic import BenchmarkSpec
from sagan_jax.experiments.config import apply_variant, base_config, cpu_scale, parse_arg, short_budget_recipe


def get_config(arg=None):
  args = parse_arg(arg)
  c = short_budget_recipe(cpu_scale(base_config()))
  c.experiment = "synthetic"
  c.data.synthetic_dir = "synthetic_benchmark"
  c.data.synthetic_spec = ml_collections.ConfigDict(dataclasses.asdict(BenchmarkSpec()))  # 128×64, 100 + 100 ids
  c.data.source.name = c.data.target.name = "market1501"  # both domains are written in Market-1501's layout
  c.data.masks = "data"  # ground-truth masks ship with the benchmark
  # SA-GAN [M=10]'s view control (`ide.augment=view`, the runner's sagan_view row) at the codes' size here:
  # on development seed 7 ten codes put one image 0.036 apart, and ±0.07 moves it 0.036 (`bench/code_spread.py`).
  c.ide.view_range = 0.07
  return apply_variant(c, args.get("variant", "sagan"))
