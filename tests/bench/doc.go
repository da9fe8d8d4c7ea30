// Package bench measures Hookline end to end on real processes: a
// nats-server built from the pinned module (file storage), a real
// redis-server, the producer and deliverer binaries, and a local sink that
// answers 200 and records when each webhook arrived.
//
// The scenarios (see Run): throughput 1×1 published straight to NATS, through
// the HTTP batch endpoint and through the single-event endpoint; fan-out
// 1×10; latency at a fixed rate; the limit (a bare Go HTTP client POSTing the
// same body to the same sink with the same concurrency); CPU seconds per
// 1,000 deliveries and peak RSS of every process. Each runs under three
// nats-server settings (-syncs): "always", one node with sync_interval:
// always; "default", one node with the NATS default sync; and "r3",
// production's shape — a three-node cluster with sync_interval: always and
// every stream at three replicas (HOOKLINE_STREAM_REPLICAS=3), where
// nats-server syncs on flush rather than per message. Under r3 the CPU and
// peak RSS of nats-server are summed over the three nodes ("nats-server
// ×3") and a perf profile covers node 1 only.
//
// `make bench` runs BenchmarkPipeline once; `make soak` runs BenchmarkSoak
// (deliverer RSS over ten minutes with 10,000 tasks in flight). Neither has
// a pass/fail threshold: they print numbers, and write JSON and a PNG chart
// under results/. `make test` runs only TestSmoke, a tiny end-to-end run
// that checks the harness produces deliveries.
package bench
