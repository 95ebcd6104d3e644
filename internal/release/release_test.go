package release

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spanflow/spanflow/internal/testutil"
)

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestPackages builds the release for amd64 with scripts/release, installs
// the .deb with dpkg, checks what it installed (files, user, units, the
// binary naming its commit, the configuration the checks accept), removes
// it keeping /etc/spanflow, purges it, and checks the .rpm with rpm itself.
func TestPackages(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the release packages")
	}
	testutil.Root(t)
	dpkg := testutil.Command(t, "dpkg")
	rpm := testutil.Command(t, "rpm")
	testutil.Command(t, "git")
	root := testutil.ModuleRoot()
	if exec.Command("dpkg-query", "-W", "spanflow").Run() == nil {
		t.Fatal("a spanflow package is installed on this machine already; the test would replace it (dpkg -P spanflow)")
	}

	dist := filepath.Join(t.TempDir(), "dist")
	commit := strings.TrimSpace(run(t, "git", "-C", root, "rev-parse", "HEAD"))
	cmd := exec.Command(filepath.Join(root, "scripts", "release"))
	cmd.Env = append(os.Environ(), "ARCHES=amd64", "DIST="+dist)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/release: %v\n%s", err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(dist, "*_amd64.deb"))
	rpms, _ := filepath.Glob(filepath.Join(dist, "*.x86_64.rpm"))
	sboms, _ := filepath.Glob(filepath.Join(dist, "*_linux_amd64.cdx.json"))
	if len(debs) != 1 || len(rpms) != 1 || len(sboms) != 1 {
		t.Fatalf("dist holds debs %v, rpms %v, SBOMs %v: want one each", debs, rpms, sboms)
	}
	// The checksums are those of the files beside them.
	sums := exec.Command("sha256sum", "--check", "--strict", "SHA256SUMS")
	sums.Dir = dist
	if out, err := sums.CombinedOutput(); err != nil {
		t.Errorf("sha256sum --check: %v\n%s", err, out)
	}
	if sbom, _ := os.ReadFile(sboms[0]); !strings.Contains(string(sbom), `"bomFormat": "CycloneDX"`) ||
		!strings.Contains(string(sbom), "pkg:golang/github.com/urfave/cli/v2@v2.27.7") {
		t.Errorf("SBOM %s is not CycloneDX naming the modules linked in", sboms[0])
	}

	t.Run("rpm", func(t *testing.T) {
		list := run(t, rpm, "-qpl", rpms[0])
		configs := run(t, rpm, "-qpc", rpms[0])
		for _, f := range []string{"/usr/bin/spanflow", "/usr/share/man/man1/spanflow.1.gz",
			"/usr/lib/systemd/system/spanflow-collector.service", "/usr/lib/systemd/system/spanflow-exporter.service",
			"/usr/lib/systemd/system/spanflow-indexer.service",
			"/usr/share/bash-completion/completions/spanflow", "/etc/spanflow/collector.yaml", "/etc/spanflow/indexer.yaml"} {
			if !strings.Contains(list, f+"\n") {
				t.Errorf("rpm -qpl lacks %s:\n%s", f, list)
			}
		}
		for _, f := range []string{"collector.yaml", "exporter.yaml", "indexer.yaml", "networks.yaml", "interfaces.yaml"} {
			if !strings.Contains(configs, "/etc/spanflow/"+f+"\n") {
				t.Errorf("rpm -qpc lacks /etc/spanflow/%s:\n%s", f, configs)
			}
		}
		if info := run(t, rpm, "-qpi", rpms[0]); !strings.Contains(info, "Name        : spanflow") ||
			!strings.Contains(info, "Architecture: x86_64") {
			t.Errorf("rpm -qpi:\n%s", info)
		}
		if s := run(t, rpm, "-qp", "--scripts", rpms[0]); !strings.Contains(s, "useradd --system") ||
			!strings.Contains(s, "systemctl disable --now") {
			t.Errorf("rpm --scripts lacks the user creation or the stop on removal:\n%s", s)
		}
		if k := run(t, rpm, "-K", "--nosignature", rpms[0]); !strings.Contains(k, "digests OK") {
			t.Errorf("rpm -K: %s", k)
		}
	})

	t.Run("deb", func(t *testing.T) {
		t.Cleanup(func() { exec.Command(dpkg, "-P", "spanflow").Run() })
		run(t, dpkg, "-i", debs[0])
		for _, f := range []string{"/usr/bin/spanflow", "/usr/share/man/man1/spanflow.1.gz",
			"/usr/share/bash-completion/completions/spanflow", "/usr/share/zsh/vendor-completions/_spanflow",
			"/usr/lib/systemd/system/spanflow-collector.service", "/usr/lib/systemd/system/spanflow-exporter.service",
			"/usr/lib/systemd/system/spanflow-indexer.service", "/etc/spanflow/indexer.yaml",
			"/etc/spanflow/collector.yaml", "/etc/spanflow/exporter.yaml", "/etc/spanflow/networks.yaml",
			"/etc/spanflow/interfaces.yaml"} {
			if _, err := os.Stat(f); err != nil {
				t.Errorf("not installed: %v", err)
			}
		}
		if conf := run(t, "dpkg-query", "--showformat=${Conffiles}", "-W", "spanflow"); strings.Count(conf, "/etc/spanflow/") != 5 {
			t.Errorf("conffiles: want the five files of /etc/spanflow:\n%s", conf)
		}
		if pw := run(t, "getent", "passwd", "spanflow"); !strings.Contains(pw, "nologin") {
			t.Errorf("spanflow user: %s", pw)
		}
		// Installing again finds the user and changes nothing.
		run(t, dpkg, "-i", debs[0])

		if v := run(t, "/usr/bin/spanflow", "version"); !strings.Contains(v, "commit "+commit) {
			t.Errorf("spanflow version = %q, want commit %s", v, commit)
		}
		// The man page and the completion answer.
		if man := run(t, "zcat", "/usr/share/man/man1/spanflow.1.gz"); !strings.Contains(man, "collector") {
			t.Errorf("man page does not mention the collector")
		}
		// bash completes `spanflow coll` and `spanflow collector check --con`.
		for line, want := range map[string]string{"spanflow coll": "collector", "spanflow collector check --con": "--config"} {
			script := "source /usr/share/bash-completion/completions/spanflow; COMP_WORDS=(" + line +
				"); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); _spanflow; echo \"${COMPREPLY[*]}\""
			if c := strings.TrimSpace(run(t, "bash", "-c", script)); c != want {
				t.Errorf("bash completion of %q = %q, want %q", line, c, want)
			}
		}

		// The packaged units are what `collector install` writes on this
		// machine for the installed configuration.
		for _, what := range []string{"collector", "exporter", "indexer"} {
			unit := "/usr/lib/systemd/system/spanflow-" + what + ".service"
			fresh := filepath.Join(t.TempDir(), "spanflow-"+what+".service")
			run(t, "/usr/bin/spanflow", what, "install", "--path", fresh, "--binary", "/usr/bin/spanflow", "--user", "spanflow")
			a, _ := os.ReadFile(unit)
			b, _ := os.ReadFile(fresh)
			if string(a) != string(b) {
				t.Errorf("%s differs from `spanflow %s install`:\n%s\n---\n%s", unit, what, a, b)
			}
			if analyze, err := exec.LookPath("systemd-analyze"); err == nil {
				if out, err := exec.Command(analyze, "verify", unit).CombinedOutput(); err != nil {
					t.Errorf("systemd-analyze verify %s: %v: %s", unit, err, out)
				}
			}
		}
		// The collector's ExecStartPre, as the unit's user, accepts the shipped file.
		if out, err := exec.Command("runuser", "-u", "spanflow", "--", "/usr/bin/spanflow", "collector", "check",
			"--config", "/etc/spanflow/collector.yaml").CombinedOutput(); err != nil {
			t.Errorf("collector check of the installed configuration: %v: %s", err, out)
		}
		// So does the indexer's (its brokers and cluster are only named, not reached).
		if out, err := exec.Command("runuser", "-u", "spanflow", "--", "/usr/bin/spanflow", "indexer", "check",
			"--config", "/etc/spanflow/indexer.yaml").CombinedOutput(); err != nil {
			t.Errorf("indexer check of the installed configuration: %v: %s", err, out)
		}
		// The exporter's needs the site's mirror NIC and collectors: check says
		// exactly that, and accepts the file once they are filled in.
		out, err := exec.Command("/usr/bin/spanflow", "exporter", "check", "--config", "/etc/spanflow/exporter.yaml").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "no capture") || !strings.Contains(string(out), "no collector") {
			t.Errorf("exporter check of the unfilled example: %v: %s", err, out)
		}
		ex, _ := os.ReadFile("/etc/spanflow/exporter.yaml")
		filled := strings.Replace(strings.Replace(string(ex), "\ninterface: []\n", "\ninterface: [lo]\n", 1),
			"\ncollector: []\n", "\ncollector: [\"127.0.0.1:4739\"]\n", 1)
		path := filepath.Join(t.TempDir(), "exporter.yaml")
		os.WriteFile(path, []byte(filled), 0o644)
		if out, err := exec.Command("/usr/bin/spanflow", "exporter", "check", "--config", path).CombinedOutput(); err != nil {
			t.Errorf("exporter check with interface and collector filled in: %v: %s", err, out)
		}

		// Removal keeps the configuration; purge deletes it.
		os.WriteFile("/etc/spanflow/collector.yaml", append(mustRead(t, "/etc/spanflow/collector.yaml"), "# mine\n"...), 0o644)
		run(t, dpkg, "-r", "spanflow")
		if _, err := os.Stat("/usr/bin/spanflow"); !os.IsNotExist(err) {
			t.Errorf("dpkg -r left /usr/bin/spanflow: %v", err)
		}
		if !strings.HasSuffix(string(mustRead(t, "/etc/spanflow/collector.yaml")), "# mine\n") {
			t.Error("dpkg -r did not keep the edited /etc/spanflow/collector.yaml")
		}
		run(t, dpkg, "-P", "spanflow")
		if _, err := os.Stat("/etc/spanflow"); !os.IsNotExist(err) {
			t.Errorf("dpkg -P left /etc/spanflow: %v", err)
		}
	})
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
