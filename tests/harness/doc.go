// Package harness runs Hookline the way production does — the real producer,
// deliverer and hookctl binaries, a real nats-server (as its own process, so
// it can be kill -9'ed and restarted on the same store) and a real
// redis-server — and checks what comes out.
//
// The pieces:
//
//   - Build compiles the binaries once per test binary (see Main).
//   - Process wraps a subprocess: Start (awaiting readiness), Stop (SIGTERM),
//     Kill (SIGKILL), Restart; its output goes to a file under the test's
//     temporary directory and is dumped when the test fails.
//   - NATS and Cluster start nats-server processes with file storage and
//     sync_interval: always; Producer and Deliverer start the services.
//   - Receiver is a loopback HTTP server whose endpoints record every
//     webhook (event id × endpoint) and can answer 200, 500, hang, slowly,
//     reset the connection or send a huge body.
//   - Checker is the accounting: accepted events, delivered pairs,
//     dead-lettered pairs, and the invariant that every accepted event ×
//     matching subscription is delivered or dead-lettered, nothing unexpected
//     appears, and duplicates stay within a bound.
//   - Proxy is a TCP fault proxy that can black-hole or cut the connections
//     between a service and NATS.
//
// Nothing here sleeps to synchronise: readiness and convergence are polled
// with deadlines (Eventually).
package harness
