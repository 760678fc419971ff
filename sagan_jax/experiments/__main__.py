"""Runs several rows of the paper over seeds.

  python -m sagan_jax.experiments {ablation,msweep} --config=FILE --workdir=DIR

  ablation  Tables I–III: the rows (``--variants``, default the eight variants, ``ws_nomask``,
            WS whose critics do not see the mask, and ``sagan_view``, SA-GAN [M=1]'s images with the
            IDE's ``view`` jitter, M=10's control; ``sagan_one_group`` adds SA-GAN [M=1] with the
            source adapted as one group), for every seed of ``--seeds`` (default 0), one `train.py`
            run each in DIR/seed<S>/<row>; then DIR/ablation.md and DIR/ablation.json: per row the
            mean and sd over seeds, per claim of the paper the paired differences, tests and a
            verdict (`sagan_jax.experiments.claims`). ``--report_only`` runs nothing and tabulates
            the pairs already complete (and lists the others).
  msweep    Fig. 5: SA-GAN with M = 1, 2, 4, 6, 8, 10 spatial codes (``--codes``) per seed in
            DIR/seed<S>/m<M>, then DIR/msweep.json and DIR/msweep.png (mean R-1 against M, ±1 sd band).
            Every M's IDE takes the same number of updates (an epoch counts the source images).
            With ``--view_control`` (the default) each seed also runs the first M's images with the
            IDE's view jitter (``ide.augment=view`` at the config's ``ide.view_range``) in
            DIR/seed<S>/view: the level that more codes must clear to be credited with more than
            random views, a dashed line on the plot and ``view_control`` in the record.

Every other ``--config.<field>=value`` is passed to each run, with ``--config.seed=S``. Runs sharing a
trained SA-GAN (sagan, sagan_m10 and sagan_view of one seed, every M of one seed) train it once: its stage folder
is copied into the later runs' workdirs. A seed-variant pair whose workdir holds its results is not
run again; others resume like `train.py`.

``--jobs=N`` runs up to N of them at once, each writing its console to ``<its workdir>.log``; a run
that shares a GAN starts when the run that trains it has finished. ``--cores_per_job=K`` (Linux) pins
each job to K cores of its own, so N jobs of K threads fill an N·K-core host instead of contending.
One job per accelerator: start one runner per device (``CUDA_VISIBLE_DEVICES=i``) with its own seeds.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
from absl import app, flags
from ml_collections import config_flags
from PIL import Image, ImageDraw

from sagan_jax import cli, fileio, preemption
from sagan_jax.experiments import claims, results
from sagan_jax.experiments import config as config_lib

# The folder holding this package, so a run's subprocess imports the same sagan_jax from any folder.
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Runner rows that are a variant plus overrides.
EXTRA_ROWS = {
  "sagan_one_group": ("sagan", ["--config.data.viewpoint_groups=none"]),
  # WS's critics see the unwarped source mask, whose geometry G1 cannot change: a control without it.
  "ws_nomask": ("ws", ["--config.sagan.critic_mask=none"]),
  # M=1's images with random views the size of the codes' spread: what M=10 must beat to credit its codes.
  "sagan_view": ("sagan", ["--config.ide.augment=view"]),
}
ROW_LABELS = {
  **config_lib.VARIANT_NAMES,
  "sagan_one_group": "SA-GAN [M=1], one group",
  "ws_nomask": "SA-GAN (WS), critics without the mask",
  "sagan_view": "SA-GAN [M=1], IDE with a view jitter",
}
# Rows that translate with the seed's SA-GAN [M=1] (only M or the IDE differs): they copy its trained GAN.
SHARES_GAN = ("sagan_m10", "sagan_view")
# The default rows: every variant, the WS control right after WS and M=10's control right after M=10.
_CONTROLS = {"ws": "ws_nomask", "sagan_m10": "sagan_view"}
ALL_VARIANTS = tuple(v for name in config_lib.VARIANTS for v in (name, *filter(None, [_CONTROLS.get(name)])))
M_VALUES = (1, 2, 4, 6, 8, 10)


def _fail(message: str) -> None:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(cli.USER_ERROR_EXIT)


def _complete(workdir: str) -> dict | None:
  path = os.path.join(workdir, "results.json")
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    return json.load(f)


@dataclasses.dataclass(frozen=True)
class _Job:
  """One `train.py` run of the runner; ``share_from``: the run whose finished GAN it reuses."""

  variant: str
  run_dir: str
  overrides: tuple[str, ...]
  share_from: str | None = None


def _command(config_file: str, job: _Job) -> tuple[list[str], dict]:
  command = [
    sys.executable,
    "-m",
    "sagan_jax.experiments.train_main",
    f"--config={config_file}:variant={job.variant}",
    f"--workdir={job.run_dir}",
    *job.overrides,
  ]
  path = os.pathsep.join(filter(None, [_PACKAGE_PARENT, os.environ.get("PYTHONPATH")]))
  return command, {**os.environ, "PYTHONPATH": path}


def _run(config_file: str, job: _Job) -> dict:
  done = _complete(job.run_dir)
  if done is not None:
    print(f"complete, not run again: {job.run_dir}", flush=True)
    return done
  command, env = _command(config_file, job)
  print("$", " ".join(command), flush=True)
  done = subprocess.run(command, check=False, env=env)
  if done.returncode:
    _fail(
      f"the run in {job.run_dir} stopped with status {done.returncode} (its output is above); rerun this command "
      "to resume it and the rest"
    )
  return _complete(job.run_dir)


def _share_gan(from_workdir: str, to_workdir: str) -> None:
  """Copies a finished SA-GAN stage so another run with the same GAN skips training it."""
  source, target = os.path.join(from_workdir, "sagan"), os.path.join(to_workdir, "sagan")
  if os.path.isdir(source) and not os.path.exists(target):
    os.makedirs(to_workdir, exist_ok=True)
    shutil.copytree(source, target)


def _core_slots(jobs: int, cores_per_job: int) -> list[set[int] | None]:
  """The cores each of ``jobs`` slots is pinned to (None: not pinned), or a one-line error."""
  if cores_per_job == 0:
    return [None] * jobs
  if not hasattr(os, "sched_setaffinity"):
    _fail("--cores_per_job pins processes with sched_setaffinity, which only Linux has: leave it at 0")
  cores = sorted(os.sched_getaffinity(0))
  if jobs * cores_per_job > len(cores):
    _fail(
      f"--jobs={jobs} × --cores_per_job={cores_per_job} needs {jobs * cores_per_job} cores and this process may use "
      f"{len(cores)}: lower one of them"
    )
  return [set(cores[i * cores_per_job : (i + 1) * cores_per_job]) for i in range(jobs)]


def _launch(command: list[str], env: dict, log_path: str, cores: set[int] | None) -> subprocess.Popen:
  os.makedirs(os.path.dirname(log_path), exist_ok=True)
  with open(log_path, "ab") as log:  # the child keeps its own descriptor
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
  if cores:  # before the child's interpreter has started a thread: XLA sizes its pool to this mask
    os.sched_setaffinity(proc.pid, cores)
  return proc


def _name(job: _Job) -> str:
  return os.path.join(os.path.basename(os.path.dirname(job.run_dir)), os.path.basename(job.run_dir))


def _execute(config_file: str, jobs: list[_Job], parallel: int = 1, cores_per_job: int = 0, poll_s: float = 2.0):
  """Runs ``jobs`` (those not complete), one at a time with their output on the console, or up to
  ``parallel`` at once with theirs in ``<run_dir>.log``; returns ``{run_dir: results}``."""
  if parallel <= 1:
    for job in jobs:
      if job.share_from and _complete(job.share_from) is not None:
        _share_gan(job.share_from, job.run_dir)
      _run(config_file, job)
    return {job.run_dir: _complete(job.run_dir) for job in jobs}
  slots = _core_slots(parallel, cores_per_job)
  pending = []
  for job in jobs:
    if _complete(job.run_dir) is not None:
      print(f"complete, not run again: {job.run_dir}", flush=True)
    else:
      pending.append(job)
  total, started = len(pending), 0
  running: dict[int, tuple[subprocess.Popen, _Job, float]] = {}
  failed: list[str] = []

  def stop(signum, frame):  # a SIGTERM to the runner reaches its runs, which save their step and exit
    raise SystemExit(preemption.PREEMPTED_EXIT)

  previous = signal.signal(signal.SIGTERM, stop)
  try:
    while pending or running:
      busy = {job.run_dir for job in pending} | {job.run_dir for _, job, _ in running.values()}
      for job in list(pending):
        free = [i for i in range(parallel) if i not in running]
        if failed or not free:
          break
        if job.share_from in busy:
          continue  # its GAN is still being trained
        if job.share_from and _complete(job.share_from) is not None:
          _share_gan(job.share_from, job.run_dir)
        command, env = _command(config_file, job)
        slot = free[0]
        running[slot] = (_launch(command, env, job.run_dir + ".log", slots[slot]), job, time.monotonic())
        pending.remove(job)
        started += 1
        where = f" on cores {min(slots[slot])}-{max(slots[slot])}" if slots[slot] else ""
        print(f"[{started}/{total}] started {_name(job)}{where}: {job.run_dir}.log", flush=True)
      if failed and not running:
        break
      time.sleep(poll_s)
      for slot, (proc, job, t0) in list(running.items()):
        if proc.poll() is None:
          continue
        del running[slot]
        minutes = (time.monotonic() - t0) / 60
        if proc.returncode == 0 and _complete(job.run_dir) is not None:
          print(f"finished {_name(job)} in {minutes:.1f} min", flush=True)
        else:
          failed.append(f"{job.run_dir} (status {proc.returncode}, its output in {job.run_dir}.log)")
          print(f"stopped {_name(job)} with status {proc.returncode}: the rest finish, none start", flush=True)
  except BaseException:  # Ctrl-C or SIGTERM: each run saves its step and stops, as train.py does on SIGTERM
    for proc, _, _ in running.values():
      proc.terminate()
    for proc, _, _ in running.values():
      proc.wait()
    raise
  finally:
    signal.signal(signal.SIGTERM, previous)
  if failed:
    _fail(f"{len(failed)} run(s) stopped: {'; '.join(failed)}; rerun this command to resume them and the rest")
  return {job.run_dir: _complete(job.run_dir) for job in jobs}


def ablation(
  config_file, workdir, overrides, variants=ALL_VARIANTS, seeds=(0,), report_only=False, jobs=1, cores_per_job=0
):
  """Runs (or with ``report_only`` only collects) every seed-variant pair; writes the tables."""
  table: dict[str, dict[int, dict]] = {}
  missing = []
  planned: list[tuple[str, int, _Job]] = []
  for seed in seeds:
    seed_dir = os.path.join(workdir, f"seed{seed}")
    for row in variants:
      variant, extra = EXTRA_ROWS.get(row, (row, []))
      run_dir = os.path.join(seed_dir, row)
      if report_only:
        done = _complete(run_dir)
        if done is None:
          missing.append(f"{row} seed {seed}")
        else:
          table.setdefault(row, {})[seed] = done
        continue
      gan = os.path.join(seed_dir, "sagan")
      share = gan if row in SHARES_GAN and ("sagan" in variants or _complete(gan) is not None) else None
      planned.append((row, seed, _Job(variant, run_dir, (*overrides, *extra, f"--config.seed={seed}"), share)))
  done = _execute(config_file, [job for _, _, job in planned], jobs, cores_per_job)
  for row, seed, job in planned:
    table.setdefault(row, {})[seed] = done[job.run_dir]
  if not table:
    _fail(f"no complete run under {workdir} for these seeds and variants")
  experiment = next(iter(next(iter(table.values())).values()))["experiment"]
  done_seeds = sorted({s for by_seed in table.values() for s in by_seed})
  text = claims.markdown(table, f"{experiment}: ablation over seeds {', '.join(map(str, done_seeds))}", ROW_LABELS)
  if missing:
    text += f"\nNot run yet (--report_only): {', '.join(missing)}.\n"
  record = {
    "seeds": done_seeds,
    "variants": list(table),
    "missing": missing,
    "summary": claims.summarize(table),
    "claims": claims.evaluate_claims(table),
    "runs": {row: {str(s): r for s, r in by_seed.items()} for row, by_seed in table.items()},
  }
  fileio.write_text_atomic(os.path.join(workdir, "ablation.json"), json.dumps(record, indent=1))
  fileio.write_text_atomic(os.path.join(workdir, "ablation.md"), text)
  print(text)
  return record


def line_plot(xs, ys, path: str, x_label: str, y_label: str, size=(480, 320), spread=None, level=None) -> None:
  """A small PNG line plot (PIL only): points joined by lines, ticks at every x and 5 y values;
  with ``spread`` (one value per point), a shaded band from ys − spread to ys + spread; with
  ``level`` (``(y, label)``), a dashed grey line across the plot at y, labelled at its right end."""
  w, h = size
  left, right, top, bottom = 56, 16, 16, 44
  img = Image.new("RGB", size, "white")
  d = ImageDraw.Draw(img)
  spread = np.zeros(len(ys)) if spread is None else np.asarray(spread, np.float64)
  lo, hi = float(np.min(np.asarray(ys) - spread)), float(np.max(np.asarray(ys) + spread))
  if level is not None:
    lo, hi = min(lo, level[0]), max(hi, level[0])
  pad = max(1.0, 0.1 * (hi - lo))
  lo, hi = lo - pad, hi + pad
  x_of = lambda x: left + (x - min(xs)) / max(1e-9, max(xs) - min(xs)) * (w - left - right)
  y_of = lambda y: top + (hi - y) / (hi - lo) * (h - top - bottom)
  if np.any(spread > 0):
    band = [(x_of(x), y_of(y + e)) for x, y, e in zip(xs, ys, spread)]
    band += [(x_of(x), y_of(y - e)) for x, y, e in reversed(list(zip(xs, ys, spread)))]
    d.polygon(band, fill=(245, 200, 200))
  d.line([(left, top), (left, h - bottom), (w - right, h - bottom)], fill="black")
  for x in xs:
    d.line([(x_of(x), h - bottom), (x_of(x), h - bottom + 4)], fill="black")
    d.text((x_of(x) - 4, h - bottom + 6), f"{x:g}", fill="black")
  for y in np.linspace(lo, hi, 5):
    d.line([(left - 4, y_of(y)), (left, y_of(y))], fill="black")
    d.text((4, y_of(y) - 6), f"{y:.1f}", fill="black")
  if level is not None:
    for x0 in range(left, w - right, 8):
      d.line([(x0, y_of(level[0])), (min(x0 + 4, w - right), y_of(level[0]))], fill=(110, 110, 110))
    d.text((w - right - 6 * len(level[1]), y_of(level[0]) - 14), level[1], fill=(110, 110, 110))
  points = [(x_of(x), y_of(y)) for x, y in zip(xs, ys)]
  d.line(points, fill=(200, 30, 30), width=2)
  for px, py in points:
    d.ellipse([px - 3, py - 3, px + 3, py + 3], fill=(200, 30, 30))
  d.text((w // 2 - 20, h - 18), x_label, fill="black")
  d.text((left + 6, top), y_label, fill="black")
  img.save(path)


def msweep(config_file, workdir, overrides, codes=M_VALUES, seeds=(0,), jobs=1, cores_per_job=0, view_control=True):
  planned: list[tuple[int | str, int, _Job]] = []
  for seed in seeds:
    seed_dir = os.path.join(workdir, f"seed{seed}")
    first = os.path.join(seed_dir, f"m{codes[0]}")
    for m in codes:
      run_overrides = (*overrides, f"--config.sagan.num_codes={m}", f"--config.seed={seed}")
      planned.append(
        (m, seed, _Job("sagan", os.path.join(seed_dir, f"m{m}"), run_overrides, first if m != codes[0] else None))
      )
    if view_control:  # the first M's images under random views, with the same IDE budget
      run_overrides = (
        *overrides,
        f"--config.sagan.num_codes={codes[0]}",
        "--config.ide.augment=view",
        f"--config.seed={seed}",
      )
      planned.append(("view", seed, _Job("sagan", os.path.join(seed_dir, "view"), run_overrides, first)))
  done = _execute(config_file, [job for _, _, job in planned], jobs, cores_per_job)
  r1: dict[int | str, dict[int, dict[str, float]]] = {}
  for m, seed, job in planned:
    r1.setdefault(m, {})[seed] = {group: cells["R-1"] for group, cells in results.table_rows(done[job.run_dir]).items()}
  first_group = next(iter(r1[codes[0]][seeds[0]]))
  values = {m: [r1[m][s][first_group] for s in seeds] for m in r1}
  mean = {m: float(np.mean(v)) for m, v in values.items()}
  sd = {m: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for m, v in values.items()}
  record = {
    "seeds": list(seeds),
    "group": first_group,
    "R-1": {str(m): {"mean": mean[m], "sd": sd[m], "per_seed": values[m]} for m in codes},
  }
  if view_control:
    record["view_control"] = {"M": codes[0], "mean": mean["view"], "sd": sd["view"], "per_seed": values["view"]}
  fileio.write_text_atomic(os.path.join(workdir, "msweep.json"), json.dumps(record, indent=1))
  line_plot(
    list(codes),
    [mean[m] for m in codes],
    os.path.join(workdir, "msweep.png"),
    "M",
    f"R-1 (%) {first_group}, mean ± sd of {len(seeds)}",
    spread=[sd[m] for m in codes],
    level=(mean["view"], f"M = {codes[0]}, view jitter") if view_control else None,
  )
  print(json.dumps(record, indent=1))
  return record


COMMANDS = ("ablation", "msweep")


def _define_flags() -> None:
  """The runner's flags (defined only when run as a command, so importing the module defines none)."""
  cli.define_config_file("config", None, "experiment config file (configs/*.py, without :variant=: the runner sets it)")
  flags.DEFINE_string("workdir", None, "one folder per seed and row: WORKDIR/seed<S>/<row>")
  flags.DEFINE_list("seeds", ["0"], "seeds to run, e.g. 0,1,2,3,4")
  flags.DEFINE_list("variants", list(ALL_VARIANTS), f"ablation rows (also: {', '.join(EXTRA_ROWS)})")
  flags.DEFINE_list("codes", [str(m) for m in M_VALUES], "msweep: the numbers of spatial codes M")
  flags.DEFINE_bool("view_control", True, "msweep: also the first M with the IDE's view jitter, per seed")
  flags.DEFINE_bool("report_only", False, "ablation: run nothing, tabulate the seed-row pairs already complete")
  flags.DEFINE_integer("jobs", 1, "runs at once (each logs to <its workdir>.log); 1: one after another on the console")
  flags.DEFINE_integer("cores_per_job", 0, "Linux: pin each job to this many cores of its own (0: no pinning)")
  flags.mark_flags_as_required(["config", "workdir"])


def _integers(name: str, values, minimum: int, example: str) -> tuple[int, ...]:
  try:
    out = tuple(int(v) for v in values)
  except ValueError:
    out = ()
  if not out or min(out) < minimum:
    _fail(f"--{name}={','.join(values)!r}: expected integers of at least {minimum}, like --{name}={example}")
  return out


def main(argv) -> None:
  if len(argv) != 2 or argv[1] not in COMMANDS:
    raise app.UsageError(f"usage: python -m sagan_jax.experiments {{{','.join(COMMANDS)}}} --config=FILE --workdir=DIR")
  cli.quiet_logging()  # as train.py: no absl INFO lines between the runs' output and the table
  f = flags.FLAGS
  config_file = config_flags.get_config_filename(f["config"])
  if ":" in config_file:
    _fail("--config takes the file only: the runner sets variant=... itself")
  overrides = [f"--config.{k}={v}" for k, v in config_flags.get_override_values(f["config"]).items()]
  if any(o.startswith("--config.seed=") for o in overrides):
    _fail("--config.seed is set per run by the runner: pass --seeds=0,1,2 instead")
  seeds = _integers("seeds", f.seeds, 0, "0,1,2,3,4")
  if f.jobs < 1 or f.cores_per_job < 0:
    _fail(f"--jobs={f.jobs} --cores_per_job={f.cores_per_job}: expected --jobs ≥ 1 and --cores_per_job ≥ 0")
  parallel = {"jobs": f.jobs, "cores_per_job": f.cores_per_job}
  if argv[1] == "ablation":
    bad = [v for v in f.variants if v not in config_lib.VARIANTS and v not in EXTRA_ROWS]
    if bad:
      _fail(f"--variants: unknown {bad}; choose from {', '.join(config_lib.VARIANTS + tuple(EXTRA_ROWS))}")
    ablation(config_file, f.workdir, overrides, tuple(f.variants), seeds, report_only=f.report_only, **parallel)
  else:
    codes = _integers("codes", f.codes, 1, "1,2,4,6,8,10")
    msweep(config_file, f.workdir, overrides, codes, seeds, view_control=f.view_control, **parallel)


if __name__ == "__main__":
  _define_flags()
  app.run(main, flags_parser=cli.parse_flags)
