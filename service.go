package main

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"text/template"

	"github.com/spf13/cobra"
)

// serviceUnit is what install-service fills in.
type serviceUnit struct {
	User, Binary, DataDir, Domain, EnvFile string
	// StateDirectory is DataDir relative to /var/lib, which systemd then makes and gives to
	// User; "" when DataDir lies elsewhere and is named in ReadWritePaths.
	StateDirectory string
}

// ServeArgs are the arguments of serve in ExecStart: a public HTTPS server for Domain with
// its certificate by ACME, the receiver as its MX, the database, keys and certificates in
// DataDir.
func (u serviceUnit) ServeArgs() []string {
	return []string{"serve",
		"--db", filepath.Join(u.DataDir, "pointpost.db"),
		"--dkim-key", filepath.Join(u.DataDir, "dkim.pem"),
		"--https", u.Domain,
		"--https-addr", ":443",
		"--http", ":80",
		"--smtp", ":25",
		"--reply-domain", u.Domain,
		"--log-format", "json",
	}
}

// The unit keeps the service to what it needs: its own user, the low ports by capability
// rather than root, a read-only system but for its data directory. The EnvironmentFile holds
// what must stay out of a world-readable unit: the relay URL, the From address, webhook keys.
var unitTemplate = template.Must(template.New("unit").Parse(`[Unit]
Description=pointpost incentive e-mail program ({{.Domain}})
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
User={{.User}}
Group={{.User}}
ExecStart={{.Binary}}{{range .ServeArgs}} {{.}}{{end}}
EnvironmentFile=-{{.EnvFile}}
WorkingDirectory={{.DataDir}}
{{if .StateDirectory}}StateDirectory={{.StateDirectory}}
StateDirectoryMode=0750
{{else}}ReadWritePaths={{.DataDir}}
{{end}}Restart=on-failure
RestartSec=5s
TimeoutStopSec=30s
AmbientCapabilities=CAP_NET_BIND_SERVICE
CapabilityBoundingSet=CAP_NET_BIND_SERVICE
NoNewPrivileges=true
ProtectSystem=strict
ProtectHome=true
PrivateTmp=true
PrivateDevices=true
ProtectKernelTunables=true
ProtectKernelModules=true
ProtectControlGroups=true
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
RestrictNamespaces=true
LockPersonality=true
SystemCallArchitectures=native
UMask=0027
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
`))

// unitUser is a user name useradd takes.
var unitUser = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)

// dnsName is a DNS name of two or more labels.
var dnsName = regexp.MustCompile(`^(?i)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// check refuses what would make a unit systemd reads otherwise than meant: relative paths,
// and spaces, quotes, '%' (a specifier) or '$' (a variable) in an ExecStart word.
func (u *serviceUnit) check() error {
	if !unitUser.MatchString(u.User) {
		return fmt.Errorf("--user %q: must be a system user name (lower-case letters, digits, _ and -)", u.User)
	}
	if !dnsName.MatchString(u.Domain) {
		return fmt.Errorf("--domain %q: must be the DNS name the server answers for, as mail.example.org", u.Domain)
	}
	for _, p := range []struct{ flag, path string }{{"binary", u.Binary}, {"data-dir", u.DataDir}, {"env-file", u.EnvFile}} {
		switch {
		case !filepath.IsAbs(p.path):
			return fmt.Errorf("--%s %q: must be an absolute path", p.flag, p.path)
		case strings.ContainsAny(p.path, " \t\n\"'\\%$;"):
			return fmt.Errorf("--%s %q: no spaces, quotes, backslashes, '%%', '$' or ';' in a unit's paths", p.flag, p.path)
		}
	}
	u.DataDir = filepath.Clean(u.DataDir)
	if rel, ok := strings.CutPrefix(u.DataDir, "/var/lib/"); ok {
		u.StateDirectory = rel
	}
	return nil
}

func installServiceCommand(e *cli) *cobra.Command {
	u := &serviceUnit{}
	cmd := &cobra.Command{
		Use:   "install-service --domain NAME",
		Short: "print a systemd unit that runs serve as a public server (see the README's deploy section)",
		Args:  nArgs(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := u.check(); err != nil {
				return err
			}
			return unitTemplate.Execute(e.stdout, u)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&u.Domain, "domain", "", "DNS name of the server: its HTTPS certificate, links and reply addresses")
	fs.StringVar(&u.User, "user", "pointpost", "system user the service runs as")
	fs.StringVar(&u.Binary, "binary", "/usr/local/bin/pointpost", "absolute path of the pointpost binary")
	fs.StringVar(&u.DataDir, "data-dir", "/var/lib/pointpost", "directory of the database, keys and certificates; under /var/lib systemd makes it")
	fs.StringVar(&u.EnvFile, "env-file", "/etc/pointpost/pointpost.env", "file of POINTPOST_* variables (relay URL, From address, secrets), optional")
	return cmd
}
