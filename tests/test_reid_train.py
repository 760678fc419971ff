"""The IDE trainer: it learns identities that transfer to unseen ones."""

import numpy as np
import pytest

from sagan_jax import parallel
from sagan_jax.data import builders, pipeline, synthetic
from sagan_jax.reid import ide
from sagan_jax.reid import train as ide_train

LEARN = synthetic.BenchmarkSpec(
  height=64, width=32, train_ids=40, test_ids=40, num_cameras=3, images_per_camera=3, distractors=10, junk=4, seed=11
)


@pytest.mark.xla_optimized
def test_ide_learns_identities_that_transfer_to_unseen_ones(tmp_path):
  """Trained on the synthetic source's training ids, ranked on its disjoint test ids."""
  manual = str(tmp_path / "source")
  synthetic.write_domain(manual, "source", LEARN)
  builder = builders.prepare("market1501", manual, str(tmp_path / "data"))
  config = ide.ide_config()
  config.image_size, config.stage_sizes, config.width, config.batch_size = (64, 32), (1, 1, 1, 1), 16, 32
  config.learning_rate = 0.05  # from scratch, a small model: faster than the paper's fine-tuning rate
  mesh = parallel.make_mesh()
  labels = builders.read_labels(builder, "train")["person_id"]
  batches = pipeline.TrainBatches(
    builder.as_data_source("train"),
    global_batch_size=config.batch_size,
    image_size=config.image_size,
    seed=0,
    masks="ones",
  )
  model = ide.make_model(config, num_classes=int(labels.max()) + 1)
  optimizer = ide_train.make_optimizer(config, batches.steps_per_epoch)
  state = ide.create_state(model, optimizer, config.image_size, seed=0, mesh=mesh)
  feature_fn = ide.make_feature_fn(model, mesh, normalize=True, flip_average=False)

  def evaluate(state):
    sets = [
      ide.extract(
        feature_fn,
        state,
        pipeline.eval_batches(builder.as_data_source(split), batch_size=32, image_size=config.image_size, masks="ones"),
      )
      for split in ("query", "gallery")
    ]
    return ide.rank_table(*sets)

  before = evaluate(state)
  train_step = ide.make_train_step(model, optimizer, mesh)
  losses = []
  for k, batch in enumerate(batches.iterate()):
    state, m = train_step(state, batch["image"], batch["person_id"])
    losses.append(float(m["loss"]))
    if k == 199:
      break
  after = evaluate(state)
  print(
    f"\nIDE on synthetic source ({LEARN.train_ids} train ids → {LEARN.test_ids} unseen test ids, "
    f"gallery: their other images + distractors): loss {np.mean(losses[:10]):.2f} → {np.mean(losses[-10:]):.2f}; "
    f"R-1 {before['R-1']:.1f}% → {after['R-1']:.1f}%, mAP {before['mAP']:.1f}% → {after['mAP']:.1f}%"
  )
  assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])
  assert after["R-1"] > 60.0 and after["R-1"] > before["R-1"] + 20.0
  assert after["mAP"] > before["mAP"] + 10.0
