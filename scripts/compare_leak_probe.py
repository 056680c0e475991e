#!/usr/bin/env python3
"""Check hmmclf's leakage audit against an external leakage probe on the same folds.

The external probe (a 1-nearest-neighbour memoriser on librosa MFCC statistics without mean
normalisation, scored on the folds of given predictions.csv files) is run as a separate program;
its Scores are printed beside the audit's "MFCC statistics" probe of each report (the view that
computes the same features without librosa). Agreement within about 2 points is expected.

usage: python scripts/compare_leak_probe.py PROBE_PY TRUE_CSV AUDIO_DIR MAP_CSV REPORT_DIR...

  PROBE_PY   the external probe script (arguments: TRUE_CSV AUDIO_DIR MAP_CSV FOLDS_CSV...; it prints
             its Score under true-patient folds, under plain folds, then under each FOLDS_CSV's folds,
             as fractions)
  TRUE_CSV, AUDIO_DIR, MAP_CSV   passed through to it (the truth, the original clips, anon -> original)
  REPORT_DIR  hmmclf cv reports (run with --dead-zone off, so their folds are the ones in predictions.csv)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    if len(argv) < 6:
        print(__doc__, file=sys.stderr)
        return 2
    probe, truth, audio, mapping, *reports = argv[1:]
    folds = [str(Path(r) / "predictions.csv") for r in reports]
    out = subprocess.run([sys.executable, probe, truth, audio, mapping, *folds], capture_output=True, text=True)
    if out.returncode:
        print(out.stderr, file=sys.stderr)
        return 1
    scores = [100 * float(v) for v in out.stdout.split()]
    print(f"external probe: true-patient folds {scores[0]:.1f}, plain folds {scores[1]:.1f}")
    print(f"{'report':40s} {'external':>9s} {'hmmclf audit':>13s} {'difference':>11s}")
    worst = 0.0
    for report, external in zip(reports, scores[2:]):
        audit = json.loads((Path(report) / "report.json").read_text())["leakage"]["views"]["mfcc"]
        ours = audit.get("score_grouped_folds", audit["score_folds_used"])
        worst = max(worst, abs(ours - external))
        print(f"{report:40s} {external:9.1f} {ours:13.1f} {ours - external:+11.1f}")
    print(f"largest difference: {worst:.1f} points")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
