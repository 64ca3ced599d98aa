// Package deploy holds Rapport's Kubernetes manifests (k8s/: a kustomize
// base, overlays and optional components, the migrate Job and the egress
// for trace export; nats/: the reference
// values for the NATS Helm chart) and the offline test that checks them
// (RELIABILITY.md K8S-01): every overlay is rendered with kustomize, decoded
// strictly, run through Pod Security "restricted" and held to the lifecycle
// rules of RELIABILITY.md §1.10. testdata/bad is the negative control.
package deploy
