# The tools a user would pick instead, for the side-by-side benchmarks bench/peers_*.py only.
# Installed into the venv without their dependencies (imagededup, clip-retrieval and all-clip pin
# older numpy / open_clip / torch stacks): nothing of the main environment is up- or downgraded.
# The pins below are what those imports need beyond the main environment.
PEERS_STAMP := $(VENV)/.bench-peers-stamp
$(PEERS_STAMP): $(STAMP)
	$(BIN)/pip install -q --disable-pip-version-check --no-deps imagededup==0.3.3.post2 pywavelets==1.9.0 \
	  matplotlib==3.11.2 contourpy==1.3.3 cycler==0.12.1 fonttools==4.68.0 kiwisolver==1.5.1 \
	  clip-retrieval==2.45.0 all-clip==1.3.0 flask-restful==0.3.10 aniso8601==10.0.1 prometheus-client==0.26.0
	$(PYTHON) -c "import numpy, torch, PIL; print('main env kept: numpy', numpy.__version__, 'torch', torch.__version__, 'pillow', PIL.__version__)"
	touch $(PEERS_STAMP)

.PHONY: bench-peers
bench-peers: setup $(PEERS_STAMP) ## near-dup vs imagededup, embedding vs clip_inference, shards vs webdataset/img2dataset
	nice -n 10 $(PYTHON) -m bench.peers_dedup
	nice -n 10 $(PYTHON) -m bench.peers_embed
	nice -n 10 $(PYTHON) -m bench.peers_shards

bench: $(PEERS_STAMP)
