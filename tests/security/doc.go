// Package security holds the least-privilege suites: the example
// nats-server configuration and Redis ACL file in deploy/security, loaded
// as shipped into real servers, must let each component do its work and
// refuse the rest.
package security
