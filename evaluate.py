"""Re-evaluates a workdir: ``python evaluate.py --config=configs/synthetic.py --workdir=runs/synthetic``.

The command lives in `sagan_jax.experiments.evaluate_main` (also installed as ``sagan-evaluate``).
"""

from sagan_jax.experiments import evaluate_main

if __name__ == "__main__":
  evaluate_main.run()
