#!/usr/bin/env bash
# Prepares, on this machine, what gpu_peers_session.sh needs on a lent GPU machine, which reaches
# no package index (its image has Python 3.12, CUDA torch, JAX, flax, optax, chex, orbax):
#   .whl/          wheels for Python 3.12 of what that image lacks: learn2learn 0.2.0 (built here:
#                  it ships no wheel, and its C files must be regenerated with Cython < 3, as
#                  peer_env.ensure_learn2learn_venv does), avalanche-lib 0.6.0 and the modules
#                  the two import, and tensorboardX for metajax's logs; about 27 MB.
#   .device_data/  copies of MNIST and Omniglot (../shared/data, 11 + 5.5 MB), which do not travel by
#                  themselves (gpu_session.sh reads the Omniglot copy).
# Both folders are git-ignored; name them in the device tool's carry (64 MiB in all with the tree).
# Usage: PY312=/path/to/python3.12 bash benchmarks/device_carry.sh   (SHARED: the data folder)
set -euo pipefail
PY312=${PY312:-python3.12}
SHARED=${SHARED:-../shared/data}
"$PY312" -c 'import sys; assert sys.version_info[:2] == (3, 12), sys.version' || {
  echo "PY312 must be a Python 3.12 (the device's), got $PY312" >&2; exit 2; }
for f in mnist/mnist.npz omniglot/images_background.npz omniglot/images_evaluation.npz; do
  [ -f "$SHARED/$f" ] || { echo "no $SHARED/$f: set SHARED to the folder holding mnist/ and omniglot/" >&2; exit 2; }
done

rm -rf .whl .device_data  # Afresh: two versions of a wheel would stop the install there.
mkdir -p .whl .device_data
cp -r "$SHARED/mnist" "$SHARED/omniglot" .device_data/
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# Pure-Python and manylinux wheels, pinned to the versions that imported in a Python 3.12
# environment with the image's packages (torch, torchvision, numpy, scipy, matplotlib,
# scikit-learn, tensorboard, protobuf, click, xxhash ...) and nothing else.
wheels=(
  avalanche-lib==0.6.0 dill==0.4.1 gdown==6.5.1 beautifulsoup4==4.15.0 soupsieve==4.1.3
  pytorchcv==0.0.74 qpsolvers==4.13.0 wandb==0.31.0 platformdirs==4.14.8 pydantic==2.14.4
  pydantic-core==2.50.5 typing-inspection==0.4.5 annotated-types==0.8.0
  opentelemetry-api==1.45.2 opentelemetry-sdk==1.45.2 opentelemetry-proto==1.45.2
  opentelemetry-semantic-conventions==0.66b2 opentelemetry-exporter-otlp-proto-common==1.45.2
  opentelemetry-exporter-otlp-proto-http==1.45.2 tensorboardX==2.6.5
)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl "${wheels[@]}"

# Sources without a wheel for 3.12 (or any), built with Python 3.12: gym, GPUtil, qpth and learn2learn.
"$PY312" -m venv "$scratch/venv"
build="$scratch/venv/bin/python"
"$build" -m pip install -q "cython<3" setuptools wheel numpy
"$build" -m pip wheel -q --no-deps gym==0.26.2 gym-notices==0.1.0 gputil==1.4.0 qpth==0.0.18 -w .whl
"$build" -m pip download -q --no-deps --no-binary :all: learn2learn==0.2.0 -d "$scratch"
tar xzf "$scratch"/learn2learn-0.2.0.tar.gz -C "$scratch"
for pyx in "$scratch"/learn2learn-0.2.0/learn2learn/data/*.pyx; do "$build" -m cython -3 "$pyx"; done
"$build" -m pip wheel -q --no-build-isolation --no-deps "$scratch/learn2learn-0.2.0" -w .whl
ls .whl && du -sh .whl .device_data
