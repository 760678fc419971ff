"""Which loss terms drive SA-GAN's X→Y translation, and where: a table of gradient norms.

    python -m bench.translation_gradients --config=configs/synthetic.py --workdir=runs/synthetic [--config.<field>=...]

For the untrained networks (the config's seed) and for the workdir's latest SA-GAN checkpoint,
on a few batches of the synthetic benchmark's paired source images, each weighted term of eq. 7
(X→Y direction) is differentiated

* with respect to G1's output G1(S1(x)): the mean per-image gradient norm (what shapes the pixels);
* with respect to T_xy's parameters p (S1's output): the mean norm, and the cosine between the
  descent direction −∇p and the way to the true homography, log(H_true) − p (what moves the
  viewpoint; > 0 helps, < 0 pulls away).
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from absl import app, flags
from ml_collections import config_flags

from sagan_jax import checkpoint, losses, parallel
from sagan_jax.data import pipeline
from sagan_jax.experiments import paired
from sagan_jax.experiments.datasets import Datasets
from sagan_jax.sagan import SAGAN
from sagan_jax.sagan import steps as sagan_steps
from sagan_jax.sagan import train as sagan_train
from sagan_jax.sagan.model import XY

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "a workdir whose SA-GAN stage ran (its latest checkpoint is read)")
_BATCHES = flags.DEFINE_integer("batches", 4, "batches of 8 paired images per measurement")


def _terms(model, params, x, mx, y, my, z, p, adapted=None):
  """The weighted X→Y terms of eq. 7 as functions of T_xy's parameters ``p`` (and G1's output)."""
  c = model.config
  a = model.adapt(params, XY, x, mx, z, transform=p)
  if adapted is not None:
    a = a._replace(adapted=adapted)
  out = {
    "adversarial D1": losses.wgan_generator_loss(
      model._critic_scores(params, "D1", jnp.concatenate([a.adapted, a.mask], -1))
    )
  }
  if "DT1" in params:
    out["adversarial DT1"] = losses.wgan_generator_loss(model._spatial_scores(params, "DT1", a.transform))
  _, cycle = model._cycle_loss(params, XY, x, mx, a, z)
  for name, value in cycle.items():
    out[name.upper()] = c.lambda_cyc * (c.lambda_pcl if name == "pcl" else 1.0) * value
  out["identity (eq. 5)"] = c.lambda_idt * model._identity_loss(params, XY, a, y, my)
  if model.uses_siamese:
    images = {"x": x, "x_s": a.spatial, "x_adp": a.adapted, "y": y, "y_s": y, "y_adp": y}
    out["Siamese"] = c.lambda_siam * model.siamese_losses(params, images)["x"]
  return out


def measure(model, params, batches, p_true):
  rows = {}
  for k, (x, mx, y, my) in enumerate(batches):
    z = model.spatial_codes(jax.random.key(k), x.shape[0])
    p = model.stm.apply({"params": params["S1"]}, jnp.concatenate([x, mx], -1), z)
    a = model.adapt(params, XY, x, mx, z)
    names = list(_terms(model, params, x, mx, y, my, z, p))
    for name in names:
      g_img = jax.grad(lambda img: _terms(model, params, x, mx, y, my, z, p, adapted=img)[name])(a.adapted)
      g_p = jax.grad(lambda q: _terms(model, params, x, mx, y, my, z, q)[name])(p)
      to_truth = p_true[None] - p
      cos = -jnp.sum(g_p * to_truth, -1) / (jnp.linalg.norm(g_p, axis=-1) * jnp.linalg.norm(to_truth, axis=-1) + 1e-12)
      rows.setdefault(name, []).append(
        (
          float(jnp.mean(jnp.linalg.norm(g_img.reshape(x.shape[0], -1), axis=-1))),
          float(jnp.mean(jnp.linalg.norm(g_p, axis=-1))),
          float(jnp.mean(cos)),
        )
      )
  return {name: np.mean(v, axis=0) for name, v in rows.items()}


def main(argv):
  del argv
  config = _CONFIG.value
  model, tx = SAGAN(config.sagan), sagan_train.optimizers(config.sagan, config.sagan_train.steps)
  if not config.sagan.spatial:
    sys.exit("this table needs a configuration with spatial transformers")
  datasets = Datasets(config)
  datasets.ensure_synthetic()
  pairs = paired.load(datasets.synthetic_dir, tuple(config.sagan.image_size), "train")  # the GAN's own inputs
  y_source, y_idx = datasets.builder("target").as_data_source("train"), None  # the synthetic target's training split
  targets = next(
    pipeline.eval_batches(
      y_source,
      batch_size=8 * _BATCHES.value,
      image_size=tuple(config.sagan.image_size),
      indices=y_idx,
      masks=datasets.mask_mode,
    )
  )[0]["image"]
  batches = [
    (
      jnp.asarray(pairs.source[8 * k : 8 * k + 8, ..., :3]),
      jnp.asarray(pairs.source[8 * k : 8 * k + 8, ..., 3:]),
      jnp.asarray(targets[8 * k : 8 * k + 8, ..., :3]),
      jnp.asarray(targets[8 * k : 8 * k + 8, ..., 3:]),
    )
    for k in range(_BATCHES.value)
  ]
  log_h = scipy.linalg.logm(np.asarray(pairs.h_central[0], np.float64)).real  # the central view of a low image
  p_true = jnp.asarray(
    [log_h[0, 0], log_h[0, 1], log_h[0, 2], log_h[1, 0], log_h[1, 1], log_h[1, 2], log_h[2, 0], log_h[2, 1]],
    jnp.float32,
  )
  mesh = parallel.make_mesh()
  fresh = sagan_steps.create_state(model, tx, config.seed)
  states = {"untrained": fresh.params}
  with checkpoint.StageCheckpoints(f"{_WORKDIR.value}/sagan/checkpoints") as ckpt:
    step = ckpt.latest_step()
    if step is not None:
      trained, _ = ckpt.restore(jax.device_put(fresh, parallel.replicated(mesh)))
      states[f"step {step}"] = parallel.local_copy(trained.params)
  print("| state | term | ‖∂/∂G1(S1(x))‖ | ‖∂/∂p‖ | cos(−∂/∂p, to truth) |")
  print("|---|---|---|---|---|")
  for label, params in states.items():
    for name, (g_img, g_p, cos) in measure(model, params, batches, p_true).items():
      print(f"| {label} | {name} | {g_img:.4f} | {g_p:.4f} | {cos:+.2f} |")


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main)
