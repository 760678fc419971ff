"""D1's scores of target images it adapted on, of ones it never saw and of translations: the pieces
of ADA's overfitting heuristic (Karras et al. 2020) in a WGAN critic's terms, which
``python -m bench.critic_overfit`` prints for a finished run.
"""

from __future__ import annotations

import jax
import numpy as np

from sagan_jax.sagan.model import XY

_BATCH = 64


def real_scores(model, params, images: np.ndarray, cameras: np.ndarray | None = None) -> np.ndarray:
  """``[N]``: D1's scores of target ``images``; ``cameras`` (camera_critics): each image's camera index
  among the adaptation's, so a camera-conditioned D1 judges each image as its own camera."""
  judge = jax.jit(lambda b, c: model.judge(params, "D1", b[..., :3], b[..., 3:], c))
  batches = range(0, len(images), _BATCH)
  return np.concatenate(
    [np.asarray(judge(images[i : i + _BATCH], None if cameras is None else cameras[i : i + _BATCH])) for i in batches]
  )


def fake_scores(model, params, sources: np.ndarray, key: jax.Array) -> np.ndarray:
  """``[N]``: D1's scores of G1(S1(x)) for source images ``sources``. One critic: codes drawn per
  batch. Camera critics: source i takes code i mod K (`SAGAN.fixed_codes`, every camera in turn) and
  is judged as the camera that code names, as training pairs them."""

  @jax.jit
  def fake(b, z, cameras):
    out = model.adapt(params, XY, b[..., :3], model.masks_for_input(b[..., 3:]), z)
    return model.judge(params, "D1", out.adapted, out.mask, cameras)

  conditioned = model.num_cameras > 1
  codes = model.fixed_codes(key, len(sources)) if conditioned else None
  scores = []
  for i in range(0, len(sources), _BATCH):
    b = sources[i : i + _BATCH]
    if conditioned:
      z, cameras = codes[i : i + len(b)], np.arange(i, i + len(b)) % model.num_cameras
    else:
      z, cameras = model.spatial_codes(jax.random.fold_in(key, i), len(b)), None
    scores.append(np.asarray(fake(b, z, cameras)))
  return np.concatenate(scores)


def overfit_ratio(seen: np.ndarray, unseen: np.ndarray, fake: np.ndarray) -> tuple[float, float]:
  """``(r, z)``: r = (E seen − E unseen) / (E seen − E fake), and seen − unseen in standard errors."""
  gap = seen.mean() - unseen.mean()
  standard_error = np.sqrt(seen.var() / len(seen) + unseen.var() / len(unseen))
  return float(gap / (seen.mean() - fake.mean())), float(gap / standard_error)
