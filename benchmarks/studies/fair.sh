#!/usr/bin/env bash
# The fair study's working loop (docs/results/fair/PLAN.md), resumable across sessions and machines:
# the tuning journal and every finished run's config and evaluation are committed under docs/results/fair,
# and a fresh machine continues from them.
#
#   bash benchmarks/studies/fair.sh tune     # restore the journal from git if needed, continue the tuning
#   bash benchmarks/studies/fair.sh sync     # copy what has finished into docs/results/fair (then commit it)
#   bash benchmarks/studies/fair.sh grid     # after the tuning: write fair.yaml from tuned.yaml (commit it)
#   bash benchmarks/studies/fair.sh runs     # the final runs still missing from docs/results/fair/runs
#   bash benchmarks/studies/fair.sh report   # once all runs are in: compare, report, findings, levelling-off
#                                            # check, resumed runs, CPU-hours, parameter counts
#
# Long steps belong in the background:  nohup nice bash benchmarks/studies/fair.sh tune > fair-tune.log 2>&1 &
# Runs import the code of the checkout they start from: train from a checkout of its own, so that edits to
# the working tree cannot reach a running sweep, e.g.
#   git worktree add --detach ../study && cd ../study &&
#   PYTHONPATH=$PWD OUT=<the working tree>/docs/results/fair nohup nice bash benchmarks/studies/fair.sh runs &
set -euo pipefail
cd "$(dirname "$0")/../.."
LOGDIR=${LOGDIR:-$HOME/runs/fair}
OUT=${OUT:-docs/results/fair}
GRID=${GRID:-benchmarks/studies/fair.yaml}
PUBLISHED=${PUBLISHED:-docs/results/fair}  # the study's published folder: no analysis there before every run
ENV=PickupDistractors-v0
RIMS_RL=${RIMS_RL:-python train_agent.py}

restore_journal() {  # a fresh machine: the committed Optuna journal continues the studies
  if [ -f "$OUT/tuning/$ENV/tune.journal" ] && [ ! -f "$LOGDIR/tune/$ENV/tune.journal" ]; then
    mkdir -p "$LOGDIR/tune/$ENV"
    cp "$OUT/tuning/$ENV/tune.journal" "$LOGDIR/tune/$ENV/tune.journal"
  fi
}

case "${1:-}" in
  tune)
    restore_journal
    $RIMS_RL tune benchmarks/studies/fair_tune.yaml --trials 16 --seeds-per-trial 2 --logdir "$LOGDIR/tune" \
      --no-progress
    ;;
  grid)
    python benchmarks/studies/fair_runs.py grid "$OUT/tuning/$ENV" --grid "$GRID"
    ;;
  runs)
    todo=$(python benchmarks/studies/fair_runs.py missing "$OUT/runs" --grid "$GRID")
    failed=0
    while read -r env label seeds; do
      [ -n "$env" ] || continue  # nothing missing
      # a failed sweep leaves its runs missing for the next call; the other tasks and labels go on
      # shellcheck disable=SC2086  # the seeds are separate arguments
      $RIMS_RL sweep "$GRID" --env "$env" --label "$label" --seed $seeds --evaluate \
        --logdir "$LOGDIR/runs" --no-progress < /dev/null || failed=1
    done <<< "$todo"
    exit "$failed"
    ;;
  sync)
    mkdir -p "$OUT/tuning"
    if [ -d "$LOGDIR/tune/$ENV" ]; then
      mkdir -p "$OUT/tuning/$ENV"
      for f in tune.journal trials.csv tuned.yaml; do
        if [ -f "$LOGDIR/tune/$ENV/$f" ]; then cp "$LOGDIR/tune/$ENV/$f" "$OUT/tuning/$ENV/"; fi
      done
      # a copy taken while the tune appends may end in half a record: keep whole records only
      python -c 'import sys; from pathlib import Path; from agents.experiments.tune.storage import repair_journal
repair_journal(Path(sys.argv[1]))' "$OUT/tuning/$ENV/tune.journal"
      cp "$LOGDIR"/tune/$ENV/best_*.yaml "$OUT/tuning/$ENV/" 2>/dev/null || true
    fi
    if [ -d "$LOGDIR/runs" ]; then
      python benchmarks/studies/fair_runs.py publish "$LOGDIR/runs" "$OUT/runs"
    fi
    ;;
  report)
    todo=$(python benchmarks/studies/fair_runs.py missing "$OUT/runs" --grid "$GRID")
    if [ -n "$todo" ]; then
      if [ "${PARTIAL:-}" != 1 ] || [ "$(realpath -m "$OUT")" = "$(realpath -m "$PUBLISHED")" ]; then
        echo "fair.sh report: $(wc -l <<< "$todo") (task, label) pairs of $GRID still lack runs, so there is" \
          "no result to report; finish 'fair.sh runs' (a look at the runs so far: PARTIAL=1 OUT=<a copy elsewhere>)" >&2
        exit 2
      fi
    fi
    $RIMS_RL report "$OUT/runs" --out "$OUT" --study "$GRID"
    $RIMS_RL report "$OUT/tuning" --out "$OUT/tuning"  # every trial of every label, and the best values
    python benchmarks/studies/fair_runs.py levelled "$OUT/runs" > "$OUT/levelled.md"
    python benchmarks/studies/fair_runs.py resumed "$OUT/runs" > "$OUT/resumed.md"
    python benchmarks/studies/findings.py "$OUT" --study "$GRID" > "$OUT/findings.md"
    python benchmarks/studies/findings.py "$OUT" --study "$GRID" --in-words > "$OUT/in-words.md"  # README's Findings
    python benchmarks/studies/fair_runs.py compute "$OUT" --grid "$GRID" > "$OUT/compute.md"
    python benchmarks/studies/fair_runs.py parameters --grid "$GRID" > "$OUT/parameters.md"
    ;;
  *)
    sed -n '2,17p' "$0"
    exit 2
    ;;
esac
