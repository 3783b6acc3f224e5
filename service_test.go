package main

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// parseUnit reads a systemd unit as INI: each section's keys with every value given.
func parseUnit(t *testing.T, unit string) map[string]map[string][]string {
	t.Helper()
	sections := map[string]map[string][]string{}
	var cur map[string][]string
	sc := bufio.NewScanner(strings.NewReader(unit))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			name := line[1 : len(line)-1]
			if sections[name] != nil {
				t.Fatalf("line %d: section [%s] twice", n, name)
			}
			cur = map[string][]string{}
			sections[name] = cur
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || cur == nil || k == "" {
				t.Fatalf("line %d is no key=value in a section: %q", n, line)
			}
			cur[k] = append(cur[k], v)
		}
	}
	return sections
}

// TestInstallServiceUnit: the printed unit is INI with every directive a public server
// needs, and its ExecStart is a serve command line serve's flags take.
func TestInstallServiceUnit(t *testing.T) {
	e := env{}
	unit := parseUnit(t, runOK(t, e, "install-service", "--domain", "mail.example.org", "--user", "pp"))
	svc := unit["Service"]
	if svc == nil || unit["Unit"] == nil || unit["Install"] == nil {
		t.Fatalf("sections: %v", unit)
	}
	for k, want := range map[string]string{
		"User":                  "pp",
		"Group":                 "pp",
		"AmbientCapabilities":   "CAP_NET_BIND_SERVICE",
		"CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
		"ProtectSystem":         "strict",
		"StateDirectory":        "pointpost",
		"WorkingDirectory":      "/var/lib/pointpost",
		"Restart":               "on-failure",
		"NoNewPrivileges":       "true",
		"EnvironmentFile":       "-/etc/pointpost/pointpost.env",
	} {
		if got := svc[k]; len(got) != 1 || got[0] != want {
			t.Errorf("%s=%v, want %s", k, got, want)
		}
	}
	if got := unit["Install"]["WantedBy"]; len(got) != 1 || got[0] != "multi-user.target" {
		t.Errorf("WantedBy=%v", got)
	}
	exec := strings.Fields(svc["ExecStart"][0])
	if exec[0] != "/usr/local/bin/pointpost" || exec[1] != "serve" {
		t.Fatalf("ExecStart=%v", exec)
	}
	cfg, err := parseServeConfig(exec[2:], func(string) string { return "" })
	if err != nil {
		t.Fatalf("serve does not take ExecStart's flags: %v", err)
	}
	if cfg.DB != "/var/lib/pointpost/pointpost.db" || cfg.SMTP != ":25" || cfg.ReplyDomain != "mail.example.org" ||
		len(cfg.HTTPS) != 1 || cfg.HTTPS[0] != "mail.example.org" || cfg.HTTPSAddr != ":443" || cfg.HTTP != ":80" {
		t.Errorf("serve's config from ExecStart: db %q smtp %q reply domain %q https %v on %q, http %q",
			cfg.DB, cfg.SMTP, cfg.ReplyDomain, cfg.HTTPS, cfg.HTTPSAddr, cfg.HTTP)
	}
	if cfg.certCacheDir() != "/var/lib/pointpost/certificates" {
		t.Errorf("certificates kept in %s, outside the writable directory", cfg.certCacheDir())
	}

	// A data directory outside /var/lib is made writable by name.
	unit = parseUnit(t, runOK(t, e, "install-service", "--domain", "mail.example.org", "--data-dir", "/srv/pointpost/"))
	if got := unit["Service"]["ReadWritePaths"]; len(got) != 1 || got[0] != "/srv/pointpost" || unit["Service"]["StateDirectory"] != nil {
		t.Errorf("ReadWritePaths=%v StateDirectory=%v", got, unit["Service"]["StateDirectory"])
	}
}

// TestInstallServiceVerifies: systemd itself reads the unit without a complaint.
func TestInstallServiceVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("no systemd-analyze here")
	}
	binary, err := os.Executable() // verify wants ExecStart's binary to exist
	if err != nil {
		t.Fatal(err)
	}
	unit := runOK(t, env{}, "install-service", "--domain", "mail.example.org", "--binary", binary)
	file := filepath.Join(t.TempDir(), "pointpost.service")
	if err := os.WriteFile(file, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd := exec.Command(analyze, "verify", "--man=no", file)
	cmd.Stdout, cmd.Stderr = &out, &out
	// It says nothing of a good unit, and warns of an unknown key without failing.
	if err := cmd.Run(); err != nil || out.Len() > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out.String())
	}
}

// TestInstallServiceRefusesBadInput: what would make systemd read the unit otherwise than
// meant is refused, naming the flag, and nothing is printed.
func TestInstallServiceRefusesBadInput(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "--domain \"\""},
		{[]string{"--domain", "localhost"}, "--domain \"localhost\""},
		{[]string{"--domain", "mail.example.org", "--user", "Root User"}, "--user"},
		{[]string{"--domain", "mail.example.org", "--binary", "pointpost"}, "--binary \"pointpost\": must be an absolute path"},
		{[]string{"--domain", "mail.example.org", "--data-dir", "/srv/point post"}, "--data-dir"},
		{[]string{"--domain", "mail.example.org", "--data-dir", "/srv/%h"}, "'%'"},
		{[]string{"--domain", "mail.example.org", "--env-file", "/etc/$HOME"}, "--env-file"},
	} {
		var out bytes.Buffer
		err := run(context.Background(), append([]string{"install-service"}, c.args...), env{}.get, &out)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error with %q", c.args, err, c.want)
		}
		if out.Len() > 0 {
			t.Errorf("%v printed %q", c.args, out.String())
		}
	}
}
