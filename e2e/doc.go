// Package e2e holds the end-to-end tests of the container image and
// compose.yaml (build tag e2e; run them with make e2e, which installs
// Docker if needed and builds local images). It imports nothing of
// BackupKit's: it drives the image from the outside.
package e2e
