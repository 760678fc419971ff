"""The experiment config: variants, and every field a late stage would reject checked first."""

import importlib.util
import os

import pytest

from sagan_jax.errors import ConfigError
from sagan_jax.experiments import config as config_lib
from sagan_jax.sagan import SAGAN

from helpers import ROOT


def _config_module(name: str):
  """``configs/<name>.py`` imported as a module: the configs folder is not a package."""
  spec = importlib.util.spec_from_file_location(f"{name}_config", os.path.join(ROOT, "configs", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.parametrize(
  "field, value, message",
  [
    ("sagan_train.steps", -5, r"config.sagan_train.steps=-5: expected a positive integer"),
    ("sagan_train.checkpoint_every", 0, r"config.sagan_train.checkpoint_every=0: expected a positive integer"),
    ("ide.batch_size", 12, r"config.ide.batch_size=12 is not a multiple of the 8 devices"),
    ("ide.epochs", 0, r"config.ide.epochs=0"),
    ("eval.ide_repeats", 0, r"config.eval.ide_repeats=0: expected a positive integer"),
    ("sagan.gan_loss", "hinge", r"sagan.gan_loss must be one of"),
  ],
)
def test_fields_a_late_stage_would_reject_are_checked_first(field, value, message):
  c = config_lib.base_config()
  c.ide.pretrained, c.data.masks = "none", "data"
  section, name = field.split(".")
  c[section][name] = value
  with pytest.raises(ConfigError, match=message):
    config_lib.check(c, devices=8)


def test_each_variant_builds_the_networks_of_its_row():
  def networks(variant):
    c = config_lib.apply_variant(config_lib.base_config(), variant)
    c.ide.pretrained = "none"
    if variant == "original":
      return c, None
    model = SAGAN(c.sagan)
    return c, set(model.generator_names + model.critic_names + model.sianet_names)

  c, _ = networks("original")
  assert config_lib.check(c) == ("ide", "evaluate")
  full = {"G1", "G2", "S1", "S2", "D1", "D2", "DT1", "DT2", "SiaNet"}
  assert networks("sagan")[1] == full and networks("wd")[1] == full
  assert networks("sagan")[0].sagan.num_codes == 1 and networks("sagan_m10")[0].sagan.num_codes == 10
  assert networks("ws")[1] == full - {"S1", "S2", "DT1", "DT2"}
  assert networks("wp")[1] == full - {"G1", "G2"}
  c, nets = networks("cyclegan")
  assert nets == {"G1", "G2", "D1", "D2"} and not c.sagan.use_mask and c.sagan.identity_loss == "none"
  assert "masks" not in config_lib.check(c)
  assert networks("cyclegan_star")[0].sagan.identity_loss == "mapping"
  assert not networks("wd")[0].sagan.disentangled_cycle
  with pytest.raises(ValueError, match="unknown variant 'sagan_m5'"):
    config_lib.apply_variant(config_lib.base_config(), "sagan_m5")


def test_the_cyclegan_rows_stay_as_published_under_the_cpu_recipes():
  """The CPU configs' recipes change SA-GAN's optimiser, upsampling and λ_idt; CycleGAN and CycleGAN*
  keep the published ones (Adam 2e-4, transposed convolutions, identity weight 0.5 λ_cyc = 5)."""
  module = _config_module("synthetic")
  assert module.get_config().sagan.lambda_idt == 20.0  # the recipe's, which the rows must not inherit
  for variant in ("cyclegan", "cyclegan_star"):
    s = module.get_config(f"variant={variant}").sagan
    assert (s.learning_rate, s.generator_upsample, s.lambda_idt, s.stm_learning_rate) == (2e-4, "transpose", 5.0, 0.0)
    assert not s.generator_residual and s.generator_pointwise_features == 0


def test_pointwise_paths_reach_every_gan_row_that_can_have_them():
  """Asked for on the real-photo config, the person and the background limited to G1's colour path
  reach every SA-GAN row; the rows they cannot apply to (the CycleGANs: no mask, no colour path)
  keep the full generator instead of failing at their first step."""
  from sagan_jax.sagan.config import VARIANTS

  module = _config_module("cuhk01_viper")
  paths = {}
  for variant, row in VARIANTS.items():
    if row.sagan is None:
      continue
    c = module.get_config()
    c.sagan.generator_person_path = c.sagan.generator_background_path = "pointwise"
    s = config_lib.apply_variant(c, variant).sagan
    SAGAN(s)
    paths[variant] = (s.generator_person_path, s.generator_background_path)
  assert paths.pop("cyclegan") == paths.pop("cyclegan_star") == ("full", "full")
  assert set(paths.values()) == {("pointwise", "pointwise")} and "sagan" in paths


def test_only_the_real_photo_recipe_limits_the_background_to_recolouring():
  """`real_photo_recipe` lets G1/G2 recolour the background but not paint on it, for every SA-GAN
  row of configs/cuhk01_viper.py that has a generator; the CycleGAN rows there, and the synthetic
  main job, keep the full generator."""
  photo, synthetic = _config_module("cuhk01_viper"), _config_module("synthetic")
  for variant in ("sagan", "ws", "wd", "sagan_m10"):
    s = photo.get_config(f"variant={variant}").sagan
    SAGAN(s)
    assert s.generator_background_path == "pointwise", variant
  for variant in ("cyclegan", "cyclegan_star"):
    assert photo.get_config(f"variant={variant}").sagan.generator_background_path == "full", variant
  assert synthetic.get_config().sagan.generator_background_path == "full"


def test_only_the_real_photo_recipe_gives_s2_its_own_head_and_code():
  """`real_photo_recipe` gives S2 a flattening head beside S1's pooling one, the back STM its own
  code and SCL the source's cycle only, for every SA-GAN row of configs/cuhk01_viper.py; the
  synthetic main job keeps the paper's shared code, both cycles and one head for both STMs."""
  from sagan_jax.sagan.config import VARIANTS

  fields = ("cycle_code", "scl_cycles", "stm_head", "stm_head_s2")
  with_stms = [v for v, row in VARIANTS.items() if row.sagan is not None and row.sagan.get("spatial", True)]
  assert {"sagan", "wp", "wd", "sagan_m10"} <= set(with_stms) and "ws" not in with_stms
  for variant in with_stms:
    s = _config_module("cuhk01_viper").get_config(f"variant={variant}").sagan
    assert tuple(s[f] for f in fields) == ("independent", "source", "pool", "flatten"), variant
    model = SAGAN(s)
    assert model.stms["S2"] is not model.stms["S1"], variant
  assert tuple(_config_module("synthetic").get_config().sagan[f] for f in fields) == ("shared", "both", "pool", "same")


def test_only_the_real_photo_recipe_drops_the_siamese_term_for_every_sagan_row():
  """`real_photo_recipe` sets λ_siam = 0, which the variants (each of which sets ``siamese``) keep:
  no SiaNet in any row of configs/cuhk01_viper.py; the synthetic main job keeps SPGAN's eq. 6."""
  from sagan_jax.sagan.config import VARIANTS

  for variant in (v for v, row in VARIANTS.items() if row.sagan is not None):
    s = _config_module("cuhk01_viper").get_config(f"variant={variant}").sagan
    assert s.lambda_siam == 0.0 and SAGAN(s).sianet_names == (), variant
  s = _config_module("synthetic").get_config().sagan
  assert s.siamese and s.lambda_siam == 2.0 and SAGAN(s).sianet_names == ("SiaNet",)


def test_only_the_real_photo_recipe_gives_the_stms_affine_maps():
  """`real_photo_recipe` has S1/S2 predict the 6 parameters of an affine map (no perspective row) in
  every SA-GAN row of configs/cuhk01_viper.py that has STMs; the synthetic main job, whose target
  tilts its cameras, keeps the paper's 8-parameter homographies."""
  from sagan_jax.sagan.config import VARIANTS

  for variant in (v for v, row in VARIANTS.items() if row.sagan is not None and row.sagan.get("spatial", True)):
    s = _config_module("cuhk01_viper").get_config(f"variant={variant}").sagan
    assert s.transform == "affine" and SAGAN(s).num_transform_params == 6, variant
  s = _config_module("synthetic").get_config().sagan
  assert s.transform == "homography" and SAGAN(s).num_transform_params == 8


def test_evaluation_choices_are_checked_before_any_stage_runs():
  for field, value in (("ap_mode", "interpolated"), ("backend", "cuda")):
    c = config_lib.base_config()
    c.eval[field] = value
    with pytest.raises(ValueError, match=f"config.eval.{field}={value!r}"):
      config_lib.check(c)


def test_a_paper_config_without_imagenet_weights_stops_at_start(tmp_path):
  c = config_lib.paper_config("market2prid", "market", "prid")
  c.data.masks = "data"
  with pytest.raises(ValueError, match=r"convert_torchvision.*--config\.ide\.pretrained=none"):
    config_lib.check(c)
  c.ide.pretrained = str(tmp_path / "missing")
  with pytest.raises(ValueError, match="is not a folder"):
    config_lib.check(c)
  (tmp_path / "empty").mkdir()
  c.ide.pretrained = str(tmp_path / "empty")
  with pytest.raises(
    ValueError, match=r"config.ide.pretrained=.*empty' holds no converted ResNet-50.*convert_torchvision"
  ):
    config_lib.check(c)
  c.ide.pretrained = "none"
  assert "ide" in config_lib.check(c)
  c.ide.pretrained, c.stages = "", "sagan,translate"
  assert config_lib.check(c) == ("sagan", "translate")  # no IDE stage, nothing to initialise


@pytest.mark.parametrize(
  "field, value, message",
  [
    ("sagan.image_size", (7, 3), r"config.sagan.image_size=\(7, 3\): the generators downsample twice"),
    ("sagan.image_size", (64, 16), r"critics \(critic_layers=3\) leave no width for a patch score.*at least 24"),
    ("sagan.z_dim", 0, r"config.sagan.z_dim=0: the spatial code needs at least 1 dimension"),
    (
      "data.synthetic_spec.images_per_camera",
      1,
      r"config.data.synthetic_spec.images_per_camera=1: expected at least 2",
    ),
    ("data.synthetic_spec.bogus", 1, r"config.data.synthetic_spec: .*bogus"),
  ],
)
def test_what_a_network_or_the_benchmark_cannot_take_is_refused_before_any_data_is_prepared(field, value, message):
  module = _config_module("synthetic")
  c = module.get_config()
  *sections, name = field.split(".")
  target = c
  for section in sections:
    target = target[section]
  target[name] = value
  with pytest.raises(ConfigError, match=message):
    config_lib.check(c, devices=8)


def test_the_mask_unet_takes_the_gans_image_size_and_must_be_able_to_pool_it():
  c = config_lib.paper_config("market2prid", "market", "prid")
  c.ide.pretrained, c.masks.images_dir = "none", "/lip"
  c.sagan.image_size = (64, 32)
  assert tuple(c.masks.image_size) == (64, 32)  # one field: the masks follow SA-GAN's size
  c.masks.features = (8, 16, 32, 64, 128, 256, 512)  # pools 6 times: 64 = 2^6, 32 is not a multiple of it
  with pytest.raises(ConfigError, match=r"the mask U-Net pools 6 times .* multiples of 64"):
    config_lib.check(c)


def test_an_unknown_translation_region_is_refused_by_name():
  c = config_lib.cpu_scale(config_lib.base_config())
  c.translate.region = "face"
  expected = r"config.translate.region='face': expected one of \('frame', 'person', 'background'\)"
  with pytest.raises(ConfigError, match=expected):
    config_lib.check(c)


def test_a_translation_strength_outside_zero_to_one_is_refused_by_name():
  c = config_lib.cpu_scale(config_lib.base_config())
  assert c.translate.strength == 1.0  # the paper's translation
  c.translate.strength = 1.2
  with pytest.raises(ConfigError, match=r"config.translate.strength=1.2: expected a share of G1's change in \[0, 1\]"):
    config_lib.check(c)


def test_the_reference_ide_trains_longer_with_its_learning_rate_steps_stretched_alike():
  c = config_lib.cpu_scale(config_lib.base_config())
  reference = config_lib.reference_config(c)
  assert c.eval.reference_epochs_factor == 4
  assert (reference.epochs, tuple(reference.lr_decay_epochs)) == (4 * 12, (4 * 8,))
  assert (c.ide.epochs, tuple(c.ide.lr_decay_epochs)) == (12, (8,))  # the experiment's IDE is untouched
  paper = config_lib.base_config()
  assert config_lib.reference_config(paper).epochs == paper.ide.epochs
  for bad in (0, -2):
    c.eval.reference_epochs_factor = bad
    with pytest.raises(ConfigError, match=rf"config.eval.reference_epochs_factor={bad!r}: expected a positive"):
      config_lib.check(c)
  c.eval.reference_epochs_factor = 4
  assert reference.augment == "camera_gains"
  c.eval.reference_augment = "none"  # the references docs/fidelity.md compares, one flag away
  assert config_lib.reference_config(c).augment == "none"
  c.eval.reference_augment = "colour"
  with pytest.raises(ConfigError, match=r"config.eval.reference_augment='colour': expected one of"):
    config_lib.check(c)


def test_the_reports_reference_seeds_count_from_the_first_and_a_bad_count_is_refused():
  c = config_lib.base_config()
  assert config_lib.reference_seeds(c) == (config_lib.REFERENCE_SEED,) == (0,)
  c.eval.reference_repeats = 3
  assert config_lib.reference_seeds(c) == (0, 1, 2)
  for bad in (0, -1):
    c.eval.reference_repeats = bad
    with pytest.raises(ConfigError, match=rf"config.eval.reference_repeats={bad!r}: expected a positive integer"):
      config_lib.reference_seeds(c)


def test_the_reid_teacher_is_never_the_reference_ide_that_measures_the_translation():
  c = config_lib.cpu_scale(config_lib.base_config())
  reference = config_lib.reference_config(c)
  teacher = config_lib.teacher_config(c)
  assert reference.augment == teacher.augment == "camera_gains"
  assert teacher.width == 32 != reference.width and teacher.pretrained == "none"
  assert tuple(teacher.stage_sizes) == tuple(reference.stage_sizes) == (1, 1, 1, 1)
  # The paper scale keeps the IDE's architecture (and its ImageNet weights): the seed tells them apart.
  paper = config_lib.base_config()
  paper.ide.pretrained = "/weights/resnet50"
  assert config_lib.teacher_config(paper).to_dict() == config_lib.reference_config(paper).to_dict()
  paper.ide.pretrained, paper.data.masks = "none", "data"
  paper.reid_teacher.seed, paper.sagan.lambda_reid = config_lib.REFERENCE_SEED, 1.0
  with pytest.raises(ConfigError, match=r"config.reid_teacher \(seed 0, the IDE's architecture\) is one of the"):
    config_lib.check(paper, devices=8)
  # Its default seed 1 is the second reference once the report averages two.
  paper.reid_teacher.seed, paper.eval.reference_repeats = 1, 2
  with pytest.raises(ConfigError, match=r"\(seeds 0, 1, config.eval.reference_repeats=2\).*reid_teacher.seed to 2 or"):
    config_lib.check(paper, devices=8)
  paper.reid_teacher.seed = 2
  config_lib.check(paper, devices=8)
  paper.reid_teacher.seed, paper.sagan.lambda_reid = 0, 0.0  # no teacher is trained: nothing to refuse
  config_lib.check(paper, devices=8)
  c.reid_teacher.stage_sizes, c.reid_teacher.width = (2, 0, 2, 2), 32
  with pytest.raises(ConfigError, match=r"config.reid_teacher: stage_sizes=\(2, 0, 2, 2\), width=32"):
    config_lib.teacher_config(c)


def test_the_view_range_is_checked_and_keyed_only_where_the_view_augment_reads_it():
  from sagan_jax.experiments import source_ide

  c = config_lib.cpu_scale(config_lib.base_config())
  c.data.masks = "data"
  assert c.ide.view_range == 0.02 and c.ide.augment == "none"
  c.ide.view_range = 2.0  # not read without the view augment
  config_lib.check(c)
  c.ide.augment = "view"
  for bad in (2.0, 0.0, -0.02):
    c.ide.view_range = bad
    with pytest.raises(ConfigError, match=rf"config.ide.view_range={bad!r}: expected a positive sl\(3\) range"):
      config_lib.check(c)
  # The cached IDEs' key (the reference's, the teacher's) holds it only under the view augment, so the
  # field's arrival leaves every earlier key as it was.
  c.ide.view_range = 0.06
  reference = config_lib.reference_config(c)
  assert reference.augment == "camera_gains" and "view_range" not in source_ide.training_settings(reference)
  reference.view_range = 0.02
  assert "view_range" not in source_ide.training_settings(reference)
  assert source_ide.training_settings(c.ide)["view_range"] == 0.06
