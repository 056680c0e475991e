#!/usr/bin/env bash
# Run every experiment shipped with hmmclf (`hmmclf experiments`; the TOML files live in the
# package, hmmclf/app/experiments/) or the configs given (shipped names or TOML paths) through
# `hmmclf cv --config`, then print and write the leaderboard. Usage, from a directory holding
# train/ and train.csv:
#   bash /path/to/hmmclf/scripts/run_experiments.sh [NAME|CONFIG.toml ...]
# Reports go to reports/exp-<name>/ (an existing one is reused, never overwritten);
# the leaderboard to reports/leaderboard.md (rewritten at every run).
set -euo pipefail
configs=("$@")
if [ ${#configs[@]} -eq 0 ]; then
  mapfile -t configs < <(hmmclf experiments --names)
  [ ${#configs[@]} -gt 0 ] || { echo "run_experiments.sh: hmmclf ships no experiments" >&2; exit 1; }
fi
reports=()
for config in "${configs[@]}"; do
  name="$(basename "$config" .toml)"
  out="reports/exp-$name"
  if [ ! -f "$out/report.json" ]; then
    echo "== $name" >&2
    hmmclf cv --config "$config" --out "$out"
  fi
  reports+=("$out")
done
[ -f reports/default/report.json ] || hmmclf cv --out reports/default
hmmclf compare reports/default "${reports[@]}" --out reports/leaderboard.md --force
