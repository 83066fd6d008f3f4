#!/usr/bin/env bash
# Dialing benchmarks of an older revision and this tree, alternately, on the same machine in the
# same hour: the way to tell a code change from a noisy machine. Both sides run this tree's
# bench/dialing.py (the same measurement), each on its own code (PYTHONPATH).
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
saved=$(mktemp)  # the runs rewrite bench/RESULTS.md's sections: the A/B is recorded by hand
cp "$here/bench/RESULTS.md" "$saved"
trap 'cp "$saved" "$here/bench/RESULTS.md"; git -C "$here" worktree remove --force "$old"' EXIT
for round in $(seq "$rounds"); do
  for side in old new; do
    dir=$here
    [ "$side" = old ] && dir=$old
    for mode in $modes; do
      echo "=== round $round $side $mode $(date +%T)"
      (cd "$dir" && PYTHONPATH=$dir "$python" "$here/bench/dialing.py" "$mode" 2>&1 \
        | grep -E '^\| (one|two|bare|callbacks stored|`dialer serve`|CPU per)|Rounds|rounds') || true
    done
  done
done
