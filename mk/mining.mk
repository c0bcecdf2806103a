# Mining area: quality head training, mining pipeline, quality benchmarks.
BIQ2021     ?= ../shared/data/biq2021
# COCO images whose degradations choose the quality gates (train2017 only; '' = no gates)
QUALITY_COCO ?= ../shared/data/coco_mini
# The committed head uses all 2,387 train images (empty list, 0 = no limit); set either to fit on a subset.
QUALITY_TRAIN_LIST ?=
QUALITY_MAX_TRAIN ?= 0
# fine-tune delta mixed into the learned part by train-quality-head ('' = frozen ridge head only: the v3
# head's features hold the delta's, so the committed head does not mix it in)
QUALITY_FINETUNE ?=
# an earlier head's .json whose gates are kept ('' = search them on the QUALITY_COCO degradations)
QUALITY_GATES_FROM ?= mining/weights/quality_head.json
.PHONY: train-quality-finetune train-quality-head bench-quality test-mining

train-quality-finetune: setup ## fine-tune EfficientNet-Lite0 (LoRA + BN affine, blocks 5-15) on BIQ2021 -> $(QUALITY_FINETUNE); run train-quality-head after
	nice -n 10 $(PYTHON) -m mining.quality.finetune --biq "$(BIQ2021)" --out mining/weights/quality_finetune.npz

train-quality-head: setup ## fit the learned quality head + blend on BIQ2021 (features cached in out/quality_cache)
	nice -n 10 $(PYTHON) -m mining.quality.train --biq "$(BIQ2021)" --out mining/weights/quality_head.npz --max-train $(QUALITY_MAX_TRAIN) --train-list "$(QUALITY_TRAIN_LIST)" --coco "$(QUALITY_COCO)" --finetune "$(QUALITY_FINETUNE)" --gates-from "$(QUALITY_GATES_FROM)"

bench-quality: setup ## quality benchmarks: BIQ2021 SRCC/PLCC, degradations, COCO domain accuracy
	nice -n 10 $(PYTHON) -m bench.run quality_

test-mining: setup ## the mining tests only
	$(PYTHON) -m pytest -q tests/test_mining_*.py

.PHONY: train-itm bench-itm
train-itm: setup ## train the offline image-text projection on coco_mini + flickr8k_1k captions -> mining/weights/itm_projection.npz (features cached in out/itm_cache)
	nice -n 10 $(PYTHON) -m mining.itm.train --data ../shared/data --out mining/weights/itm_projection.npz --report

bench-itm: setup ## image-text projection: test-split recall, COCO domain accuracy vs the ImageNet map, alignment rule
	nice -n 10 $(PYTHON) -m bench.itm_coco --imagenet
