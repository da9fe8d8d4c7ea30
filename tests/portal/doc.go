// Package portal drives the embeddable portal (services/producer,
// /portal) in a real headless Chromium (Debian's chromium package,
// through chromedp) against real nats-server, redis-server, producer,
// deliverer and receiver processes. Screenshots go to results/portal.
package portal
