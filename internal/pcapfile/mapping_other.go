//go:build !unix

package pcapfile

import "os"

func mapFile(*os.File, int64) []byte { return nil }

func unmap([]byte) error { return nil }

const dropPage = 4096

func dropPages([]byte) {}
