# The command-line guide's task queues (docs/guide/cli.md), against $DURABLE_DATABASE_URL.
set -euo pipefail

: > worker.log
durable worker cli_app 2> worker.log &
until grep -q "serving task queue" worker.log; do kill -0 $!; sleep 0.1; done

# --8<-- [start:queues]
# across all the workers of "cli" together: at most 20 activities at once, 10 starts a
# second, and a task waiting a minute gains a priority level
durable queue configure cli --max-running-activities 20 --rate-limit 10/s --priority-aging 1m
durable start ticket '"outage"' --id T-9 --priority 1   # claimed before priorities 2 to 5
durable queue configure cli --rate-limit none           # only the limits given change
durable queue describe cli                              # limits, backlog by priority, workers
durable queue describe cli --json
durable queue configure cli --clear                     # no limits
# --8<-- [end:queues]

durable signal T-9 close
durable result T-9
kill -TERM %1 && wait
