# Beam's DaskRunner on a real dask.distributed cluster (a scheduler and 2 worker processes on loopback,
# pipelines/dask_cluster.py; docs/runners.md). dask[distributed] is the [dask] extra, installed by setup.
#   make test-dask             tests/test_dask_runner.py (starts and stops its own cluster)
#   make dask-up / dask-down   a cluster for your own runs: --runner dask --dask_client_address ADDRESS
DASK_TIMEOUT ?= 120
.PHONY: test-dask dask-up dask-down

test-dask: setup ## the pipelines on a dask.distributed cluster (2 worker processes), compared with FnApiRunner
	$(PYTHON) -m pipelines.dask_cluster check
	timeout $$(( $(DASK_TIMEOUT) + 900 )) $(PYTHON) -m pytest -q -rs tests/test_dask_runner.py

dask-up: setup ## start a dask scheduler + 2 workers on loopback (prints the scheduler address)
	$(PYTHON) -m pipelines.dask_cluster up --state $(OUT)/dask --timeout $(DASK_TIMEOUT)

dask-down: ## stop the cluster that dask-up started
	$(PYTHON) -m pipelines.dask_cluster down --state $(OUT)/dask
