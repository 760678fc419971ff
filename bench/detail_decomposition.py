"""Where a finished synthetic run's held-out `detail_error` (and `pixel_error`) comes from: S1's warp and
G1's pixels, each paired with the truth's other half, and G1's change split into the person and the
background next to it (a table).

    python -m bench.detail_decomposition --config=configs/synthetic.py --workdir=runs/synthetic [--config...]

The flags are the finished run's own (as for `evaluate.py`). Rows, all on the held-out paired set,
each scored against its nearest truth and relative to the untranslated source (as `fidelity.*`):

* G1(S1(x)): the translation under the run's `paired.FINAL_CODES` fixed codes (`fidelity.*` itself,
  or `fidelity.frame` for a run whose IDE learns from a composite, `translate.region`);
* S1's warps, true colours: each code's S1(x), then the target's true colour pipeline: what the
  warps alone cost;
* true warps, G1: x warped into each of the K target views by its true homography (as the truth is
  made), then G1: what G1 alone costs, one "code" per view;
* true warps, true colours: the floor both halves reach together (the truth's rendering differs
  from a warp of the stored source only by resizing and rounding).

Then, in the central view only, G1 on the true warp cut by the truth's person mask: G1's person
on the truth's background, and the truth's person on G1's background. With `detail_error`'s
person-weighted windows the second row scores 0 (the check that the scene beside the person does
not count); under the unweighted windows used before 2026-12-05 it did not. Last, the true views'
corner distances from each other, then per code: its one-hot index (categorical codes; with
`sagan.camera_critics` the target camera it names, in sorted camera-id order), its norm ‖z‖, its
warp's own detail_error (true colours), how far it lands from the nearest true view and from each
view (corner errors in `viewpoint_error`'s unit, averaged over the images): a code whose errors to
two views are each about half their distance sits between them. For the view it lands nearest on
average, that error split in two: the displacement every image shares (where the code lands) and the
images' scatter around it (what the image changes). Last, D_T's real sample: S2 on the truth
rendered in each view, with the same codes, inverted, and its corner error to each view: an S2 that
reads the geometry puts view k's row nearest view k; one that answers from its code alone gives
every row the same numbers (docs/results.md, the eleventh hypothesis).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from sagan_jax import cli, fidelity
from sagan_jax.experiments import monitor, paired, stages
from sagan_jax.models import stm as stm_lib
from sagan_jax.sagan.model import XY, YX

_CONFIG = cli.define_config_file("config", None, "the finished run's config file (configs/*.py)")
_WORKDIR = flags.DEFINE_string("workdir", None, "the finished run's workdir", required=True)
_BATCH = 64


def composites(translated: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
  """``translated`` and ``truth`` ``[N, H, W, 3]`` cut along ``mask`` ``[N, H, W, 1]`` (the truth's person)."""
  return {
    "person": mask * translated + (1 - mask) * truth,
    "background": mask * truth + (1 - mask) * translated,
  }


def main(argv) -> None:
  del argv
  layers = cli.cpu_setup()
  cli.quiet_logging()
  cli.exit_on_user_error(measure, _CONFIG.value, _WORKDIR.value, layers)


def _batched(fn, images: np.ndarray) -> np.ndarray:
  return np.concatenate([np.asarray(fn(jnp.asarray(images[i : i + _BATCH]))) for i in range(0, len(images), _BATCH)])


def measure(config, workdir: str, layers) -> None:
  parts = []
  with stages.opened(config, workdir, layers=layers) as run:
    key = jax.random.key(run.seed("sagan/fidelity"))  # the codes `fidelity.*` was scored with
    for a in run.plan.adaptations:
      pairs = monitor.paired_set(run, a)
      if pairs is None:
        raise SystemExit(f"{workdir}: no paired ground truth (a synthetic benchmark run is needed)")
      if not len(pairs.names):
        continue
      model, params = stages.load_sagan(run, a)
      if not (model.config.spatial and model.config.pixel):
        raise SystemExit(f"{workdir}: the decomposition needs both S1 and G1 (variant {run.config.variant!r})")
      translated, corners = paired.translate_fixed(model, params, pairs, key, paired.FINAL_CODES)
      x, m = pairs.source[..., :3], pairs.source[..., 3:]
      inputs, masks = jnp.asarray(x), model.masks_for_input(jnp.asarray(m))

      @jax.jit
      def s1_warp(z, inputs=inputs, masks=masks, model=model, params=params):
        # S1(x) as in the translation; G1's output is unused, so XLA drops it.
        return model.adapt(params, XY, inputs, masks, jnp.broadcast_to(z, (inputs.shape[0], z.shape[-1]))).spatial

      # Warped first, then recoloured: the truth's order.
      codes = model.fixed_codes(key, paired.FINAL_CODES)
      warp_only = np.stack([paired.true_colours(np.asarray(s1_warp(z))) for z in codes])
      warped = [paired.warp_each(pairs.source, pairs.h_true[:, k]) for k in range(pairs.h_true.shape[1])]
      # G1 on RGB and the warped mask, compiled once for every view.
      g1_of = jax.jit(
        lambda b, model=model, params=params: model.pixel_adapt(
          params, XY.generator, b[..., :3], model.masks_for_input(b[..., 3:])
        )
      )
      g1 = np.stack([_batched(g1_of, w) for w in warped])
      floor = np.stack([paired.true_colours(w[..., :3]) for w in warped])
      parts.append((pairs, translated, warp_only, g1, floor, corners, _back_corners(model, params, pairs, codes)))
  pairs = paired.join([p[0] for p in parts])
  joined = [np.concatenate([p[i] for p in parts], axis=1).astype(np.float32) for i in range(1, 5)]
  corners = np.concatenate([p[5] for p in parts], axis=1)
  back = np.concatenate([p[6] for p in parts], axis=1)
  rows = dict(
    zip(
      (
        "G1(S1(x)): the translation",
        "S1's warps, true colours",
        "true warps, G1",
        "true warps, true colours",
      ),
      (paired.image_scores(pairs, images) for images in joined),
    )
  )
  central = pairs.truth.shape[1] // 2
  truth, mask = pairs.truth[:, central, ..., :3], pairs.truth[:, central, ..., 3:]
  one_view = pairs._replace(truth=pairs.truth[:, central : central + 1], h_true=pairs.h_true[:, central : central + 1])
  g1_central = joined[2][central]
  rows["central view: true warp, G1"] = paired.image_scores(one_view, g1_central[None])
  cut = composites(g1_central, truth, mask)
  rows["central view: G1's person, the truth's background"] = paired.image_scores(one_view, cut["person"][None])
  rows["central view: the truth's person, G1's background"] = paired.image_scores(one_view, cut["background"][None])
  print(f"{len(pairs.names)} held-out paired images, {paired.FINAL_CODES} codes, {pairs.truth.shape[1]} target views")
  print("\n| translation | pixel_error | detail_error |\n|---|---|---|")
  for name, scores in rows.items():
    print(f"| {name} | {scores['pixel_error']:.3f} | {scores['detail_error']:.3f} |")
  # Per code: what its warp alone costs, beside how far it lands from the nearest true view and from
  # each view; the views' distances from each other say whether a code sits between two of them.
  true_corners = fidelity.map_corners(jnp.asarray(pairs.h_true))
  views = pairs.truth.shape[1]
  between = np.asarray(fidelity.corner_errors(jnp.swapaxes(true_corners, 0, 1), true_corners, pairs.reference))
  print("\n| view | " + " | ".join(f"to view {j}" for j in range(views)) + " |\n|---|" + "---|" * views)
  for i in range(views):
    print(f"| view {i} | " + " | ".join(f"{v:.3f}" for v in np.mean(between[i], axis=0)) + " |")
  # A categorical code is a one-hot index; with camera_critics that index names a target camera.
  categorical = model.config.code_distribution == "categorical"
  placements = paired.code_placements(codes, corners, true_corners, pairs.reference, categorical)
  print(
    "\n| code | "
    + ("one-hot index | " if categorical else "")
    + "‖z‖ | S1's warp, true colours: detail_error | nearest true view's corner error | "
    + " | ".join(f"view {j}" for j in range(views))
    + " | its view: offset shared by the images | the images' spread |\n|---|---|---|---|"
    + "---|" * (views + 2 + categorical)
  )
  for k, place in enumerate(placements):
    detail = paired.image_scores(pairs, joined[1][k : k + 1])["detail_error"]
    print(
      f"| {k} | "
      + (f"{place.index} | " if categorical else "")
      + f"{place.norm:.2f} | {detail:.3f} | {place.nearest_error:.3f} | "
      + " | ".join(f"{v:.3f}" for v in place.per_view)
      + f" | {place.offset:.3f} | {place.spread:.3f} |"
    )
  # D_T's real sample: S2 on the ideal translations, inverted. An S2 that reads the geometry puts
  # each rendered view's (T_yx)⁻¹ nearest that view; one that reads only its code, the same row for all.
  print(
    "\n| S2 on the truth in view | (T_yx)⁻¹'s corner error to "
    + " | ".join(f"view {j}" for j in range(views))
    + " |\n|---|"
    + "---|" * views
  )
  for k in range(views):
    errors_k = fidelity.corner_errors(jnp.asarray(back[:, :, k]), true_corners, pairs.reference)  # [M, N, K]
    print(f"| {k} | " + " | ".join(f"{v:.3f}" for v in np.mean(np.asarray(errors_k), axis=(0, 1))) + " |")


def _back_corners(model, params, pairs, codes) -> np.ndarray:
  """``[M, N, K, 4, 2]``: where (T_yx)⁻¹ = S2(truth in view k, code m)⁻¹ sends the corners."""

  @jax.jit
  def one(images, z):
    z = jnp.broadcast_to(z, (images.shape[0], z.shape[-1]))
    p = model.adapt(params, YX, images[..., :3], model.masks_for_input(images[..., 3:]), z).transform
    return paired.warp_corners(model, stm_lib.invert_params(p, model.transform))

  views = pairs.truth.shape[1]
  return np.stack(
    [np.stack([_batched(lambda b, z=z: one(b, z), pairs.truth[:, k]) for k in range(views)], axis=1) for z in codes]
  )


if __name__ == "__main__":
  app.run(main)
