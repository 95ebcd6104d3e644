//go:build !linux

package listen

import "errors"

// attachReusePortProgram needs Linux (SO_ATTACH_REUSEPORT_CBPF).
func attachReusePortProgram(fd, sockets int) error {
	return errors.New("hashing the reuseport group on the exporter's address needs Linux")
}
