// Package bench measures Hookline end to end on real processes: a
// nats-server built from the pinned module (file storage), a real
// redis-server, the producer and deliverer binaries, and a local sink that
// answers 200 and records when each webhook arrived.
//
// The scenarios (see Run): throughput 1×1 published straight to NATS, through
// the HTTP batch endpoint and through the single-event endpoint; fan-out
// 1×10; latency at a fixed rate; the limit (a bare Go HTTP client POSTing the
// same body to the same sink with the same concurrency); CPU seconds per
// 1,000 deliveries and peak RSS of every process. Each runs twice: with
// sync_interval: always (production) and with the NATS default.
//
// `make bench` runs BenchmarkPipeline once; `make soak` runs BenchmarkSoak
// (deliverer RSS over ten minutes with 10,000 tasks in flight). Neither has
// a pass/fail threshold: they print numbers, and write JSON and a PNG chart
// under results/. `make test` runs only TestSmoke, a tiny end-to-end run
// that checks the harness produces deliveries.
package bench
