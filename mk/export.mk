# img2dataset-layout WebDataset export of a mined, cluster or task subset (docs/FORMATS.md).
#   make i2d-export INPUT=$(RUN)/mined OUTPUT=$(RUN)/export [EXPORT_ARGS="--domain art --image-size 256 --resize-mode center_crop"]
EXPORT_ARGS ?=
.PHONY: i2d-export
i2d-export: INPUT ?= $(RUN)/mined
i2d-export: OUTPUT ?= $(RUN)/export
i2d-export: setup ## any mined/clusters/tasks subset as img2dataset-layout WebDataset: INPUT= OUTPUT= [EXPORT_ARGS=]
	$(PYTHON) -m pipelines.export --input "$(INPUT)" --output "$(OUTPUT)" $(EXPORT_ARGS)
