#!/usr/bin/env bash
# Callback-intake A/B: `bench/dialing.py intake` of an older revision and of this tree,
# alternately, on the same machine in the same minutes.
#   bash bench/ab_intake.sh BASE_REV [ROUNDS]      e.g. bash bench/ab_intake.sh cfe6b9d 2
set -euo pipefail
base=${1:?usage: bench/ab_intake.sh BASE_REV [ROUNDS]}
rounds=${2:-2}
here=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$here/.venv/bin/python}
old=$(mktemp -d)
git -C "$here" worktree add -q --detach "$old" "$base"
trap 'git -C "$here" worktree remove --force "$old"' EXIT
for round in $(seq "$rounds"); do
  for side in old new; do
    dir=$here; [ "$side" = old ] && dir=$old
    echo "=== round $round $side intake $(date +%T)"
    (cd "$dir" && PYTHONPATH=$dir "$python" bench/dialing.py intake 2>&1 | grep -E 'callbacks|Rounds|rounds|\|') || true
  done
done
