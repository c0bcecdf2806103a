# Control maps (datasets/control): HED edges, sketch, saliency masks, depth loader.
.PHONY: test-control control-ods control-ods-full control-demo

test-control: setup ## control-map tests (HED port, sketch, masks, depth, CLI)
	$(PYTHON) -m pytest -q tests/test_control_hed.py tests/test_control_edges.py tests/test_control_masks.py tests/test_control_depth.py tests/test_control_cli.py

control-ods: setup ## quick HED ODS/OIS/AP (20 BSDS500 val images, gt=hybrid; cached predictions in $(OUT)/control)
	nice -n 10 $(PYTHON) -m bench.control_hed_ods --cache "$(OUT)/control/hed_bsds_val" --json "$(OUT)/control/ods_val.json"

control-ods-full: setup ## full table: 100 val images, fused + merged, weighted/hybrid/segments references (~30 min)
	nice -n 10 $(PYTHON) -m bench.control_hed_ods --n 0 --output fused merged --gt weighted hybrid segments \
		--cache "$(OUT)/control/hed_bsds_val" --json "$(OUT)/control/ods_val_full.json"

control-demo: setup ## edges, sketch and masks for the BSDS500 val list into $(OUT)/control/demo
	$(PYTHON) -m datasets.control edges --images ../shared/data/bsds500/metadata.csv --out "$(OUT)/control/demo/edges"
	$(PYTHON) -m datasets.control sketch --images ../shared/data/bsds500/metadata.csv --out "$(OUT)/control/demo/sketch"
	$(PYTHON) -m datasets.control masks --images ../shared/data/bsds500/metadata.csv --out "$(OUT)/control/demo/masks"
