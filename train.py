"""Trains an experiment end to end: ``python train.py --config=configs/synthetic.py --workdir=runs/synthetic``.

The command lives in `sagan_jax.experiments.train_main` (also installed as ``sagan-train``).
"""

from sagan_jax.experiments import train_main

if __name__ == "__main__":
  train_main.run()
