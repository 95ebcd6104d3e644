// Package secret reads credentials from a file or an environment variable,
// never from a command-line value (ps would show it).
package secret

import (
	"fmt"
	"os"
	"strings"
)

// Read returns the content of file without surrounding white space when
// file is set, else the value of the environment variable env.
func Read(file, env string) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("read credential file: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	return os.Getenv(env), nil
}
