# The tutorial's command-line session (docs/guide/tutorial.md); run from docs/examples.
set -euo pipefail

# --8<-- [start:worker]
: > worker.log                                  # there before grep reads it
durable worker tutorial_app 2> worker.log &     # serves the module's workflows and activities
WORKER=$!
until grep -q "serving task queue" worker.log; do kill -0 "$WORKER"; sleep 0.1; done
# --8<-- [end:worker]

# --8<-- [start:start]
durable start greet '"Grace"' --id greet-grace --wait --timeout 30
# --8<-- [end:start]

# --8<-- [start:inspect]
durable describe greet-grace
durable history greet-grace
durable list --name greet
# --8<-- [end:inspect]

# --8<-- [start:stop]
kill -TERM "$WORKER" && wait "$WORKER"          # a graceful stop
# --8<-- [end:stop]
