# Distributed runners: a real Spark standalone cluster (master + worker processes from pyspark's own
# distribution) and Beam's Spark job server, running the pipelines through Beam's SparkRunner
# (docs/runners.md, pipelines/spark_cluster.py).
#   make spark-jobserver  resolve Beam's Spark runner + job-service jars with Maven (no job-server jar is
#                         served; pipelines/spark_cluster.py:BEAM_JAVA is the newest version whose jars are)
#   make test-spark       install pyspark, resolve the job server, run tests/test_spark_runner.py (it starts
#                         and stops the cluster itself, start-up bounded by SPARK_TIMEOUT); each missing
#                         piece (Java, Maven, a served artifact) is a SKIP line
#   make spark-up / spark-down   a cluster + job server for your own runs (state and logs in $(OUT)/spark)
PYSPARK_PIN   ?= pyspark==3.5.9
SPARK_TIMEOUT ?= 240
JAR_TIMEOUT   ?= 600
.PHONY: spark-jobserver spark-deps test-spark spark-up spark-down

spark-jobserver: setup ## Beam's Spark job server from Maven Central (bounded by JAR_TIMEOUT)
	@command -v java >/dev/null || { echo "SKIP: java is not installed"; exit 0; }
	$(PYTHON) -m pipelines.spark_cluster jobserver --timeout $(JAR_TIMEOUT)

spark-deps: spark-jobserver
	@command -v java >/dev/null || exit 0; \
	$(PYTHON) -c "import pipelines.spark_cluster as s; raise SystemExit(0 if s.job_server_classpath() else 1)" \
	  || exit 0; \
	$(PYTHON) -c "import pyspark" 2>/dev/null || $(BIN)/pip install -q --disable-pip-version-check $(PYSPARK_PIN)

test-spark: spark-deps ## the pipelines on a Spark standalone cluster, compared with FnApiRunner
	$(PYTHON) -m pipelines.spark_cluster check
	timeout $$(( $(SPARK_TIMEOUT) + 2400 )) $(PYTHON) -m pytest -q -rs tests/test_spark_runner.py

spark-up: spark-deps ## start a Spark master + worker + Beam job server on loopback (prints the endpoints)
	$(PYTHON) -m pipelines.spark_cluster up --state $(OUT)/spark --timeout $(SPARK_TIMEOUT)

spark-down: ## stop the cluster that spark-up started
	$(PYTHON) -m pipelines.spark_cluster down --state $(OUT)/spark

.PHONY: gpu-check
gpu-check: setup ## time every GPU path against its CPU path (a CUDA machine; prints SKIP without one)
	$(PYTHON) -m bench.gpu_check
