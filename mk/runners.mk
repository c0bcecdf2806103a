# Distributed runners: a real Spark standalone cluster (master + worker processes from pyspark's own
# distribution) running the pipelines through Beam's SparkRunner (docs/runners.md).
#   make spark-jar    fetch Beam's Spark 3 job-server jar (the Beam Java version of the apache-beam pin)
#   make test-spark   install pyspark, fetch the jar, run tests/test_spark_runner.py (it starts and stops
#                     the cluster itself, start-up bounded by SPARK_TIMEOUT); each missing piece is a SKIP line
#   make spark-up / spark-down   a cluster for your own runs (state and logs in $(OUT)/spark)
PYSPARK_PIN   ?= pyspark==3.5.9
SPARK_TIMEOUT ?= 180
JAR_TIMEOUT   ?= 600
.PHONY: spark-jar spark-deps test-spark spark-up spark-down

spark-jar: setup ## Beam's Spark 3 job-server jar from Maven Central (bounded by JAR_TIMEOUT)
	@command -v java >/dev/null || { echo "SKIP: java is not installed"; exit 0; }
	$(PYTHON) -m pipelines.spark_cluster jar --timeout $(JAR_TIMEOUT)

spark-deps: spark-jar
	@command -v java >/dev/null || exit 0; \
	$(PYTHON) -c "import pipelines.spark_cluster as s; raise SystemExit(0 if s.local_jar() else 1)" || exit 0; \
	$(PYTHON) -c "import pyspark" 2>/dev/null || $(BIN)/pip install -q --disable-pip-version-check $(PYSPARK_PIN)

test-spark: spark-deps ## the pipelines on a Spark standalone cluster, compared with FnApiRunner
	$(PYTHON) -m pipelines.spark_cluster check
	timeout $$(( $(SPARK_TIMEOUT) + 2400 )) $(PYTHON) -m pytest -q -rs tests/test_spark_runner.py

spark-up: spark-deps ## start a Spark master + worker on loopback (prints the master URL)
	$(PYTHON) -m pipelines.spark_cluster up --state $(OUT)/spark --timeout $(SPARK_TIMEOUT)

spark-down: ## stop the cluster that spark-up started
	$(PYTHON) -m pipelines.spark_cluster down --state $(OUT)/spark

.PHONY: gpu-check
gpu-check: setup ## time every GPU path against its CPU path (a CUDA machine; prints SKIP without one)
	$(PYTHON) -m bench.gpu_check
