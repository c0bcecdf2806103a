# Demo corpus (mining/demo_corpus/): see docs/demo_corpus.md
.PHONY: demo-corpus bench-corpus

demo-corpus: setup ## generate the embedded demo corpus into $(OUT)/demo_corpus (N=1000 SEED=0)
	$(PYTHON) -m mining.demo_corpus --output "$(OUT)/demo_corpus" --n $(or $(N),1000) --seed $(or $(SEED),0)

bench-corpus: setup ## EfficientNet-Lite0 separability of the demo corpus groups
	$(PYTHON) -m bench.corpus_separability
