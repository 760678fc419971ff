"""Evaluates a workdir's IDE model on its config's target protocol; prints the table, writes results.json.

  python evaluate.py --config=configs/synthetic.py --workdir=runs/synthetic [--rank_vis=20]

(``evaluate.py``, ``python -m sagan_jax.experiments.evaluate_main`` and the installed
``sagan-evaluate`` are the same command.)
"""

from absl import app, flags

from sagan_jax import cli
from sagan_jax.experiments import stages

_CONFIG = cli.define_config_file("config", None, "experiment config file (configs/*.py[:variant=...])")
_WORKDIR = flags.DEFINE_string("workdir", None, "the run's directory (with ide/checkpoints)")
_RANK_VIS = flags.DEFINE_integer(
  "rank_vis", 0, "write top-10 ranked-list PNGs of this many queries to WORKDIR/rank_vis"
)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  layers = cli.cpu_setup()
  cli.quiet_logging()

  def evaluate():
    with stages.opened(_CONFIG.value, _WORKDIR.value, layers=layers) as run:
      stages.stage_evaluate(run, rank_vis=_RANK_VIS.value)

  cli.exit_on_user_error(evaluate)


def run():
  """The ``sagan-evaluate`` console script."""
  app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
  run()
