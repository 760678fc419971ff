#!/usr/bin/env bash
# Fetches the wheels that bench/run_all.sh needs on an accelerator machine with no network.
#
#   bash bench/device_wheels.sh [DIR]     # DIR defaults to .whl/ (git-ignored); run it where PyPI is reachable
#
# The H100/H200 image we target (Python 3.12) already has jax 0.11 with its CUDA plugin, flax, optax,
# orbax-checkpoint, numpy, pillow, absl-py, tqdm, protobuf and pytest, but not the rest
# of requirements.txt. This downloads CPython 3.12 x86-64 wheels of exactly what is missing there,
# without their dependencies (--no-deps: the image has those). run_all.sh installs DIR's wheels with
# `pip install --no-index --no-deps --target` when WHEELS=DIR is set.
#
# The versions are what requirements.txt resolved to on Python 3.12 on 2026-12-01; move them with
# requirements.txt. protobuf is carried too: tensorflow-metadata's generated code refuses a protobuf
# runtime older than the one it was generated with, and the image's version is not known ahead.
# promise has no wheel on PyPI (an sdist only); it is pure Python, so it is built into one here.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-.whl}
mkdir -p "$DIR"
PY=${PYTHON:-python3}

binary=(
  tensorflow-datasets==4.9.10 tensorflow-metadata==1.21.0 googleapis-common-protos==1.76.0 protobuf==7.36.2
  grain==0.2.18 array_record==0.8.6 dm-tree==0.1.10
  ml_collections==1.1.0 tensorboardX==2.6.5 importlib_resources==7.1.0 zipp==4.1.2
  immutabledict==4.3.1 portpicker==1.6.0 toml==0.10.2 termcolor==3.3.0
  simple-parsing==0.1.9 docstring_parser==0.18.0
)
platforms=()
for tag in manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux_2_27_x86_64 manylinux_2_28_x86_64; do
  platforms+=(--platform "$tag")
done
$PY -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" -d "$DIR" "${binary[@]}"
$PY -m pip wheel --quiet --no-deps -w "$DIR" promise==2.3
ls -1 "$DIR"
du -sh "$DIR"
