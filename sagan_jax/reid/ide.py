"""The IDE model's pieces: its config section, state, train step and feature extraction, jit-compiled
over the ``("data",)`` mesh (the batch is sharded, so batch-norm statistics are global), and the
ranking tables of a target protocol. `sagan_jax.reid.train` trains it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.experimental import multihost_utils

from sagan_jax import parallel, runtime
from sagan_jax.data import pipeline, two_camera
from sagan_jax.models.layers import Layers
from sagan_jax.reid import augment as augment_lib
from sagan_jax.reid import metrics
from sagan_jax.reid.resnet import IDE, imagenet_normalize


def ide_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.image_size = (256, 128)  # paper, Section IV-B
  c.stage_sizes = (3, 4, 6, 3)  # ResNet-50
  c.width = 64
  c.dtype = "float32"  # compute dtype ("float32" or "bfloat16"); parameters stay float32
  c.batch_size = 128  # paper
  c.epochs = 50  # paper; in an experiment an epoch is one pass over the source images' count, whatever M is
  c.learning_rate = 0.01  # paper
  c.lr_decay_epochs = (25,)  # paper: divided by 10 after epoch 25
  c.momentum = 0.9  # paper
  c.weight_decay = 5e-4  # our choice: the standard IDE value (the paper gives none)
  c.flip = True  # paper: random horizontal flips
  # paper; "camera" / "camera_gains": random colour response and viewpoint per image; "view": a small viewpoint
  # only (`sagan_jax.reid.augment`)
  c.augment = "none"
  c.view_range = augment_lib.VIEW.warp  # ``"view"``'s sl(3) range, read by that augmentation only
  c.pretrained = ""  # a converted torchvision ResNet-50 (`python -m sagan_jax.reid.convert_torchvision`)
  return c


@flax.struct.dataclass
class IDEState:
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any


def make_model(config: ml_collections.ConfigDict, num_classes: int, layers: Layers = Layers()) -> IDE:
  """The IDE of ``config``; ``layers``: flax's by default, `sagan_jax.cpu.layers` on a CPU host (same parameters)."""
  return IDE(
    num_classes=num_classes,
    stage_sizes=tuple(config.stage_sizes),
    width=config.width,
    dtype=jnp.dtype(config.dtype),
    conv=layers.conv,
    max_pool=layers.max_pool,
  )


def create_state(
  model: IDE,
  optimizer: optax.GradientTransformation,
  image_size,
  seed: int,
  mesh: jax.sharding.Mesh | None = None,
  pretrained_backbone: dict | None = None,
) -> IDEState:
  """Fresh (or backbone-pretrained) IDE state, replicated over ``mesh`` when one is given."""
  variables = runtime.jit_init(functools.partial(model.init, train=False))(
    jax.random.key(seed), jnp.zeros((1, *image_size, 3), jnp.float32)
  )
  params, batch_stats = variables["params"], variables["batch_stats"]
  if pretrained_backbone is not None:
    params = {**params, "backbone": _checked_like(params["backbone"], pretrained_backbone["params"], "params")}
    batch_stats = {
      **batch_stats,
      "backbone": _checked_like(batch_stats["backbone"], pretrained_backbone["batch_stats"], "batch_stats"),
    }
  state = IDEState(
    step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats, opt_state=optimizer.init(params)
  )
  return state if mesh is None else jax.device_put(state, parallel.replicated(mesh))


def _checked_like(reference, loaded, what: str):
  ref_shapes = jax.tree_util.tree_map(np.shape, reference)
  got_shapes = jax.tree_util.tree_map(np.shape, loaded)
  if ref_shapes != got_shapes:
    raise ValueError(
      f"pretrained backbone {what} do not match the configured ResNet (stage_sizes/width); "
      "convert a torchvision ResNet-50 with `python -m sagan_jax.reid.convert_torchvision`"
    )
  return jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), loaded)


def make_train_step(
  model: IDE,
  optimizer: optax.GradientTransformation,
  mesh: jax.sharding.Mesh,
  augment: str = "none",
  seed: int = 0,
  view_range: float = augment_lib.VIEW.warp,
):
  """``step(state, images[B,H,W,≥3] in [-1, 1], labels[B]) → (state, metrics)``, jit over the mesh.

  ``augment="camera"``, ``"camera_gains"`` or ``"view"`` (at ±``view_range``) transforms each image
  at random first (`sagan_jax.reid.augment`), with a key from ``seed`` and the step count, so a
  resumed run draws what an uninterrupted one would.
  """
  if augment not in augment_lib.AUGMENTS:
    raise ValueError(f"ide.augment must be one of {augment_lib.AUGMENTS}, got {augment!r}")
  ranges = None if augment == "none" else augment_lib.ranges(augment, view_range)

  def step(state: IDEState, images, labels):
    images = images[..., :3]
    if augment != "none":
      key = jax.random.fold_in(jax.random.key(seed), state.step)
      images = augment_lib.camera(key, images, ranges)
    x = imagenet_normalize(images)

    def loss_fn(params):
      (logits, _), updates = model.apply(
        {"params": params, "batch_stats": state.batch_stats}, x, train=True, mutable=["batch_stats"]
      )
      loss = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels).mean()
      return loss, (logits, updates["batch_stats"])

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    accuracy = jnp.mean(jnp.argmax(logits, -1) == labels)
    new_state = IDEState(step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state)
    return new_state, {"loss": loss, "accuracy": accuracy}

  rep, data = parallel.replicated(mesh), parallel.batch_sharded(mesh)
  return jax.jit(step, in_shardings=(rep, data, data), out_shardings=(rep, rep), donate_argnums=0)


def make_feature_fn(model: IDE, mesh: jax.sharding.Mesh, normalize: bool, flip_average: bool):
  """``features(params, batch_stats, images) → pool5 [B, D]`` (eval-mode batch norm), jit over the mesh."""

  def features(params, batch_stats, images):
    x = imagenet_normalize(images[..., :3])
    _, f = model.apply({"params": params, "batch_stats": batch_stats}, x, train=False)
    if flip_average:
      _, f_flip = model.apply({"params": params, "batch_stats": batch_stats}, x[:, :, ::-1], train=False)
      f = (f + f_flip) / 2
    if normalize:
      f = f / jnp.maximum(jnp.linalg.norm(f, axis=-1, keepdims=True), 1e-12)
    return f

  rep, data = parallel.replicated(mesh), parallel.batch_sharded(mesh)
  jitted = jax.jit(features, in_shardings=(rep, rep, data), out_shardings=data)
  # Host images are placed explicitly: jit refuses numpy inputs with a sharding in multi-process runs.
  return lambda params, batch_stats, images: jitted(params, batch_stats, jax.device_put(images, data))


class Stopped(Exception):
  """Feature extraction stopped early because ``stop()`` asked it to (SIGTERM)."""


def extract(feature_fn, state: IDEState, batches: Iterable[tuple[dict[str, np.ndarray], int]], stop=None):
  """Runs `feature_fn` over `sagan_jax.data.pipeline.eval_batches`; returns (features, pids, camids).

  ``stop``: polled after every batch; when it returns True, `Stopped` is raised.
  """
  feats, pids, cams = [], [], []
  for k, (batch, valid) in enumerate(batches):
    if k and stop is not None and stop():
      raise Stopped(f"stopped after {k} batches")
    # Kept on device until the end: converting here would wait for each batch before dispatching the next.
    feats.append((feature_fn(state.params, state.batch_stats, batch["image"]), valid))
    pids.append(batch["person_id"][:valid])
    cams.append(batch["camera_id"][:valid])
  features = np.concatenate([np.asarray(f)[:valid] for f, valid in feats])
  return features, np.concatenate(pids), np.concatenate(cams)


def extract_split(
  feature_fn, state: IDEState, source, *, batch_size: int, image_size, stop=None
) -> tuple[np.ndarray, ...]:
  """`extract` over a whole split, shared by the processes of a multi-host run; every process gets it all.

  ``feature_fn`` must run on this process's devices (`make_feature_fn` over a mesh of
  ``jax.local_devices()``, ``state`` a local copy). Process ``p`` of ``P`` computes batches
  ``p, p + P, ...``; the pieces are then gathered, so the result equals a single process's.
  """
  n, num_procs, me = len(source), jax.process_count(), jax.process_index()
  starts = list(range(0, n, batch_size))
  rows = lambda proc: [np.arange(s, min(s + batch_size, n)) for s in starts[proc::num_procs]]
  mine = np.concatenate(rows(me) or [np.zeros(0, np.int64)])
  batches = pipeline.eval_batches(source, batch_size=batch_size, image_size=image_size, indices=mine, masks="unused")
  features, pids, cams = extract(feature_fn, state, batches, stop) if len(mine) else (None, None, None)
  if num_procs == 1:
    return features, pids, cams
  if features is None:  # more processes than batches: this one contributes nothing
    dim = jax.eval_shape(
      lambda: feature_fn(state.params, state.batch_stats, np.zeros((batch_size, *image_size, 3), np.float32))
    ).shape[-1]
    features, pids, cams = np.zeros((0, dim), np.float32), np.zeros(0, np.int32), np.zeros(0, np.int32)
  padded_rows = -(-len(starts) // num_procs) * batch_size  # the most rows any process holds
  pad = lambda a: np.concatenate([a, np.zeros((padded_rows - len(a), *a.shape[1:]), a.dtype)])
  gathered = multihost_utils.process_allgather((pad(features), pad(pids), pad(cams)), tiled=False)
  out = [np.empty((n, *np.shape(g)[2:]), np.asarray(g).dtype) for g in gathered]
  for proc in range(num_procs):
    index = np.concatenate(rows(proc) or [np.zeros(0, np.int64)])
    for o, g in zip(out, gathered):
      o[index] = np.asarray(g)[proc, : len(index)]
  return tuple(out)


def rank_table(query, gallery, ap_mode: str = "step", ranks=(1, 5, 10, 20), backend: str = "auto") -> dict[str, float]:
  """R-k and mAP (in %) of query/gallery ``(features, pids, camids)`` triples, by Euclidean distance.

  ``backend``: where distances and ranks are computed (`metrics.evaluate_features`).
  """
  cmc, mean_ap, details = metrics.evaluate_features(
    query[0],
    gallery[0],
    query[1],
    gallery[1],
    query[2],
    gallery[2],
    max_rank=max(ranks),
    ap_mode=ap_mode,
    return_details=True,
    backend=backend,
  )
  table = {f"R-{k}": 100.0 * float(cmc[k - 1]) for k in ranks}
  table["mAP"] = 100.0 * mean_ap
  table["num_queries"] = details["num_queries"]
  table["num_skipped_queries"] = details["num_skipped"]
  return table


def two_camera_tables(
  protocol: two_camera.Protocol, cam_a, cam_b, ap_mode: str = "step", backend: str = "auto", splits=None
) -> dict[str, Any]:
  """A two-camera target's seeded splits (all, or ``splits``) in both directions, per split and averaged.

  ``cam_a``/``cam_b``: ``(features, pids, camids)`` of every image of each camera, in the order of
  the dataset's ``cam_a``/``cam_b`` splits (features are computed once, the protocol slices them).
  Each per-split table carries its ``split``; `split_mean` averages tables of several calls.
  """
  all_splits = protocol.splits(cam_a[1], cam_b[1])
  splits = list(range(len(all_splits))) if splits is None else list(splits)
  out: dict[str, Any] = {}
  for direction in two_camera.DIRECTIONS:
    query_set, gallery_set = (cam_a, cam_b) if direction == "a2b" else (cam_b, cam_a)
    per_split = []
    for split in splits:
      idx = protocol.indices(cam_a[1], cam_b[1], all_splits[split], direction)
      take = lambda triple, rows: tuple(np.asarray(t)[rows] for t in triple)
      table = rank_table(take(query_set, idx["query"]), take(gallery_set, idx["gallery"]), ap_mode, backend=backend)
      per_split.append({"split": split, **table})
    out[direction] = {"splits": per_split}
  return split_mean(out)


def split_mean(tables: dict[str, Any]) -> dict[str, Any]:
  """Adds each direction's ``mean`` over its ``splits`` (sorted by split)."""
  out = {}
  for direction, entry in tables.items():
    per_split = sorted(entry["splits"], key=lambda t: t["split"])
    keys = [k for k in per_split[0] if not k.startswith("num_") and k != "split"]
    out[direction] = {"mean": {k: float(np.mean([t[k] for t in per_split])) for k in keys}, "splits": per_split}
  return out


def training_mean(tables: Sequence[Any]) -> Any:
  """The mean of several trainings' tables of one shape (`rank_table`, `two_camera_tables`), leaf by
  leaf; counts and split numbers, the same in every training, stay as they are."""
  first = tables[0]
  if isinstance(first, dict):
    if any(set(t) != set(first) for t in tables):
      raise ValueError(f"tables of different shapes: keys {sorted(first)} and {[sorted(t) for t in tables[1:]]}")
    return {k: training_mean([t[k] for t in tables]) for k in first}
  if isinstance(first, (list, tuple)):
    if any(len(t) != len(first) for t in tables):
      raise ValueError(f"tables of different shapes: lists of {[len(t) for t in tables]} entries")
    return [training_mean(list(parts)) for parts in zip(*tables, strict=True)]
  if all(t == first for t in tables):
    return first
  return float(np.mean(tables))
