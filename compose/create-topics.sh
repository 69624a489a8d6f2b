#!/usr/bin/env bash
# Creates the topic catalogue on a real Kafka (the embedded broker does this by itself).
set -euo pipefail
kt=/opt/kafka/bin/kafka-topics.sh
server=kafka:9092
create() { $kt --bootstrap-server $server --create --if-not-exists --topic "$1" --partitions "${PARTITIONS:-6}" --replication-factor 1 "${@:2}"; }
create loyalty.members
create loyalty.orders
create loyalty.engagement
create loyalty.points.requests
create loyalty.points.commands
create loyalty.points.ledger
create loyalty.points.balances --config cleanup.policy=compact
create loyalty.tiers.changes
create loyalty.tiers.status --config cleanup.policy=compact
PARTITIONS=1 create loyalty.campaigns.definitions --config cleanup.policy=compact
create loyalty.campaigns.rewards
PARTITIONS=1 create loyalty.campaigns.results --config cleanup.policy=compact
create loyalty.notifications
create loyalty.dead-letters
