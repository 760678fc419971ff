"""D1's scores of target images it adapted on, of ones it never saw and of translations: the pieces
of ADA's overfitting heuristic (Karras et al. 2020) in a WGAN critic's terms, which
``python -m bench.critic_overfit`` prints for a finished run.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from sagan_jax.sagan.model import XY

_BATCH = 64


def _in_batches(score, *arrays: np.ndarray | None) -> np.ndarray:
  """``score`` over `_BATCH`-image batches of ``arrays`` (None passes through), the last batch padded
  with copies of its last image: one compiled program for every batch, and the padding is dropped
  (the critics and generators treat each image on its own: layer and instance norm, no batch norm)."""
  n = len(arrays[0])
  out = []
  for i in range(0, n, _BATCH):
    parts = [None if a is None else a[i : i + _BATCH] for a in arrays]
    k = len(parts[0])
    full = [p if p is None or k == _BATCH else np.concatenate([p, np.repeat(p[-1:], _BATCH - k, 0)]) for p in parts]
    out.append(np.asarray(score(*full))[:k])
  return np.concatenate(out)


def real_scores(model, params, images: np.ndarray, cameras: np.ndarray | None = None) -> np.ndarray:
  """``[N]``: D1's scores of target ``images``; ``cameras`` (camera_critics): each image's camera index
  among the adaptation's, so a camera-conditioned D1 judges each image as its own camera."""
  return _in_batches(lambda b, c: _judge_real(model, params, b, c), images, cameras)


# The model is static (equal configs hash alike) and the parameters an argument, so the seen and unseen
# sets, and every later call, reuse one compiled program.
@functools.partial(jax.jit, static_argnums=0)
def _judge_real(model, params, b, cameras):
  return model.judge(params, "D1", b[..., :3], b[..., 3:], cameras)


@functools.partial(jax.jit, static_argnums=0)
def _judge_fake(model, params, b, z, cameras):
  out = model.adapt(params, XY, b[..., :3], model.masks_for_input(b[..., 3:]), z)
  return model.judge(params, "D1", out.adapted, out.mask, cameras)


def fake_scores(model, params, sources: np.ndarray, key: jax.Array) -> np.ndarray:
  """``[N]``: D1's scores of G1(S1(x)) for source images ``sources``. One critic: codes drawn per
  batch. Camera critics: source i takes code i mod K (`SAGAN.fixed_codes`, every camera in turn) and
  is judged as the camera that code names, as training pairs them."""
  n = len(sources)
  if model.num_cameras > 1:
    codes, cameras = np.asarray(model.fixed_codes(key, n)), np.arange(n) % model.num_cameras
  else:
    # One draw per batch, keyed by the batch's first index, as before padding made batches uniform.
    codes = np.concatenate(
      [np.asarray(model.spatial_codes(jax.random.fold_in(key, i), min(_BATCH, n - i))) for i in range(0, n, _BATCH)]
    )
    cameras = None
  return _in_batches(lambda b, z, c: _judge_fake(model, params, b, z, c), sources, codes, cameras)


def overfit_ratio(seen: np.ndarray, unseen: np.ndarray, fake: np.ndarray) -> tuple[float, float]:
  """``(r, z)``: r = (E seen − E unseen) / (E seen − E fake), and seen − unseen in standard errors."""
  gap = seen.mean() - unseen.mean()
  standard_error = np.sqrt(seen.var() / len(seen) + unseen.var() / len(unseen))
  return float(gap / (seen.mean() - fake.mean())), float(gap / standard_error)
