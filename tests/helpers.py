"""What several test files share: tiny dataset trees, the tiny experiment config, metrics readers.

Tests make their own data; nothing here reads a real dataset.
"""

import importlib.util
import json
import os

import numpy as np
from PIL import Image

from sagan_jax.data import synthetic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_image(path, shape=(8, 4, 3), value=None, seed=0):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  rng = np.random.default_rng(seed)
  array = rng.integers(0, 255, shape, dtype=np.uint8) if value is None else np.full(shape, value, np.uint8)
  Image.fromarray(array if shape[-1] == 3 else array[..., 0]).save(path)


MARKET_FILES = {
  "bounding_box_train": ["0002_c1s1_000451_03.jpg", "0002_c2s1_000551_01.jpg", "0007_c3s2_010101_02.jpg"],
  "query": ["0003_c1s1_000001_00.jpg", "0004_c2s1_000002_00.jpg"],
  "bounding_box_test": [
    "0003_c3s1_000011_00.jpg",
    "0003_c1s1_000012_00.jpg",
    "-1_c1s1_000001_00.jpg",
    "0000_c2s1_000001_00.jpg",
    "0004_c5s1_000003_01.jpg",
  ],
}
DUKE_FILES = {
  "bounding_box_train": ["0001_c2_f0046182.jpg", "0001_c5_f0051341.jpg"],
  "query": ["0005_c2_f0046985.jpg"],
  "bounding_box_test": ["0005_c8_f0172551.jpg", "0009_c7_f0100001.jpg"],
}


def make_tree(manual, root, files, masks=False):
  for folder, names in files.items():
    for i, name in enumerate(names):
      write_image(os.path.join(manual, root, folder, name), seed=i)
      if masks:
        write_image(os.path.join(manual, "masks", root, folder, name[:-4] + ".png"), shape=(8, 4, 1), value=255)
  # Operating-system litter the real archives ship is ignored.
  open(os.path.join(manual, root, "bounding_box_test", "Thumbs.db"), "wb").close()


def make_prid_tree(manual, size=(8, 4, 3)):
  for camera, count in (("cam_a", 385), ("cam_b", 749)):
    for pid in range(1, count + 1):
      write_image(
        os.path.join(manual, "prid_2011", "single_shot", camera, f"person_{pid:04d}.png"), size, value=pid % 251
      )


def market_tree(root, image_modes):
  """A Market-layout tree whose training images come in the given PIL modes (and RGB masks)."""
  from sagan_jax.data import layouts

  names = {
    "bounding_box_train": [f"0002_c1s1_00045{i}_03.jpg" for i in range(len(image_modes))],
    "query": ["0003_c1s1_000001_00.jpg"],
    "bounding_box_test": ["0003_c2s1_000011_00.jpg"],
  }
  rng = np.random.default_rng(0)
  for folder, files in names.items():
    for k, name in enumerate(files):
      mode = image_modes[k] if folder == "bounding_box_train" else "RGB"
      path = os.path.join(root, layouts.MARKET_ROOT, folder, name)
      os.makedirs(os.path.dirname(path), exist_ok=True)
      image = Image.fromarray(rng.integers(0, 255, (16, 8, 3), dtype=np.uint8)).convert(mode)
      if mode in ("RGBA", "P"):  # a PNG under the dataset's .jpg name, as converted copies leave them
        image.save(path, format="PNG")
      else:
        image.save(path, format="JPEG")
      mask = np.zeros((16, 8, 3), np.uint8)
      mask[4:12, 2:6] = (200, 180, 250)  # an RGB mask with soft values
      mask_path = os.path.join(root, "masks", layouts.MARKET_ROOT, folder, name[:-4] + ".png")
      os.makedirs(os.path.dirname(mask_path), exist_ok=True)
      Image.fromarray(mask).save(mask_path)
  return names


def tiny_config(bench_dir, variant="sagan"):
  """tests/tiny_config.py (configs/synthetic.py shrunk) on the benchmark generated in ``bench_dir``."""
  spec = importlib.util.spec_from_file_location("tiny_config", os.path.join(ROOT, "tests", "tiny_config.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config(f"variant={variant}")
  c.data.synthetic_dir = str(bench_dir)
  return c


def read_metrics(path):
  """step → the last record logged for it (a resumed run logs the steps after its checkpoint again)."""
  out = {}
  with open(path) as f:
    for line in f:
      record = json.loads(line)
      out[record["step"]] = record
  return out


# A source seen from two heights (the last two cameras as high as the target's): two viewpoint groups.
TWO_HEIGHTS = synthetic.BenchmarkSpec(
  height=64,
  width=32,
  train_ids=10,
  test_ids=6,
  num_cameras=4,
  images_per_camera=3,
  distractors=2,
  junk=1,
  seed=5,
  paired_images=24,
  source_high_cameras=2,
)


def ranked_result(variant, r1, mapv, viewpoint=None):
  """A results.json of one run, as the evaluate stage writes it (query/gallery protocol)."""
  out = {
    "experiment": "synthetic",
    "variant": variant,
    "protocol": "query_gallery",
    "target": "market1501",
    "tables": {"query_gallery": {"R-1": r1, "R-5": r1 + 5, "R-10": r1 + 8, "mAP": mapv}},
    "settings": {"normalize_features": True, "flip_average": False, "ap_mode": "step", "num_codes": 1},
  }
  if viewpoint is not None:
    out["fidelity"] = {"pixel_error": 0.5, "viewpoint_error": viewpoint, "code_diversity": 0.1}
  return out


# The `tiny_benchmark` fixture's spec (tests/conftest.py): three cameras, paired ground truth.
TINY = synthetic.BenchmarkSpec(
  height=32, width=16, train_ids=6, test_ids=4, num_cameras=3, distractors=3, junk=2, seed=5
)


def toy_people(key, n, size=(32, 16)):
  """``(images, masks)``: dark background, a coloured torso and a head at jittered positions."""
  import jax
  import jax.numpy as jnp

  k1, k2, k3 = jax.random.split(key, 3)
  ys, xs = jnp.meshgrid(jnp.linspace(-1, 1, size[0]), jnp.linspace(-1, 1, size[1]), indexing="ij")
  cx = jax.random.uniform(k1, (n, 1, 1), minval=-0.1, maxval=0.1)
  cy = jax.random.uniform(k2, (n, 1, 1), minval=-0.1, maxval=0.1)
  colour = jax.random.uniform(k3, (n, 1, 1, 3), minval=0.2, maxval=1.0)
  body = (jnp.abs(xs - cx) < 0.35) & (ys - cy > -0.45) & (ys - cy < 0.75)
  head = ((xs - cx) / 0.25) ** 2 + ((ys - cy + 0.65) / 0.15) ** 2 < 1
  mask = (body | head).astype(jnp.float32)[..., None]
  return (mask * colour + (1 - mask) * 0.1) * 2 - 1, mask
