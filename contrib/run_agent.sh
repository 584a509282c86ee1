#!/bin/sh
# run_agent.sh — start one sai3bench agent in a Docker container on this host, as a daemon that
# survives the SSH session, logging to a file on the host (the seed's "Production Best Practices").
#
# Usage: contrib/run_agent.sh [AGENT_ID [PORT]]      (defaults: agent-1 7761)
#
# Environment:
#   IMAGE        image to run (default sai3bench:latest; build it with the repository's Dockerfile)
#   LOG_DIR      host directory mounted at /logs (default $HOME/sai3-logs): the agent's log
#                agent-<ID>.log, the results of its runs (sai3-<time>-<ID>/) and, with --tls, its
#                certificate (state-<ID>/) are kept there
#   AGENT_ARGS   more sai3bench-agent options, e.g. "--tls --auth-token-file /logs/token"
#   DOCKER_USER  user:group the agent runs as (default: yours, so that LOG_DIR stays yours);
#                empty: the image's user (sai3bench, uid 10001)
#   DOCKER       the docker command (default docker; podman works too)
#   Credentials are passed to the container by name only (docker run -e NAME), and only those
#   that are set: AWS_*, AZURE_STORAGE_*, GOOGLE_*, STORAGE_EMULATOR_HOST, SAI3_LOG, RUST_LOG.
#   GOOGLE_APPLICATION_CREDENTIALS names a file: it is mounted read-only at the same path.
#
# The container's network is the host's (--net=host): the agent listens on 0.0.0.0:PORT.
# An existing container of the same name (sai3-agent-<ID>) is removed first.
set -eu

AGENT_ID="${1:-agent-1}"
PORT="${2:-7761}"
IMAGE="${IMAGE:-sai3bench:latest}"
LOG_DIR="${LOG_DIR:-${HOME:-/tmp}/sai3-logs}"
AGENT_ARGS="${AGENT_ARGS:-}"
DOCKER="${DOCKER:-docker}"
DOCKER_USER="${DOCKER_USER-$(id -u):$(id -g)}"

case "$AGENT_ID" in
    "" | [!A-Za-z0-9]* | *[!A-Za-z0-9_.-]*)
        echo "run_agent.sh: AGENT_ID '$AGENT_ID': use letters, digits, '_', '.', '-'" >&2
        exit 2 ;;
esac
case "$PORT" in
    "" | *[!0-9]*) echo "run_agent.sh: PORT '$PORT' is not a number" >&2; exit 2 ;;
esac
if [ "$PORT" -lt 1 ] || [ "$PORT" -gt 65535 ]; then
    echo "run_agent.sh: PORT $PORT is out of range" >&2
    exit 2
fi

NAME="sai3-agent-${AGENT_ID}"
mkdir -p "$LOG_DIR"
LOG_DIR="$(cd "$LOG_DIR" && pwd)"

# Runs inside the container as PID 1 (sh, since the image's entry point is the agent itself):
# the agent's output goes to `docker logs` and to /logs/agent-<ID>.log through tee (which ignores
# signals and ends with the agent's output); SIGTERM from `docker stop` is passed on to the agent,
# which then aborts an active run, keeps its results and exits 0. $1 = agent id, $2 = port.
# shellcheck disable=SC2016 # expanded by the container's shell, not here
SCRIPT='set -u
fifo="${TMPDIR:-/tmp}/sai3-agent-$1.fifo"
rm -f "$fifo"
mkfifo "$fifo" || exit 1
(trap "" TERM INT; exec tee -a "/logs/agent-$1.log") <"$fifo" &
tee_pid=$!
# shellcheck disable=SC2086 # SAI3_AGENT_ARGS: options, split at white space on purpose
sai3bench-agent --listen "0.0.0.0:$2" --results-root /logs --state-dir "/logs/state-$1" \
    ${SAI3_AGENT_ARGS:-} >"$fifo" 2>&1 &
agent=$!
trap '\''kill -TERM "$agent" 2>/dev/null'\'' TERM INT
rc=0
while kill -0 "$agent" 2>/dev/null; do wait "$agent"; rc=$?; done
wait "$tee_pid"
rm -f "$fifo"
exit "$rc"'

# Options of docker run, built up as the positional parameters.
set -- run -d --name "$NAME" --net=host -v "$LOG_DIR:/logs"
if [ -n "$DOCKER_USER" ]; then
    set -- "$@" --user "$DOCKER_USER"
fi
# Credentials and settings by name: the values never appear on a command line.
for var in $(env | sed -n 's/^\(AWS_[A-Z0-9_]*\)=.*/\1/p; s/^\(AZURE_STORAGE_[A-Z0-9_]*\)=.*/\1/p;
                            s/^\(GOOGLE_[A-Z0-9_]*\)=.*/\1/p' | sort -u) \
           STORAGE_EMULATOR_HOST SAI3_LOG RUST_LOG; do
    if eval "[ -n \"\${$var+set}\" ]"; then
        set -- "$@" -e "$var"
    fi
done
if [ -n "${GOOGLE_APPLICATION_CREDENTIALS:-}" ] && [ -f "$GOOGLE_APPLICATION_CREDENTIALS" ]; then
    set -- "$@" -v "$GOOGLE_APPLICATION_CREDENTIALS:$GOOGLE_APPLICATION_CREDENTIALS:ro"
fi
set -- "$@" -e "SAI3_AGENT_ARGS=$AGENT_ARGS" --entrypoint /bin/sh "$IMAGE" \
    -c "$SCRIPT" sh "$AGENT_ID" "$PORT"

# Stop the previous one (if any), then start.
"$DOCKER" rm -f "$NAME" >/dev/null 2>&1 || true
"$DOCKER" "$@" >/dev/null

echo "Agent $AGENT_ID started in container $NAME on port $PORT"
echo "  logs:    $DOCKER logs -f $NAME"
echo "     or:   tail -f $LOG_DIR/agent-$AGENT_ID.log"
echo "  results: $LOG_DIR/sai3-*-$AGENT_ID/"
echo "  stop:    $DOCKER stop $NAME"
