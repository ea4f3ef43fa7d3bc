# The embedded database for development (docs/guide/install.md).
set -euo pipefail
trap 'durable dev stop > /dev/null' EXIT

# --8<-- [start:dev]
durable dev                                  # start (or reuse) it, migrate it, print its DSN
durable dev status                           # exit code 0 while it runs, 3 when it does not
eval "$(durable dev | grep '^export ')"      # point this shell at it: DURABLE_DATABASE_URL
durable list
durable dev stop                             # stops it; its data stays for next time
# --8<-- [end:dev]
