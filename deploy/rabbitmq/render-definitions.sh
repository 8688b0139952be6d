#!/bin/sh
# Writes RabbitMQ's definitions: TEMPLATE (definitions.json beside this script) with every
# ${RABBITMQ_<USER>_PASSWORD} replaced by that variable's value, into OUTPUT, readable by its owner
# only. The passwords come from Secrets (Kubernetes) or deploy/compose.env (Compose) and never
# enter the repository; they go into AMQP URLs, so each must be letters and digits.
# Usage: render-definitions.sh TEMPLATE OUTPUT
set -eu
template=$1
output=$2
script=
for variable in $(grep -o '\${RABBITMQ_[A-Z]*_PASSWORD}' "$template" | tr -d '${}' | sort -u); do
  value=$(printenv "$variable") || { echo "render-definitions: $variable is not set" >&2; exit 1; }
  case $value in
    '' | *[!A-Za-z0-9]*) echo "render-definitions: $variable must be letters and digits" >&2; exit 1 ;;
  esac
  script="${script}s/[$]{$variable}/$value/g;"
done
umask 077
sed -e "$script" "$template" > "$output"
