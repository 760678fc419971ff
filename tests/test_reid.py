"""IDE ResNet: torchvision conversion against an independent numpy forward, and learning on synthetic ids."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sagan_jax import parallel
from sagan_jax.data import two_camera
from sagan_jax.reid import convert_torchvision, ide
from sagan_jax.reid import train as ide_train
from sagan_jax.reid.resnet import RESNET50_STAGES, ResNet


def torchvision_state_dict(stage_sizes, width, rng, num_classes=1000):
  """A random state dict with torchvision's resnet keys, shapes and layouts (OIHW)."""
  sd = {}

  def conv(name, out_c, in_c, k):
    sd[f"{name}.weight"] = rng.normal(0, np.sqrt(2 / (in_c * k * k)), (out_c, in_c, k, k)).astype(np.float32)

  def bn(name, c):
    sd[f"{name}.weight"] = rng.uniform(0.5, 1.5, c).astype(np.float32)
    sd[f"{name}.bias"] = rng.normal(0, 0.1, c).astype(np.float32)
    sd[f"{name}.running_mean"] = rng.normal(0, 0.1, c).astype(np.float32)
    sd[f"{name}.running_var"] = rng.uniform(0.5, 2.0, c).astype(np.float32)
    sd[f"{name}.num_batches_tracked"] = np.array(7)

  conv("conv1", width, 3, 7)
  bn("bn1", width)
  in_c = width
  for stage, blocks in enumerate(stage_sizes):
    f = width * 2**stage
    for i in range(blocks):
      p = f"layer{stage + 1}.{i}"
      conv(f"{p}.conv1", f, in_c, 1)
      bn(f"{p}.bn1", f)
      conv(f"{p}.conv2", f, f, 3)
      bn(f"{p}.bn2", f)
      conv(f"{p}.conv3", 4 * f, f, 1)
      bn(f"{p}.bn3", 4 * f)
      if i == 0:
        conv(f"{p}.downsample.0", 4 * f, in_c, 1)
        bn(f"{p}.downsample.1", 4 * f)
      in_c = 4 * f
  sd["fc.weight"] = rng.normal(0, 0.01, (num_classes, in_c)).astype(np.float32)
  sd["fc.bias"] = np.zeros(num_classes, np.float32)
  return sd


# --- an independent numpy forward with torch's semantics (NCHW, OIHW, eval-mode batch norm) ---


def _conv(x, w, stride, pad):
  x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
  n, _c, h, wd = x.shape
  o, _, k, _ = w.shape
  oh, ow = (h - k) // stride + 1, (wd - k) // stride + 1
  out = np.zeros((n, o, oh, ow))
  for i in range(k):
    for j in range(k):
      patch = x[:, :, i : i + stride * oh : stride, j : j + stride * ow : stride]
      out += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
  return out


def _bn(x, sd, name):
  scale = sd[f"{name}.weight"] / np.sqrt(sd[f"{name}.running_var"] + 1e-5)
  return (x - sd[f"{name}.running_mean"][None, :, None, None]) * scale[None, :, None, None] + sd[f"{name}.bias"][
    None, :, None, None
  ]


def _maxpool(x):
  x = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
  h, w = (x.shape[2] - 3) // 2 + 1, (x.shape[3] - 3) // 2 + 1
  return np.max([x[:, :, i : i + 2 * h : 2, j : j + 2 * w : 2] for i in range(3) for j in range(3)], axis=0)


def numpy_resnet(sd, x_nchw, stage_sizes):
  relu = lambda v: np.maximum(v, 0)
  x = _maxpool(relu(_bn(_conv(x_nchw, sd["conv1.weight"], 2, 3), sd, "bn1")))
  for stage, blocks in enumerate(stage_sizes):
    for i in range(blocks):
      p = f"layer{stage + 1}.{i}"
      s = 2 if stage > 0 and i == 0 else 1
      y = relu(_bn(_conv(x, sd[f"{p}.conv1.weight"], 1, 0), sd, f"{p}.bn1"))
      y = relu(_bn(_conv(y, sd[f"{p}.conv2.weight"], s, 1), sd, f"{p}.bn2"))
      y = _bn(_conv(y, sd[f"{p}.conv3.weight"], 1, 0), sd, f"{p}.bn3")
      if i == 0:
        x = _bn(_conv(x, sd[f"{p}.downsample.0.weight"], s, 0), sd, f"{p}.downsample.1")
      x = relu(x + y)
  return x.mean(axis=(2, 3))


def test_converted_torchvision_weights_give_the_reference_features(tmp_path):
  stages, width = (2, 1, 1, 1), 8
  sd = torchvision_state_dict(stages, width, np.random.default_rng(0))
  variables = convert_torchvision.convert_state_dict(sd, stages)
  convert_torchvision.save(variables, str(tmp_path / "converted"))
  variables = convert_torchvision.load(str(tmp_path / "converted"))
  x = np.random.default_rng(1).normal(size=(2, 35, 19, 3)).astype(np.float32)  # odd sizes: padding matters
  ours = ResNet(stage_sizes=stages, width=width).apply(variables, jnp.asarray(x), train=False)
  reference = numpy_resnet(sd, x.transpose(0, 3, 1, 2).astype(np.float64), stages)
  assert ours.shape == (2, 4 * width * 8)
  np.testing.assert_allclose(np.asarray(ours), reference, rtol=2e-4, atol=2e-4 * np.abs(reference).max())


def test_resnet50_state_dict_maps_onto_every_parameter():
  sd = torchvision_state_dict(RESNET50_STAGES, 64, np.random.default_rng(0))
  assert len(sd) == 320  # torchvision resnet50().state_dict() has 320 entries
  variables = convert_torchvision.convert_state_dict(sd)
  expected = jax.eval_shape(lambda: ResNet().init(jax.random.key(0), jnp.zeros((1, 256, 128, 3)), train=False))
  assert jax.tree_util.tree_map(np.shape, variables) == jax.tree_util.tree_map(lambda s: s.shape, dict(expected))
  assert (
    sum(np.size(v) for v in jax.tree_util.tree_leaves(variables["params"])) == 25_557_032 - 2_049_000
  )  # torchvision's count minus fc
  sd["layer5.0.conv1.weight"] = sd["conv1.weight"]
  with pytest.raises(KeyError, match=re.escape("layer5.0.conv1.weight")):
    convert_torchvision.convert_state_dict(sd)


def test_converted_backbone_loads_into_the_ide_state_and_a_mismatch_names_the_converter(tmp_path):
  """save → load → create_state puts the converted weights in place; another width is refused."""
  stages = (1, 1, 1, 1)
  variables = convert_torchvision.convert_state_dict(
    torchvision_state_dict(stages, 8, np.random.default_rng(4)), stages
  )
  convert_torchvision.save(variables, str(tmp_path / "backbone"))
  loaded = convert_torchvision.load(str(tmp_path / "backbone"))
  config = ide.ide_config()
  config.image_size, config.stage_sizes, config.width = (32, 16), stages, 8
  model, optimizer = ide.make_model(config, num_classes=3), ide_train.make_optimizer(config, steps_per_epoch=10)
  state = ide.create_state(model, optimizer, config.image_size, 0, parallel.make_mesh(1), pretrained_backbone=loaded)
  kernel = np.asarray(state.params["backbone"]["layer1_0"]["conv2"]["kernel"])
  np.testing.assert_array_equal(kernel, variables["params"]["layer1_0"]["conv2"]["kernel"])
  np.testing.assert_array_equal(
    np.asarray(state.batch_stats["backbone"]["bn1"]["var"]), variables["batch_stats"]["bn1"]["var"]
  )
  config.width = 16
  with pytest.raises(ValueError, match=r"python -m sagan_jax\.reid\.convert_torchvision"):
    ide.create_state(
      ide.make_model(config, 3), optimizer, config.image_size, 0, parallel.make_mesh(1), pretrained_backbone=loaded
    )


def test_two_camera_tables_on_ideal_features():
  """Features that encode the id exactly: every split, both directions, ranks first with 100 queries."""
  rng = np.random.default_rng(0)

  def camera(count, camid):
    pids = np.arange(1, count + 1)
    features = np.eye(800)[pids] + 0.01 * rng.random((count, 800))
    return features, pids, np.full(count, camid)

  prid = two_camera.PROTOCOLS["prid2011"]
  tables = ide.two_camera_tables(prid, camera(385, 1), camera(749, 2))
  for direction in ("a2b", "b2a"):
    assert tables[direction]["mean"]["R-1"] == pytest.approx(100.0)
    assert tables[direction]["mean"]["mAP"] == pytest.approx(100.0)
    assert len(tables[direction]["splits"]) == 10
    assert all(t["num_queries"] == 100 for t in tables[direction]["splits"])
  # Swap two test ids' cam_b features in split 0 only: that split's R-1 drops by exactly 2 queries.
  a, b = two_camera.load_splits()[0]["test"][:2]
  features, pids, cams = camera(749, 2)
  features[[a - 1, b - 1]] = features[[b - 1, a - 1]]
  tables = ide.two_camera_tables(prid, camera(385, 1), (features, pids, cams))
  assert tables["a2b"]["splits"][0]["R-1"] == pytest.approx(98.0)


def test_training_mean_averages_scores_and_keeps_counts():
  """Two trainings' two-camera tables, averaged by hand: scores are means, counts and split numbers stay."""

  def table(r1, m_ap):
    split = {"split": 3, "R-1": r1, "mAP": m_ap, "num_queries": 7}
    return {"a2b": {"mean": {"R-1": r1, "mAP": m_ap}, "splits": [split]}}

  one, two = table(10.0, 20.0), table(15.0, 26.0)
  mean = ide.training_mean([one, two])
  assert mean == table(12.5, 23.0)
  assert isinstance(mean["a2b"]["splits"][0]["split"], int)
  assert ide.training_mean([one]) == one
  with pytest.raises(ValueError, match="different shapes"):
    ide.training_mean([one, {"a2b": {"mean": {"R-1": 1.0}, "splits": []}}])


def test_bfloat16_compute_tracks_float32_features_and_gradients():
  """Same parameters, bfloat16 compute (the stated tolerance): pool5 features within 2 % and nearest
  neighbours kept; the training loss within 1 % and its whole gradient within 10 % (relative norms;
  measured 5.8 %, and 5.0 % with XLA's own convolution gradients: batch norm's backward amplifies
  bfloat16's rounding of the activations either way)."""
  config = ide.ide_config()
  config.stage_sizes, config.width = (1, 1, 1, 1), 16
  f32 = ide.make_model(config, num_classes=10)
  config.dtype = "bfloat16"
  bf16 = ide.make_model(config, num_classes=10)
  x = jax.random.uniform(jax.random.key(1), (16, 64, 32, 3), minval=-1, maxval=1)
  labels = jnp.arange(16) % 10
  variables = f32.init(jax.random.key(0), x, train=False)

  def run(model):
    def loss(params):
      (logits, _), _ = model.apply({**variables, "params": params}, x, train=True, mutable=["batch_stats"])
      return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels).mean()

    @jax.jit
    def features_loss_gradient(variables):
      value, grads = jax.value_and_grad(loss)(variables["params"])
      return (
        model.apply(variables, x, train=False)[1],
        value,
        jnp.concatenate([g.ravel() for g in jax.tree.leaves(grads)]),
      )

    return [np.asarray(v, np.float64) for v in features_loss_gradient(variables)]

  (a, loss32, grad32), (b, loss16, grad16) = run(f32), run(bf16)
  assert abs(loss16 - loss32) < 0.01 * loss32
  assert np.linalg.norm(grad16 - grad32) / np.linalg.norm(grad32) < 0.1
  assert np.linalg.norm(b - a) / np.linalg.norm(a) < 0.02
  d32 = ((a[:, None] - a[None]) ** 2).sum(-1) + np.eye(16) * 1e9
  d16 = ((b[:, None] - b[None]) ** 2).sum(-1) + np.eye(16) * 1e9
  assert (d32.argmin(1) == d16.argmin(1)).mean() >= 0.9
