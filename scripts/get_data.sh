#!/usr/bin/env bash
# Makes the full Fashion-MNIST available: Debian's dataset-fashion-mnist where apt can install it,
# else tensorflow-datasets' download where a network exists, else an error naming both.
set -euo pipefail
folder=/usr/share/datasets/fashion-mnist
python=${1:-.venv/bin/python}
have_idx() { [ -f "$folder/train-images-idx3-ubyte.gz" ] && [ -f "$folder/t10k-labels-idx1-ubyte.gz" ]; }
have_idx && exit 0
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "installing Debian's dataset-fashion-mnist ..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) >/dev/null \
    || echo "apt-get could not install dataset-fashion-mnist"
  have_idx && exit 0
fi
echo "trying tensorflow-datasets' download of fashion_mnist ..."
if "$python" -c 'import lqvae_tf.data as d; d.fashion_mnist(source="tfds", limit=1)'; then
  echo "warning: Fashion-MNIST came from tensorflow-datasets; the test suite reads the IDX files at $folder" >&2
  exit 0
fi
cat >&2 <<'MSG'
error: Fashion-MNIST is not available. Get it with one of:
  apt-get install dataset-fashion-mnist   (Debian; files under /usr/share/datasets/fashion-mnist)
  a network connection, so tensorflow-datasets can download it
MSG
exit 1
