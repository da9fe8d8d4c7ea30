// Package deploy checks the deployment artefacts — docker-compose.yml, the
// Dockerfiles, k8s/ (kustomize) and deploy/ (nats-server configuration) —
// without Docker or a cluster: it loads them with the libraries the real
// tools use and asserts what an operator relies on.
package deploy
