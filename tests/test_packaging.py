"""The library core imports without the training stack; the package declares what it needs."""

import os
import subprocess
import sys
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORE = ("sagan_jax.geometry", "sagan_jax.losses", "sagan_jax.fidelity", "sagan_jax.models", "sagan_jax.sagan")
# Top-level modules of the [train] extra (and TensorFlow, which nothing may import). absl-py is
# declared there for our command lines, but flax, optax and ml_collections import it themselves.
TRAIN_ONLY = (
  "tensorflow_datasets",
  "tensorflow",
  "grain",
  "orbax",
  "PIL",
  "tqdm",
  "tensorboardX",
  "importlib_resources",
  "array_record",
)


def test_core_modules_import_none_of_the_train_extras():
  code = (
    f"import sys; import {', '.join(CORE)}; "
    f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({TRAIN_ONLY!r})))"
  )
  out = subprocess.run(
    [sys.executable, "-c", code],
    cwd=ROOT,
    capture_output=True,
    text=True,
    check=True,
    env={**os.environ, "JAX_PLATFORMS": "cpu"},
  )
  assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_pyproject_declares_the_core_and_the_extras():
  with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
    project = tomllib.load(f)["project"]
  name = lambda requirement: requirement.split(">")[0].split("<")[0].split("=")[0].split("[")[0].strip().lower()
  assert {name(r) for r in project["dependencies"]} == {"jax", "jaxlib", "flax", "optax", "numpy", "ml-collections"}
  train = {name(r) for r in project["optional-dependencies"]["train"]}
  assert {"orbax-checkpoint", "tensorflow-datasets", "grain", "pillow", "absl-py", "tqdm", "tensorboardx"} <= train
  # Ranges with a lower bound everywhere, never an exact pin.
  for requirement in project["dependencies"] + project["optional-dependencies"]["train"]:
    assert ">=" in requirement and "==" not in requirement, requirement
  for script, target in project["scripts"].items():
    module, _function = target.split(":")
    assert os.path.isfile(os.path.join(ROOT, *module.split(".")) + ".py"), script
