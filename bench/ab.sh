#!/usr/bin/env bash
# Dialing benchmarks of an older revision and this tree, alternately, on the same machine in the
# same hour: the way to tell a code change from a noisy machine.
#   bash bench/ab.sh BASE_REV [ROUNDS] [MODES]   e.g. bash bench/ab.sh 1b1e268 2
#                                                     bash bench/ab.sh cfe6b9d 2 intake
set -euo pipefail
base=${1:?usage: bench/ab.sh BASE_REV [ROUNDS] [MODES]}
rounds=${2:-2}
modes=${3:-ceiling intake}
here=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$here/.venv/bin/python}
old=$(mktemp -d)
git -C "$here" worktree add -q --detach "$old" "$base"
trap 'git -C "$here" worktree remove --force "$old"' EXIT
for round in $(seq "$rounds"); do
  for side in old new; do
    dir=$here
    [ "$side" = old ] && dir=$old
    for mode in $modes; do
      echo "=== round $round $side $mode $(date +%T)"
      (cd "$dir" && PYTHONPATH=$dir "$python" bench/dialing.py "$mode" 2>&1 \
        | grep -E '^\| (one|two|bare|callbacks stored)|Rounds|rounds') || true
    done
  done
done
