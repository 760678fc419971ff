"""The U-Net's settings: ``masks`` in an experiment config, and the config of ``python -m sagan_jax.masks``
(`get_config`: the same fields plus its seed; override any with ``--config.x=...``)."""

import ml_collections


def mask_config() -> ml_collections.ConfigDict:
  """The U-Net's training settings (the paper gives none: it pre-trains a U-Net on LIP, Section IV-B)."""
  c = ml_collections.ConfigDict()
  c.source = "pairs"  # "lip" (LIP human parsing) or "pairs" (images + mirrored mask tree: GT or pseudo-labels)
  c.images_dir = ""  # "lip": the LIP root; "pairs": the image tree
  c.masks_dir = ""  # "pairs": the mask tree (default IMAGES_DIR/masks)
  c.image_size = (256, 128)  # the pipeline's size: in an experiment, SA-GAN's (masks are predicted at the size it sees)
  c.features = (32, 64, 128, 256)  # our choice: the original U-Net's widths halved
  c.dtype = "float32"
  c.batch_size = 16
  c.steps = 3000
  c.learning_rate = 1e-3  # Adam, cosine decay: our choice
  c.dice_weight = 1.0  # BCE + Dice (our choice: Dice keeps thin limbs from being ignored)
  c.holdout_fraction = 0.1  # of the pairs, never trained on, for the reported IoU
  c.checkpoint_every = 500
  c.log_every = 50
  return c


def get_config():
  c = mask_config()
  c.seed = 0  # in an experiment the U-Net's seed is derived from the experiment's
  return c
