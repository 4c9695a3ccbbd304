#!/usr/bin/env bash
# Runs a README example that needs Redis: starts a private redis-server on a free loopback
# port (persistence off), runs the example with the port as its argument, stops the server
# (also when the example fails). Usage: with_redis.sh <example>
set -euo pipefail
dir=$(mktemp -d /tmp/safemap-docs-redis-XXXXXX)
pid=""
trap '[[ -z "$pid" ]] || { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; }; rm -rf "$dir"' EXIT
for attempt in 1 2 3 4 5; do
  port=$((20000 + RANDOM % 20000))
  redis-server --save '' --appendonly no --port "$port" --bind 127.0.0.1 --daemonize no \
    --dir "$dir" --logfile "$dir/redis.log" &
  pid=$!
  for _ in $(seq 200); do
    kill -0 "$pid" 2>/dev/null || break
    redis-cli -p "$port" ping >/dev/null 2>&1 && break
    sleep 0.05
  done
  if redis-cli -p "$port" info server 2>/dev/null | grep -qE "^process_id:${pid}[[:space:]]*$"; then
    "$1" "$port"
    exit $?
  fi
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=""
done
echo "with_redis.sh: could not start redis-server" >&2
exit 1
