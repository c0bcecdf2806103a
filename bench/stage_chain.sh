#!/bin/bash
# The redesign's byte-comparison chain: the stable stage CLIs on the demo corpus (n=300) and on COCO.
#   bench/stage_chain.sh REPO OUT [SHARED]   then   python -m bench.compare_runs OLD/demo NEW/demo --allow-column stage
# Run the old and the new tree at the SAME OUT path (records and summaries hold absolute paths).
set -e
REPO=$1; OUT=$2; SHARED=${3:-$REPO/../shared/data}; PY=$REPO/.venv/bin/python
cd "$REPO"
export HF_HUB_OFFLINE=1
mkdir -p "$OUT/demo" "$OUT/coco"
$PY -c "from mining.demo_corpus import generate; generate('$OUT/demo/corpus', n=300, seed=0)" > /dev/null
for R in demo coco; do
  if [ $R = coco ]; then IN=$SHARED/coco_mini/metadata.csv; COLS="--path-col file"; else IN=$OUT/demo/corpus/pairs.csv; COLS=""; fi
  echo "== $R" >&2
  $PY -m mining.readers --input "$IN" --output "$OUT/$R/records" $COLS > "$OUT/$R/read.json"
  $PY -m pipelines.mine --input "$OUT/$R/records" --output "$OUT/$R/mined" > "$OUT/$R/mine.json"
  $PY -m pipelines.build_clusters --mined "$OUT/$R/mined" --output "$OUT/$R/clusters" > "$OUT/$R/clusters.json"
  $PY -m pipelines.build_tasks --input "$OUT/$R" --output "$OUT/$R/tasks" --seed 0 --max-samples 120 > "$OUT/$R/tasks.json"
done
