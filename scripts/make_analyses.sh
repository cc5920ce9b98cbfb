#!/usr/bin/env bash
# Regenerate analyses/ from the shipped models: record each model on its validation split (kept when the
# recording already matches the shipped weights), then write
# one report per model (`probe report`) and the findings summary (analyses/README.md).
#   make analyses        (or: bash scripts/make_analyses.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export NUMBA_CACHE_DIR=${NUMBA_CACHE_DIR:-$PWD/.numba_cache}
mkdir -p recordings analyses

$PY -m probe record trained_models/wiki --out recordings/wiki-val --reuse
$PY -m probe record trained_models/shakespeare --out recordings/shakespeare-val --reuse

$PY -m probe report recordings/wiki-val --concepts url,wiki-link,column,quote,bracket-depth,xml-tag \
  --out analyses/wiki --overwrite
$PY -m probe report recordings/shakespeare-val --concepts column,line-end-distance \
  --out analyses/shakespeare --overwrite
$PY scripts/analyses_readme.py analyses
$PY scripts/dashboard_screenshot.py

# the atlas of every h and c unit (kept in the recording too, where the dashboard and `probe neuron` read it)
for m in wiki shakespeare; do
  $PY -m probe atlas recordings/$m-val --kinds h,c --quiet
  rm -rf analyses/atlas-$m && mkdir -p analyses/atlas-$m
  cp recordings/$m-val/atlas/{index.html,atlas.csv,atlas.json} analyses/atlas-$m/
done
# the shipped sparse autoencoders: units against features, per concept (scripts/sae_analyses.py)
$PY scripts/sae_analyses.py
