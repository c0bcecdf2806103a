# One target per stage, each with INPUT= and OUTPUT= (defaults chain the folders of one run under RUN):
#   make read     INPUT=pairs.csv|urls.txt|folder|img2dataset-dir  OUTPUT=$(RUN)/records
#   make mine     INPUT=$(RUN)/records   OUTPUT=$(RUN)/mined
#   make clusters INPUT=$(RUN)/mined     OUTPUT=$(RUN)/clusters
#   make tasks    INPUT=$(RUN)           OUTPUT=$(RUN)/tasks       [STYLE_DIR=folder FACES_DIR=folder SEED=0 SHARD_SIZE=64]
#   make train    INPUT=$(RUN)/clusters/shards OUTPUT=$(RUN)/train [CONFIG=tiny STEPS=150]
#   make report   INPUT=$(RUN)           OUTPUT=$(RUN)/report
#   make dataset  INPUT=pairs.csv OUTPUT=out/mydata   (read -> mine -> clusters -> tasks into OUTPUT/...)
# RUNNER= picks the Beam runner of mine/clusters/tasks (fnapi, direct-mp, portable, or a Beam runner
# name plus BEAM_ARGS=, see docs/runners.md); READ_RUNNER= that of read (default local: the one-process
# loop; a Beam runner reads the input's units in parallel with the same output, docs/readers.md).
RUN        ?= $(OUT)/run
RUNNER     ?= fnapi
READ_RUNNER ?= local
BEAM_ARGS  ?=
CONFIG     ?= tiny
SEED       ?= 0
SHARD_SIZE ?= 64
STYLE_DIR  ?=
FACES_DIR  ?=
TASKS_ARGS ?=

.PHONY: corpus read mine clusters tasks train report dataset

corpus: OUTPUT ?= $(RUN)/corpus
corpus: setup ## the embedded demo corpus: OUTPUT= [N=1000 SEED=0]
	$(PYTHON) -m mining.demo_corpus --output "$(OUTPUT)" --n $(or $(N),1000) --seed $(SEED)

read: INPUT ?= $(RUN)/corpus/pairs.csv
read: OUTPUT ?= $(RUN)/records
read: setup ## any reader input -> record Parquet shards: INPUT= OUTPUT=
	$(PYTHON) -m mining.readers --input "$(INPUT)" --output "$(OUTPUT)" --runner $(READ_RUNNER) \
		$(if $(filter local,$(READ_RUNNER)),,$(BEAM_ARGS))

mine: INPUT ?= $(RUN)/records
mine: OUTPUT ?= $(RUN)/mined
mine: setup ## decode, quality, domain, filter: INPUT=records OUTPUT=mined (kept/ + rejected/)
	$(PYTHON) -m pipelines.mine --input "$(INPUT)" --output "$(OUTPUT)" --runner $(RUNNER) $(BEAM_ARGS)

clusters: INPUT ?= $(RUN)/mined
clusters: OUTPUT ?= $(RUN)/clusters
clusters: setup ## embed, k-means, kNN, dedup, 5-pair clusters: INPUT=mined OUTPUT=clusters
	$(PYTHON) -m pipelines.build_clusters --mined "$(INPUT)" --output "$(OUTPUT)" --runner $(RUNNER) $(BEAM_ARGS)

tasks: INPUT ?= $(RUN)
tasks: OUTPUT ?= $(RUN)/tasks
tasks: setup ## task shards + dataset card: INPUT= (a run folder: mined/kept/ + clusters/) OUTPUT=
	$(PYTHON) -m pipelines.build_tasks --input "$(INPUT)" --output "$(OUTPUT)" --seed $(SEED) --runner $(RUNNER) \
		--shard-size $(SHARD_SIZE) $(if $(STYLE_DIR),--style-dir "$(STYLE_DIR)") \
		$(if $(FACES_DIR),--faces-dir "$(FACES_DIR)") $(TASKS_ARGS) $(BEAM_ARGS)

train: INPUT ?= $(RUN)/clusters/shards
train: OUTPUT ?= $(RUN)/train
train: setup ## train on shards (cluster shards: stage 1; task shards: stage 2): INPUT= OUTPUT= [CONFIG=tiny STEPS=]
	$(PYTHON) -m train --config $(CONFIG) --shards "$(INPUT)" --output "$(OUTPUT)" $(if $(STEPS),--steps $(STEPS))

report: INPUT ?= $(OUT)/demo
report: OUTPUT ?= $(INPUT)/report
report: setup ## static HTML report of a run folder: INPUT= (default out/demo) OUTPUT=
	$(PYTHON) -m pipelines.report --run "$(INPUT)" --output "$(OUTPUT)"

dataset: setup ## a user's pairs to task shards: INPUT= (any reader input) OUTPUT= folder for records/ mined/ clusters/ tasks/
	@test -n "$(INPUT)" -a -n "$(OUTPUT)" || { echo "usage: make dataset INPUT=pairs.csv OUTPUT=out/mydata"; exit 2; }
	$(MAKE) --no-print-directory read INPUT="$(INPUT)" OUTPUT="$(OUTPUT)/records"
	$(MAKE) --no-print-directory mine INPUT="$(OUTPUT)/records" OUTPUT="$(OUTPUT)/mined"
	$(MAKE) --no-print-directory clusters INPUT="$(OUTPUT)/mined" OUTPUT="$(OUTPUT)/clusters"
	$(MAKE) --no-print-directory tasks INPUT="$(OUTPUT)" OUTPUT="$(OUTPUT)/tasks"
