# Exporting runs and replaying them in CI against the new code (docs/guide/testing.md).
set -euo pipefail

python -m tutorial_run > /dev/null          # a recorded run of greet (greet-ada)

# --8<-- [start:export]
# In production (or a copy): the runs in flight, and some that closed, as JSON lines
mkdir -p histories
durable export --open -o histories/open.jsonl
durable export --closed-before 2100-01-01T00:00Z -o histories/closed.jsonl
# --8<-- [end:export]

# --8<-- [start:ci]
# In CI, with the new code checked out and the files fetched:
HISTORIES=histories python -m pytest -q -p pytest_asyncio.plugin -p no:cacheprovider --pyargs check_deploy
# --8<-- [end:ci]
