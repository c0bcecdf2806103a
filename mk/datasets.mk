# datasets/tasks: multi-modal instruction task shards (pipelines/build_tasks.py).
#   make tasks INPUT= OUTPUT= ... lives in mk/stages.mk with the other stage targets
#   make tasks-real      real COCO images + StyleDrop styles from ../shared/data -> $(OUT)/tasks_real
#   make tasks-previews  one picture per task in docs/tasks from $(OUT)/tasks_real
SHARED_DATA ?= ../shared/data

.PHONY: tasks-real tasks-previews

tasks-real: setup ## task shards from real COCO images + StyleDrop styles (../shared/data) -> $(OUT)/tasks_real
	$(PYTHON) -m datasets.real_inputs --src "$(SHARED_DATA)/coco_mini" --out "$(OUT)/tasks_real_in"
	$(PYTHON) -m pipelines.build_tasks --input "$(OUT)/tasks_real_in" --output "$(OUT)/tasks_real" \
		--style-dir "$(SHARED_DATA)/styledrop" --seed $(SEED) --embed-text $(TASKS_ARGS)

tasks-previews: setup ## one PNG per task in docs/tasks from $(OUT)/tasks_real
	$(PYTHON) -m datasets.preview --shards "$(OUT)/tasks_real/shards" --out docs/tasks
