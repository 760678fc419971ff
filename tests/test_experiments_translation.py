"""The translated set: keyed to what it translates, so a rerun never reuses images of other inputs."""

import json
import os

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
