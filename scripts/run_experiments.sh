#!/usr/bin/env bash
# Run every experiments/*.toml (or the configs given) through `hmmclf cv --config`, then print
# and write the leaderboard. Usage, from a directory holding train/ and train.csv:
#   bash /path/to/hmmclf/scripts/run_experiments.sh [CONFIG.toml ...]
# Reports go to reports/exp-<name>/ (an existing one is reused, never overwritten);
# the leaderboard to reports/leaderboard.md.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
configs=("$@")
[ ${#configs[@]} -gt 0 ] || configs=("$here"/experiments/*.toml)
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
hmmclf compare reports/default "${reports[@]}" --out reports/leaderboard.md
