#ifndef CRDKAFKA_SHIM_H
#define CRDKAFKA_SHIM_H
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

/// One entry of a mock broker's error stack for a request type: the next such request fails
/// with `err` (or succeeds, for 0) after `rtt_ms`. The variadic original does not import into Swift.
static inline rd_kafka_resp_err_t mock_push_request_error_rtt_shim(
    rd_kafka_mock_cluster_t *mcluster, int32_t broker_id, int16_t api_key, rd_kafka_resp_err_t err, int rtt_ms) {
    return rd_kafka_mock_broker_push_request_error_rtts(mcluster, broker_id, api_key, 1, err, rtt_ms);
}
#endif
