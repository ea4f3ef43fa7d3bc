# The command-line guide's session (docs/guide/cli.md), against $DURABLE_DATABASE_URL.
set -euo pipefail

# --8<-- [start:worker]
durable migrate                              # create or upgrade the schema (connect does it too)
durable doctor                               # the path to the database: pooler, notifications, latency
: > worker.log                               # there before grep reads it
durable worker cli_app 2> worker.log &       # serves the "cli" queue its definitions name
until grep -q "serving task queue" worker.log; do kill -0 $!; sleep 0.1; done
# --8<-- [end:worker]

# --8<-- [start:talk]
durable start ticket '"printer on fire"' --id T-1   # arguments are JSON (a bare word is a string)
durable signal T-1 comment '"tried turning it off"'
echo '"the toner was empty"' > note.json
durable signal T-1 comment @note.json               # @FILE: the JSON in a file
echo '"fixed"' | durable signal T-1 comment @-      # @-: the JSON on standard input
durable query T-1 comments                          # ["tried turning it off", "the toner...", "fixed"]
durable update T-1 rename '"printer on fire (3rd floor)"'
durable signal-with-start ticket '"new laptop"' --id T-2 --signal comment --signal-arg '"asap"'
durable start ticket '"scanner jams"' --id T-3 --debounce 5s --debounce-max 1m
durable start ticket '"scanner jams, twice"' --id T-3 --debounce 5s   # the same run, new arguments
durable signal T-1 close
durable result T-1 --timeout 30                     # {"title": ..., "comments": [...]}
# --8<-- [end:talk]

# --8<-- [start:look]
durable describe T-2                     # status, times, attributes, what it waits on
durable history T-1 --json > T-1.json    # every event, payloads decoded
durable list --status running --name ticket
durable count --attr team='"support"'
# --8<-- [end:look]

kill -TERM %1 && wait
