# model/train targets. Override SHARDS / TRAIN_OUT / STEPS on the command line, e.g.
#   make train-base SHARDS=out/demo/cluster_shards STEPS=1000
SHARDS      ?= $(OUT)/demo/cluster_shards
TASK_SHARDS ?= $(OUT)/demo/task_shards
TRAIN_OUT   ?= $(OUT)/train
STEPS       ?=
PROMPT      ?= a photo of a dog on a beach
STEPS_FLAG   = $(if $(STEPS),--steps $(STEPS),)

.PHONY: train-base train-base-stage2 train-sr train-tiny sample

train-base: setup ## base model, stage 1 (retrieval-augmented, cluster shards): SHARDS=, TRAIN_OUT=, STEPS=
	$(PYTHON) -m train --config train/configs/base_stage1.yaml --shards "$(SHARDS)" --output "$(TRAIN_OUT)/base_stage1" $(STEPS_FLAG)

train-base-stage2: setup ## base model, stage 2 (instruction tuning on task shards, from stage 1)
	$(PYTHON) -m train --config train/configs/base_stage2.yaml --shards "$(TASK_SHARDS)" --output "$(TRAIN_OUT)/base_stage2" --init "$(TRAIN_OUT)/base_stage1/checkpoints" $(STEPS_FLAG)

train-sr: setup ## super-resolution model 64->256 (cluster or task shards)
	$(PYTHON) -m train --config train/configs/sr.yaml --shards "$(SHARDS)" --output "$(TRAIN_OUT)/sr" $(STEPS_FLAG)

train-tiny: setup ## tiny base model on CPU (minutes): SHARDS=
	$(PYTHON) -m train --config train/configs/tiny.yaml --shards "$(SHARDS)" --output "$(TRAIN_OUT)/tiny" $(STEPS_FLAG)

sample: setup ## PNG grid from the latest base checkpoint: CKPT=, PROMPT=
	$(PYTHON) -m train.sample --checkpoint "$(or $(CKPT),$(TRAIN_OUT)/base_stage1/checkpoints)" --prompt "$(PROMPT)" --output "$(TRAIN_OUT)/samples.png"
