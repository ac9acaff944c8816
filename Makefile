# The two commands of the README: `make run` (the main job) and `make test` (the whole suite).
# Both set up what they need: .venv from requirements.lock (Python 3.10) and Fashion-MNIST.
VENV := .venv
PY := $(VENV)/bin/python
RUN_DIR ?= runs/pipeline
export TF_CPP_MIN_LOG_LEVEL ?= 2
# MNIST's IDX files, where this project's machines keep them (../shared/data/mnist); read by
# lqvae_tf.data.mnist when set (see README, "Data"). Never copied into the repository.
SHARED_DATA := $(abspath ../shared/data)
export LQVAE_MNIST_DIR ?= $(if $(wildcard $(SHARED_DATA)/mnist/t10k-labels-idx1-ubyte.gz),$(SHARED_DATA)/mnist)
# The CelebA subset (10,000 aligned faces and labels.csv), read by lqvae_tf.data.celeb_a when set.
export LQVAE_CELEBA_DIR ?= $(if $(wildcard $(SHARED_DATA)/celeba/labels.csv),$(SHARED_DATA)/celeba)

.PHONY: setup data run test lint format presets bench lock clean

setup:
	@scripts/setup_env.sh

data: setup
	@scripts/get_data.sh $(PY)

# The main job: the TFX pipeline (ingest, validate, train, robustness gate, push) on this machine.
run: setup data
	$(PY) -m pipelines.local_runner --output $(RUN_DIR)

# Two pytest-xdist workers, one test file each at a time (module fixtures such as a pipeline run
# stay in one process); tests/conftest.py hands out the longest files first.
test: setup data lint
	$(PY) -m pytest -q -p no:cacheprovider --durations=10 -n 2 --dist loadfile --no-loadscope-reorder

lint: setup
	$(VENV)/bin/ruff check lqvae_tf pipelines tests bench
	$(VENV)/bin/ruff format --check lqvae_tf pipelines tests bench
	$(VENV)/bin/lint-imports

format: setup
	$(VENV)/bin/ruff format lqvae_tf pipelines tests bench
	$(VENV)/bin/ruff check --fix lqvae_tf pipelines tests bench

# The trained purifiers shipped in lqvae_tf/presets/ (LQVAE.from_preset): each dataset's classifier-free
# purifier fine-tuned guided by classifiers A, B and C at once, measured in front of those and a held-out
# one; every model from (or trained into) lqvae reproduce's model store; resumable.
MODELS_DIR ?= runs/reproduce/models
presets: setup data
	nice -n 10 $(PY) scripts/make_presets.py --models $(MODELS_DIR) mnist fashion_mnist

bench: setup data
	$(PY) bench/bench_train_purify.py
	$(PY) bench/bench_purifiers.py

# Re-resolve the lock (needs a network); commit requirements.lock afterwards.
lock: setup
	$(VENV)/bin/uv pip compile --python-version 3.10 --python-platform x86_64-manylinux_2_28 \
		requirements.in -o requirements.lock

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
