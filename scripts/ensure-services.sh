#!/usr/bin/env bash
# Start PostgreSQL, Redis and RabbitMQ if they are down, with the machine's own commands, and fail
# loudly if one cannot start: a missing server must never turn into silently skipped tests.
set -uo pipefail

fail() { echo "ensure-services: $*" >&2; exit 1; }

wait_for() {  # name, check command
  local name=$1; shift
  for _ in $(seq 1 60); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  fail "$name did not come up"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! port_open 5432; then
  echo "ensure-services: starting PostgreSQL"
  command -v pg_ctlcluster >/dev/null || fail "PostgreSQL is down and pg_ctlcluster is not installed"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || fail "PostgreSQL failed to start"
  wait_for PostgreSQL port_open 5432
fi
if command -v pg_isready >/dev/null; then
  wait_for PostgreSQL pg_isready -h 127.0.0.1 -p 5432 -q
fi

if ! port_open 6379; then
  echo "ensure-services: starting Redis"
  command -v redis-server >/dev/null || fail "Redis is down and redis-server is not installed"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || fail "Redis failed to start"
  wait_for Redis port_open 6379
fi

if ! port_open 5672; then
  echo "ensure-services: starting RabbitMQ"
  command -v rabbitmq-server >/dev/null || fail "RabbitMQ is down and rabbitmq-server is not installed"
  rabbitmq-server -detached || fail "RabbitMQ failed to start"
  wait_for RabbitMQ port_open 5672
fi

echo "ensure-services: PostgreSQL, Redis and RabbitMQ are up"
