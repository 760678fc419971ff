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
    translation.fingerprint(["a.jpg", "b.jpg", "c.jpg"], params, 1, 7, "person"),  # G1 on the person only
    translation.fingerprint(["a.jpg", "b.jpg", "c.jpg"], params, 1, 7, "frame", 0.5),  # half of G1's change
  ]
  assert "region" not in inputs and "strength" not in inputs  # sets written before the options keep their key
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


def test_the_reid_teachers_features_are_its_pool5_at_its_own_input_size():
  import jax

  from sagan_jax.experiments import source_ide
  from sagan_jax.reid import resnet

  model = resnet.IDE(num_classes=5, stage_sizes=(1, 1), width=4)
  images = jax.random.uniform(jax.random.PRNGKey(0), (3, 32, 16, 3), minval=-1, maxval=1)
  variables = model.init(jax.random.PRNGKey(1), images)
  features = source_ide.Features(model, (32, 16))
  _, pool5 = model.apply(variables, resnet.imagenet_normalize(images))
  np.testing.assert_allclose(np.asarray(features(variables, images)), np.asarray(pool5), rtol=1e-6)
  # Another size is resized to the network's first: a flat image stays flat, so it gives the features of
  # the flat image at the network's size (unresized, the zero padding at the border would weigh less).
  flat = jnp.full((1, 32, 16, 3), 0.3)
  _, flat_pool5 = model.apply(variables, resnet.imagenet_normalize(flat))
  big = jnp.full((1, 64, 32, 3), 0.3)
  np.testing.assert_allclose(np.asarray(features(variables, big)), np.asarray(flat_pool5), rtol=1e-5, atol=1e-6)
  _, big_pool5 = model.apply(variables, resnet.imagenet_normalize(big))
  assert not np.allclose(np.asarray(big_pool5), np.asarray(flat_pool5), rtol=1e-3)
  assert hash(features) == hash(source_ide.Features(model, (32, 16)))  # compiled steps key on it
