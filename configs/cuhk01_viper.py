"""Real photographs at the main job's scale: CUHK01 (971 labelled people) → VIPeR (split 0).

  python -m sagan_jax.masks teacher --data_dir=CUHK01      # person masks, once per dataset folder
  python -m sagan_jax.masks teacher --data_dir=VIPER
  python train.py --config=configs/cuhk01_viper.py[:variant=V] --workdir=runs/c2v \\
      --config.data.source.manual_dir=CUHK01 --config.data.target.manual_dir=VIPER

A real-photo analogue of the paper's → PRID2011 rows: two small two-camera sets of a few hundred
outdoor people. CUHK01 is the labelled source (all its ids, `campus/`); VIPeR the target under
torchreid's protocol, adapted on split 0's 316 training ids only and evaluated on its 316 test ids
both ways (VIPeR-CamA, VIPeR-CamB). Masks come from MediaPipe's person segmenter
(`sagan_jax.masks.teacher`), written under each folder's ``masks/`` (copy a read-only dataset first).
The networks and budgets are those of ``configs/synthetic.py`` (`cpu_scale`); the recipe is
`real_photo_recipe`: resize-convolution upsampling, the paper's learning rate 1e-4 and a mask identity
weight of 20, chosen on split 1 at seed 3; a G1 that may only recolour the background; an S2 with
a flattening head of its own, a back STM with its own code and SCL in the source's cycle only; and
no Siamese term (eq. 6, `sagan.lambda_siam=0`); and S1/S2 predicting affine maps
(`sagan.transform="affine"`, since 2026-12-07; runs before it need `--config.sagan.transform=homography`
to be read again): the last four each chosen on three development pairs (docs/results.md). Each
IDE trains five times with its own seed and the results report the mean (`eval.ide_repeats`): on
this pair one training's R-1 in one direction moves by up to 8 points on the same translated images
(docs/results.md). Likewise the translation report averages three
reference IDEs (`eval.reference_repeats`): one reference's draw moves identity_kept and the gap's
ratio to its raw figure by 0.08-0.11 on the same translations (docs/fidelity.md).
"""

from sagan_jax.experiments.config import apply_variant, base_config, cpu_scale, parse_arg, real_photo_recipe


def get_config(arg=None):
  args = parse_arg(arg)
  c = real_photo_recipe(cpu_scale(base_config()))
  c.experiment = "cuhk01_viper"
  c.data.source.name, c.data.target.name = "cuhk01", "viper"
  c.data.masks = "data"  # the teacher's masks (python -m sagan_jax.masks teacher)
  c.data.viewpoint_groups = "none"  # both datasets are one group (sagan_jax/data/viewpoint_groups.json)
  c.data.target_adaptation, c.data.target_split = "one_split", 0
  c.eval.ide_repeats = 5
  c.eval.reference_repeats = 3  # each cached once per data folder, shared by every run in it
  # SA-GAN [M=10]'s view control at the codes' size: over the three development pairs ten codes put one
  # photograph 0.033 apart on average and ±0.025 moves it 0.032 (`bench/code_spread.py`; ±0.02: 0.026).
  c.ide.view_range = 0.025
  return apply_variant(c, args.get("variant", "sagan"))
