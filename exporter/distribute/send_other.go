//go:build !linux

package distribute

import "errors"

func openInterface(name string) (sender, error) {
	return nil, errors.New("iface: destinations need Linux (AF_PACKET)")
}
