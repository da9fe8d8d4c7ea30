// Package tests holds the process-level suites: end-to-end, fault injection
// and the benchmark harness. They start the real binaries.
package tests
