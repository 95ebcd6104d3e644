package secret

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Setenv("SPANFLOW_TEST_SECRET", "from-env")
	for _, tc := range []struct {
		name string
		file string
		env  string
		want string
	}{
		{name: "file wins over the environment", file: write("lf", "s3cret\n"), env: "SPANFLOW_TEST_SECRET", want: "s3cret"},
		{name: "CRLF and blank lines trimmed", file: write("crlf", "s3cret\r\n\r\n"), env: "SPANFLOW_TEST_SECRET", want: "s3cret"},
		{name: "spaces kept", file: write("spaces", " s3 cret \n"), want: " s3 cret "},
		{name: "empty file", file: write("empty", ""), env: "SPANFLOW_TEST_SECRET", want: ""},
		{name: "environment without a file", env: "SPANFLOW_TEST_SECRET", want: "from-env"},
		{name: "unset variable", env: "SPANFLOW_TEST_SECRET_UNSET", want: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Read(tc.file, tc.env)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("Read(%q, %q) = %q, want %q", tc.file, tc.env, got, tc.want)
			}
		})
	}
}

func TestReadMissingFile(t *testing.T) {
	t.Setenv("SPANFLOW_TEST_SECRET", "from-env")
	missing := filepath.Join(t.TempDir(), "missing")
	got, err := Read(missing, "SPANFLOW_TEST_SECRET")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Read of a missing file: error %v, want one wrapping fs.ErrNotExist", err)
	}
	if got != "" {
		t.Errorf("Read of a missing file returned %q, want nothing (no fallback to the environment)", got)
	}
}
