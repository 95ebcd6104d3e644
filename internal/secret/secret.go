// Package secret reads a credential (password, API key, user) for any part
// of spanflow that connects somewhere: from a file when one is named, else
// from an environment variable, so secrets never appear as flag values in
// process lists.
package secret

import (
	"fmt"
	"os"
	"strings"
)

// Read returns the content of file without its trailing line ending when file
// is not empty, else the value of the environment variable env ("" when
// unset). Only CR and LF are trimmed: spaces may belong to a password.
func Read(file, env string) (string, error) {
	if file == "" {
		return os.Getenv(env), nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("read credential file: %w", err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}
