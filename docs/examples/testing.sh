# `durable check` and `durable replay` as CI steps would run them (docs/guide/testing.md).
set -euo pipefail

# --8<-- [start:check]
durable check tutorial_app               # exit code 0: nothing breaks determinism
status=0
durable check nondeterministic_app || status=$?
test "$status" -eq 1                     # exit code 1: it printed each finding
# --8<-- [end:check]

python -m tutorial_run > /dev/null          # records a run of greet: greet-ada

# --8<-- [start:replay]
durable replay tutorial_app --name greet     # the recorded runs against the current code
status=0
durable replay tutorial_changed --id greet-ada || status=$?
test "$status" -eq 1                         # NONDETERMINISM: the change would break them
# --8<-- [end:replay]
