// Package docs checks the documentation against the code: every HOOKLINE_*
// variable a binary reads is in docs/configuration.md exactly once (and
// nothing else is), and every relative link of the Markdown files resolves
// to a file and, for a Markdown target, to a heading.
package docs
