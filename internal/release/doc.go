// Package release holds what the release packages are made of: the nfpm
// description (nfpm.yaml), the example configuration shipped in /etc/spanflow
// (etc/), the maintainer scripts (scripts/), and the test that builds the
// packages with scripts/release, installs the .deb on this machine and
// checks the .rpm with rpm's own tools. It has no Go code of its own.
package release
