# Clustering area: embeddings, FAISS k-means/kNN per domain, dedup, 5-pair clusters.
.PHONY: test-clustering bench-clustering


test-clustering: setup ## clustering tests only
	$(PYTHON) -m pytest -q tests/test_clustering_logic.py tests/test_clustering_embedders.py tests/test_clustering_pipeline.py tests/test_clustering_cross_domain.py tests/test_clustering_scale.py

bench-clustering: setup ## clustering scale benchmark (N=1000000 for the full run)
	nice -n 10 $(PYTHON) -m bench.clustering_scale --n $${N:-200000}
