"""Market-1501 → PRID2011 at the paper's scale (`sagan_jax.experiments.config.paper_config` says what to set).

`configs/market2prid.py:variant=...` selects a row of the paper's tables: original, cyclegan,
cyclegan_star, sagan (SA-GAN [M=1]), sagan_m10, wp, wd, ws.
"""

from sagan_jax.experiments.config import paper_config


def get_config(arg=None):
  return paper_config("market2prid", "market", "prid", arg)
