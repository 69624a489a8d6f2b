#!/usr/bin/env bash
# Creates the topic catalogue on a real Kafka (the embedded broker does this by itself).
# Input topics keep every record (retention.ms=-1): a store is rebuilt, or a new instance
# started, by reading them from the beginning; members are the exception, compacted for
# erasure. Outputs keep the broker's default (7 days).
set -euo pipefail
kt=/opt/kafka/bin/kafka-topics.sh
server=kafka:9092
create() { $kt --bootstrap-server $server --create --if-not-exists --topic "$1" --partitions "${PARTITIONS:-6}" --replication-factor 1 "${@:2}"; }
keep=(--config retention.ms=-1)
# What shops write is stamped by the broker: an event far ahead of its partition's stream time
# is let in within the margin of that stamp, which no writer can move (docs/operations.md).
stamped=(--config message.timestamp.type=LogAppendTime)
# Members carry contact data: compacted, so that the shop's tombstone after member.closed
# removes every record of the member (docs/operations.md, "Erasure").
create loyalty.members "${stamped[@]}" --config cleanup.policy=compact --config min.compaction.lag.ms=604800000 --config delete.retention.ms=86400000
create loyalty.orders "${keep[@]}" "${stamped[@]}"
create loyalty.engagement "${keep[@]}" "${stamped[@]}"
create loyalty.points.requests "${keep[@]}" "${stamped[@]}"
create loyalty.points.commands "${keep[@]}"
create loyalty.points.ledger "${keep[@]}"
create loyalty.points.balances --config cleanup.policy=compact
create loyalty.tiers.changes "${keep[@]}"
create loyalty.tiers.status --config cleanup.policy=compact
PARTITIONS=1 create loyalty.campaigns.definitions --config cleanup.policy=compact
create loyalty.campaigns.commands "${keep[@]}"
create loyalty.campaigns.rewards "${keep[@]}"
PARTITIONS=1 create loyalty.campaigns.results --config cleanup.policy=compact
# Claims on campaign budgets and the keeper's answers: a member waits on them, read soon after.
create loyalty.campaigns.budget-claims
create loyalty.campaigns.budget-answers
create loyalty.notifications
create loyalty.dead-letters
# Which instance serves which tasks (member lookups, and where warm copies go): the latest
# announcement of each instance.
PARTITIONS=1 create loyalty.instances --config cleanup.policy=compact
# Changelogs (LOYALTY_CHANGELOG=on): each row's latest state must stay, so compaction only,
# never deletion by time. They hold what the stores hold (contact data for notifications):
# an erased row's older states go at the next compaction, so compact within a day. A partition
# per task: with LOYALTY_STORE_LAYOUT=task each task's store writes its own (the one store of
# the service layout writes partition 0).
for service in points tiers campaigns campaign-budgets notifications; do
  create loyalty.$service.changelog --config cleanup.policy=compact --config max.compaction.lag.ms=86400000
done
