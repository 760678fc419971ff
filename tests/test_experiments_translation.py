"""The translated set: keyed to what it translates, so a rerun never reuses images of other inputs."""

import json
import os
import shutil
import types

import jax.numpy as jnp
import numpy as np

from sagan_jax.experiments import translation


def test_a_translated_set_is_keyed_to_its_source_list_translator_and_codes(tmp_path, caplog):
  params = {"G1": {"w": jnp.ones((2, 2))}}
  inputs = translation.fingerprint(["a.jpg", "b.jpg", "c.jpg"], params, 1, 7)
  assert inputs == translation.fingerprint(
    ["a.jpg", "b.jpg", "c.jpg"], {"G1": {"w": np.ones((2, 2), np.float32)}}, 1, 7
  )
  others = [
    translation.fingerprint(["a.jpg", "c.jpg"], params, 1, 7),  # a source image removed
    translation.fingerprint(["b.jpg", "a.jpg", "c.jpg"], params, 1, 7),  # another order: other labels per index
    translation.fingerprint(["a.jpg", "b.jpg", "c.jpg"], {"G1": {"w": jnp.zeros((2, 2))}}, 1, 7),  # retrained
    translation.fingerprint(["a.jpg", "b.jpg", "c.jpg"], params, 10, 7),  # another M
  ]
  assert all(o != inputs for o in others)

  root = str(tmp_path / "translated")
  translation._start(root, inputs, "translate")
  rgb, mask = np.zeros((8, 4, 3)), np.ones((8, 4, 1))
  translation.write_image(root, translation.image_name(0, 0), rgb, mask)  # an interrupted translation's image
  translation._start(root, inputs, "translate")  # the same inputs: the image is kept, to be reused
  assert os.path.isfile(os.path.join(root, translation.image_name(0, 0)))
  assert not translation.is_complete(root, inputs)
  translation.write_labels(root, [translation.image_name(0, 0)], [5], [1], {})
  assert translation.is_complete(root, inputs) and not translation.is_complete(root, others[0])
  translation._start(root, others[0], "translate")  # the source changed: start afresh, saying so
  assert os.listdir(root) == [translation.INPUTS]
  with open(os.path.join(root, translation.INPUTS)) as f:
    assert json.load(f) == others[0]
  assert "were made from other inputs (source_images, source_names_sha256): translating afresh" in caplog.text


def test_rows_with_and_without_masks_share_one_reference_ide(tiny_benchmark, tmp_path):
  """The report's reference IDE reads images only, so CycleGAN's rows (no masks) and SA-GAN's are
  measured in one feature space; another source folder gets another network."""
  from sagan_jax.experiments import config as config_lib
  from sagan_jax.experiments import report

  folder, _ = tiny_benchmark
  config = config_lib.base_config()
  where = lambda manual_dir, with_masks: report._reference_dir(
    types.SimpleNamespace(
      config=config,
      datasets=types.SimpleNamespace(
        names={"source": "market1501"},
        manual_dirs={"source": manual_dir},
        with_masks=with_masks,
        data_dir=str(tmp_path),
      ),
    )
  )
  source = os.path.join(folder, "source")
  assert where(source, True) == where(source, False)
  assert where(source, True).startswith(os.path.join(str(tmp_path), "reference_ide", "market1501-"))
  other = tmp_path / "copy"
  shutil.copytree(source, other)
  assert where(str(other), True) != where(source, True)
