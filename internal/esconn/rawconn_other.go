//go:build !linux

package esconn

import "net"

// wrapRaw returns c: raw system calls are for Linux (rawconn_linux.go).
func wrapRaw(c net.Conn) net.Conn { return c }
