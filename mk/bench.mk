# End-to-end benchmark: per-stage records/s, Beam overhead vs direct calls, shard I/O vs plain files.
.PHONY: bench-e2e
bench-e2e: setup ## the docs/benchmarks.md table (ROUNDS=2 alternates sides and keeps each side's best)
	nice -n 10 $(PYTHON) -m bench.pipeline_e2e --rounds $(or $(ROUNDS),2)
