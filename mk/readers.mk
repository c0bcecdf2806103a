# Readers (mining/readers): inputs -> records-NNNNN.parquet. See docs/readers.md.
.PHONY: test-readers readers-coco

READ_INPUT ?= ../shared/data/coco_mini/metadata.json

test-readers: setup ## readers: tests (real COCO/Flickr8k pairs, loopback img2dataset download)
	$(PYTHON) -m pytest -q tests/test_readers.py tests/test_img2dataset_loopback.py

readers-coco: setup ## readers: read READ_INPUT (default coco_mini) into $(OUT)/records
	$(PYTHON) -m mining.readers --input "$(READ_INPUT)" --output "$(OUT)/records"
