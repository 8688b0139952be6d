# Sourced by every script: the environment defaults of DESIGN §2 and §7, each overridable.
# Ports, the state directory and the node names are variables so that `make test` can run a
# second, private copy of the system beside `make run` on the same machine.

TASKFLOW_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export TASKFLOW_ROOT
export TASKFLOW_VAR="${TASKFLOW_VAR:-$TASKFLOW_ROOT/var}"
export TASKFLOW_TOOLS="${TASKFLOW_TOOLS:-$TASKFLOW_ROOT/.tools}"
export TASKFLOW_VENV="${TASKFLOW_VENV:-$TASKFLOW_ROOT/.venv}"

export GATEWAY_PORT="${GATEWAY_PORT:-8000}"
export GATEWAY_TLS_PORT="${GATEWAY_TLS_PORT:-8443}"  # HTTPS with HTTP/2, certificate from var/tls (scripts/tls)
export AUTH_PORT="${AUTH_PORT:-5001}"
export TASKS_PORT="${TASKS_PORT:-5002}"
export ADMIN_PORT="${ADMIN_PORT:-5003}"
export NOTIFY_PORT="${NOTIFY_PORT:-5004}"
export WEB_PORT="${WEB_PORT:-5005}"  # the web client's static files (scripts/web), behind the gateway
export AUTH_METRICS_PORT="${AUTH_METRICS_PORT:-9001}"
export TASKS_METRICS_PORT="${TASKS_METRICS_PORT:-9002}"
export ADMIN_METRICS_PORT="${ADMIN_METRICS_PORT:-9003}"
export NOTIFY_METRICS_PORT="${NOTIFY_METRICS_PORT:-9004}"
export AUTH_WORKER_METRICS_PORT="${AUTH_WORKER_METRICS_PORT:-9101}"
export TASKS_WORKER_METRICS_PORT="${TASKS_WORKER_METRICS_PORT:-9102}"
export ADMIN_WORKER_METRICS_PORT="${ADMIN_WORKER_METRICS_PORT:-9103}"
export NOTIFY_WORKER_METRICS_PORT="${NOTIFY_WORKER_METRICS_PORT:-9104}"
# Instances of each API service and copies of each worker (make run). Instance k (1..REPLICAS)
# listens on <SERVICE>_PORT + REPLICA_PORT_STEP * (k - 1), and so do its metrics ports: instance 2
# of auth on 5011, its metrics on 9011, its worker's on 9111 (scripts/service, scripts/worker).
export REPLICAS="${REPLICAS:-2}"
export REPLICA_PORT_STEP="${REPLICA_PORT_STEP:-10}"
export MONGODB_PORT="${MONGODB_PORT:-27017}"
export RABBITMQ_PORT="${RABBITMQ_PORT:-5672}"
export POSTGRES_PORT="${POSTGRES_PORT:-5432}"

# FerretDB storage: "sqlite" (default, files under $TASKFLOW_VAR/ferretdb) or "postgresql"
# (Debian's PostgreSQL, data under $TASKFLOW_VAR/postgres) for larger data and benchmarks.
export FERRETDB_HANDLER="${FERRETDB_HANDLER:-sqlite}"
export FERRETDB_VERSION="v1.24.2"

# Offline validators of the deployment artifacts (tests/deploy), built into $TASKFLOW_TOOLS/bin.
export KUSTOMIZE_VERSION="v5.8.2"     # the newest kustomize whose go.mod this machine's Go 1.26 accepts
export PROMETHEUS_VERSION="v0.316.0"  # Prometheus 3.x's Go module version; promtool comes from it

# The RabbitMQ node of this copy of the system; tests give their own.
export TASKFLOW_RABBITMQ_NODE="${TASKFLOW_RABBITMQ_NODE:-taskflow@localhost}"

# Debian's RabbitMQ scripts (rabbitmq-server, rabbitmqctl); bootstrap installs the package when
# rabbitmq-server is missing there.
export TASKFLOW_RABBITMQ_BIN="${TASKFLOW_RABBITMQ_BIN:-/usr/lib/rabbitmq/bin}"

# A broker or database given from outside is used instead of starting one (issue 2). Decided once,
# from the caller's environment: the defaults exported below would look, to a script that sources
# this file again (scripts/run, then scripts/bootstrap), like a database and broker given from
# outside, and nothing would be built or started (issue 16).
if [ -z "${TASKFLOW_OWN_MONGODB:-}" ]; then
  if [ -n "${MONGODB_URI:-}" ]; then TASKFLOW_OWN_MONGODB=0; else TASKFLOW_OWN_MONGODB=1; fi
fi
if [ -z "${TASKFLOW_OWN_RABBITMQ:-}" ]; then
  if [ -n "${RABBITMQ_URL:-}" ]; then TASKFLOW_OWN_RABBITMQ=0; else TASKFLOW_OWN_RABBITMQ=1; fi
fi
export TASKFLOW_OWN_MONGODB TASKFLOW_OWN_RABBITMQ
export MONGODB_URI="${MONGODB_URI:-mongodb://127.0.0.1:$MONGODB_PORT/}"
export RABBITMQ_URL="${RABBITMQ_URL:-amqp://guest:guest@127.0.0.1:$RABBITMQ_PORT/%2F}"
# Through the gateway, so any instance of auth answers (one may be restarting: make reload).
export JWKS_URL="${JWKS_URL:-http://127.0.0.1:$GATEWAY_PORT/api/v1/auth/jwks.json}"
# Every instance of a service at base port $1, comma-separated: admin calls auth's and tasks'
# internal APIs (which the gateway does not route) at each in turn, past one that is restarting.
instance_urls() {
  local urls="" k
  for ((k = 0; k < REPLICAS; k++)); do urls+="${urls:+,}http://127.0.0.1:$(($1 + REPLICA_PORT_STEP * k))"; done
  echo "$urls"
}
export AUTH_URL="${AUTH_URL:-$(instance_urls "$AUTH_PORT")}"
export TASKS_URL="${TASKS_URL:-$(instance_urls "$TASKS_PORT")}"
export PUBLIC_URL="${PUBLIC_URL:-http://127.0.0.1:$GATEWAY_PORT}"

# Debian installs nginx in /usr/sbin, which is not on a normal user's PATH.
export PATH="$TASKFLOW_VENV/bin:$TASKFLOW_TOOLS/bin:$PATH:/usr/sbin"

log() { printf '%s %s\n' "[$(basename "$0")]" "$*" >&2; }

case "$TASKFLOW_OWN_MONGODB$TASKFLOW_OWN_RABBITMQ" in
  00 | 01 | 10 | 11) ;;
  *) log "TASKFLOW_OWN_MONGODB and TASKFLOW_OWN_RABBITMQ are 1 or 0 (better: give MONGODB_URI or RABBITMQ_URL)"; exit 2 ;;
esac
