#!/usr/bin/env bash
# Where the shipped models beat n-grams: `probe compare` against n-grams and `probe errors`, into analyses/,
# summed up in analyses/compare/README.md (scripts/compare_readme.py).
#   scripts/compare_analyses.sh            # both shipped models, whole validation splits (minutes; n-gram fits cached)
set -euo pipefail
cd "$(dirname "$0")/.."
PROBE=${PROBE:-.venv/bin/probe}
for model in wiki shakespeare; do
  ck=trained_models/$model
  for order in 7 20; do
    "$PROBE" compare "$ck" "ngram:$order" --out "analyses/$model/compare-ngram$order" --overwrite --top 15 --png \
      > "analyses/$model/compare-ngram$order.txt"
  done
  "$PROBE" errors "$ck" --out "analyses/$model/errors" --overwrite --png > "analyses/$model/errors.txt"
done
# the figures stay in the repository as PNG (each interactive .html carries its own copy of plotly.js, ~5 MB)
find analyses/wiki analyses/shakespeare -path "*compare-ngram*" -name "*.html" -delete
find analyses/wiki analyses/shakespeare -path "*/errors/*" -name "*.html" -delete
"${PYTHON:-.venv/bin/python}" scripts/compare_readme.py analyses
echo "wrote analyses/{wiki,shakespeare}/{compare-ngram7,compare-ngram20,errors} and analyses/compare/README.md"
