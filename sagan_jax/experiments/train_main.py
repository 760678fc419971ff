"""Trains an experiment end to end: masks → SA-GAN → translation → IDE → evaluation.

  python train.py --config=configs/synthetic.py --workdir=runs/synthetic
  sagan-train --config=configs/market2prid.py:variant=cyclegan --workdir=runs/m2p_cyclegan \
      --config.data.source.manual_dir=... --config.data.target.manual_dir=...

(``train.py``, ``python -m sagan_jax.experiments.train_main`` and the installed ``sagan-train`` are
the same command.) Rerunning the same command resumes; ``--config.stages=ide,evaluate`` runs a subset.
"""

from absl import app, flags

from sagan_jax import cli, runtime
from sagan_jax.experiments import stages

_CONFIG = cli.define_config_file("config", None, "experiment config file (configs/*.py[:variant=...])")
_WORKDIR = flags.DEFINE_string("workdir", None, "directory of this run's checkpoints, pictures and results")
_ALLOW = flags.DEFINE_bool("allow_config_change", False, "continue a workdir made by a different config")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  runtime.configure_host_allocator()  # before the first computation; see sagan_jax/runtime.py
  cli.exit_on_user_error(stages.train, _CONFIG.value, _WORKDIR.value, _ALLOW.value)


def run():
  """The ``sagan-train`` console script."""
  app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
  run()
