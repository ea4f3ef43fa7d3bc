# A worker serving Prometheus metrics and a health check (docs/guide/deployment.md).
set -euo pipefail
PORT=$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

# --8<-- [start:metrics]
durable worker tutorial_app --metrics-port "$PORT" --metrics-host 127.0.0.1 2> worker.log &
until curl -sf "http://127.0.0.1:$PORT/healthz" > /dev/null; do sleep 0.1; done   # 200: serving
durable start greet '"Kim"' --wait --timeout 30 > /dev/null
curl -s "http://127.0.0.1:$PORT/metrics" | grep '^durable_workflows_completed_total'
# --8<-- [end:metrics]
kill -TERM %1 && wait
