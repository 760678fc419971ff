"""Trains an experiment end to end: masks → SA-GAN → translation → IDE → evaluation.

  python train.py --config=configs/synthetic.py --workdir=runs/synthetic
  sagan-train --config=configs/market2prid.py:variant=cyclegan --workdir=runs/m2p_cyclegan \
      --config.data.source.manual_dir=... --config.data.target.manual_dir=...

(``train.py``, ``python -m sagan_jax.experiments.train_main`` and the installed ``sagan-train`` are
the same command.) Rerunning the same command resumes; ``--config.stages=ide,evaluate`` runs a subset;
``--plan`` (or ``--plan=json``) prints the adaptations and evaluations and exits.
"""

from absl import app, flags

from sagan_jax import cli
from sagan_jax.experiments import stages

_CONFIG = cli.define_config_file("config", None, "experiment config file (configs/*.py[:variant=...])")
_WORKDIR = flags.DEFINE_string("workdir", None, "directory of this run's checkpoints, pictures and results")
_ALLOW = flags.DEFINE_bool("allow_config_change", False, "continue a workdir made by a different config")
_PLAN = flags.DEFINE_enum(
  "plan",
  None,
  ["text", "json"],
  "print the run's adaptations and evaluations and exit, writing nothing to the workdir (--plan or --plan=json)",
)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  layers = cli.cpu_setup()
  cli.quiet_logging()
  if _PLAN.value:
    cli.exit_on_user_error(stages.show_plan, _CONFIG.value, _WORKDIR.value, _PLAN.value)
    return
  cli.exit_on_user_error(stages.train, _CONFIG.value, _WORKDIR.value, _ALLOW.value, layers=layers)


def _parse(argv):
  # A bare --plan means the text plan; absl's enum flags need a value.
  return cli.parse_flags(["--plan=text" if a == "--plan" else a for a in argv])


def run():
  """The ``sagan-train`` console script."""
  app.run(main, flags_parser=_parse)


if __name__ == "__main__":
  run()
