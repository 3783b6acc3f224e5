package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/crypto/acme/autocert"

	"pointpost/postoffice"
	"pointpost/store"
	"pointpost/web"
)

// Config is everything the commands need, from flags and their environment variables.
type Config struct {
	DB          string
	HTTP        string
	SMTP        string
	Metrics     string
	Relay       string
	MailServers int
	Workers     int
	From        string
	ReplyDomain string
	// PostalAddress is printed in every message's footer (CAN-SPAM and the like).
	PostalAddress string
	BaseURL       string
	TokenKey      string
	MaxRetries    int
	SoftBounces   int
	// PasswordCost is the bcrypt cost of toolbox passwords.
	PasswordCost int
	// DKIMKey is the PEM file of the DKIM key, made (as DKIMKind) if missing; "off" sends
	// unsigned.
	DKIMKey      string
	DKIMKind     string
	DKIMSelector string
	RetryBase    time.Duration
	Demo         bool
	LogLevel     string
	LogFormat    string
	// SettleEvery is how often accrued points are posted into consumer accounts.
	SettleEvery time.Duration
	// TrustedProxies are the reverse proxies whose X-Forwarded-For is believed.
	TrustedProxies web.TrustedProxies
	trustedProxies string
	// Version names this binary in the toolbox and in the database it opens.
	Version string
	// RelayNoPipelining sends one SMTP command a round trip even where the relay offers
	// PIPELINING: bench --no-pipelining measures what pipelining gains.
	RelayNoPipelining bool
	// RelayRate, RelayQuotas and RelayConnections are the limits of the route --relay
	// defines, the first of the routes.
	RelayRate        float64
	RelayQuotas      []postoffice.Quota
	RelayConnections int
	relayQuotas      []string

	// SMTPTLSCert and SMTPTLSKey are the PEM files the receiver's STARTTLS offers.
	SMTPTLSCert, SMTPTLSKey string
	// IMAP is the mailbox replies and bounces are read from, imaps://user:pass@host/INBOX;
	// IMAPExpunge expunges processed messages instead of moving them to Processed.
	IMAP        string
	IMAPExpunge bool
	// SMTPMaxPerClient caps the receiver's connections from one IP address.
	SMTPMaxPerClient int
	// The providers' webhook secrets: Mailgun's signing key, SendGrid's verification key
	// (base64 DER, as its console shows it), Postmark's basic auth as user:password.
	MailgunKey, SendGridKey, PostmarkAuth string
	// SendGridInbound is the secret SendGrid's Inbound Parse URL carries (it signs nothing).
	SendGridInbound string
	// SESTopic is the ARN of the SNS topic SES notifies.
	SESTopic string
	// HTTPS names the domains whose certificates ACME obtains and renews; TLSCert and TLSKey
	// are PEM files the team manages instead. Either serves HTTPS on HTTPSAddr, and --http
	// then redirects to it.
	HTTPS           []string
	HTTPSAddr       string
	TLSCert, TLSKey string
	// TLSDir keeps ACME's account key, certificates and challenges; empty: see certCacheDir.
	TLSDir        string
	ACMEDirectory string
	// ACMECA is a PEM file of the CA that signs the ACME server's own HTTPS certificate, for a
	// private or test CA; empty trusts the system's roots.
	ACMECA string
	// BackupDir, when set, receives a backup of the database every BackupEvery; the newest
	// BackupKeep are kept.
	BackupDir   string
	BackupEvery time.Duration
	BackupKeep  int
	// Role is what serve runs (roleAll, roleWeb, roleMail, roleReceiver); Name names the
	// process among those on one database, its mail servers' rows registered under it.
	Role string
	Name string
	// Lease is how long a mail server that stops reporting keeps its jobs and the deliveries
	// it claimed before the live ones take them over.
	Lease time.Duration

	// given names the settings given by flag or environment, which win over the toolbox's
	// settings page and over what the database remembers.
	given map[string]bool
	// fromEnv names the environment variable of each flag the environment set.
	fromEnv map[string]string
}

// envAnnotation marks a flag with the environment variable that sets it.
const envAnnotation = "pointpost-env"

// bindEnv names the environment variable that gives flag name its value when the command
// line does not.
func bindEnv(fs *pflag.FlagSet, name, env string) {
	fs.Lookup(name).Usage += " (env " + env + ")"
	if err := fs.SetAnnotation(name, envAnnotation, []string{env}); err != nil {
		panic(err) // a flag defined just before: a programming error
	}
}

// dbFlag binds the database file, which every command but bench opens.
func (c *Config) dbFlag(fs *pflag.FlagSet) {
	fs.StringVar(&c.DB, "db", "pointpost.db", "SQLite database file (or sqlite:FILE), or a PostgreSQL URL (postgres://user:password@host/database)")
	bindEnv(fs, "db", "POINTPOST_DB")
}

// addressFlags bind where people reach the web server, for the links a command prints.
func (c *Config) addressFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.HTTP, "http", "127.0.0.1:8080", "address of the web server (toolbox and consumer pages)")
	bindEnv(fs, "http", "POINTPOST_HTTP")
	fs.StringVar(&c.BaseURL, "base-url", "", "public URL of the web server, for links (default: http://ADDRESS of --http)")
	bindEnv(fs, "base-url", "POINTPOST_BASE_URL")
}

// logFlags bind the log's level and format.
func (c *Config) logFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.LogLevel, "log", "info", "log level: debug, info, warn, error")
	bindEnv(fs, "log", "POINTPOST_LOG")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log format: text or json (one object a line)")
	bindEnv(fs, "log-format", "POINTPOST_LOG_FORMAT")
}

// serveFlags bind everything serve takes.
func (c *Config) serveFlags(fs *pflag.FlagSet) {
	c.dbFlag(fs)
	c.addressFlags(fs)
	type flag struct {
		name, env string
		define    func(name string)
	}
	str := func(p *string, def, help string) func(string) {
		return func(name string) { fs.StringVar(p, name, def, help) }
	}
	num := func(p *int, def int, help string) func(string) {
		return func(name string) { fs.IntVar(p, name, def, help) }
	}
	for _, f := range []flag{
		{"smtp", "POINTPOST_SMTP", str(&c.SMTP, "127.0.0.1:2525", "address of the SMTP receiver for replies")},
		{"smtp-tls-cert", "POINTPOST_SMTP_TLS_CERT", str(&c.SMTPTLSCert, "", "PEM certificate (chain) the receiver offers by STARTTLS; read again when it changes")},
		{"smtp-tls-key", "POINTPOST_SMTP_TLS_KEY", str(&c.SMTPTLSKey, "", "PEM private key of --smtp-tls-cert")},
		{"smtp-max-per-client", "POINTPOST_SMTP_MAX_PER_CLIENT", num(&c.SMTPMaxPerClient, 10, "SMTP connections at once from one IP address (a local relay in front of the receiver needs more)")},
		{"imap", "POINTPOST_IMAP", str(&c.IMAP, "", "mailbox to read replies and bounces from, imaps://user:pass@host/INBOX or imap://… (STARTTLS)")},
		{"imap-expunge", "POINTPOST_IMAP_EXPUNGE", func(name string) {
			fs.BoolVar(&c.IMAPExpunge, name, false, "flag and expunge processed mailbox messages instead of moving them to Processed")
		}},
		{"mailgun-key", "POINTPOST_MAILGUN_KEY", str(&c.MailgunKey, "", "Mailgun webhook signing key; serves /webhooks/mailgun and /webhooks/mailgun/inbound")},
		{"sendgrid-key", "POINTPOST_SENDGRID_KEY", str(&c.SendGridKey, "", "SendGrid signed event webhook verification key (base64); serves /webhooks/sendgrid")},
		{"sendgrid-inbound", "POINTPOST_SENDGRID_INBOUND", str(&c.SendGridInbound, "", "secret for SendGrid Inbound Parse, in its URL /webhooks/sendgrid/inbound/SECRET or as basic-auth password; serves it")},
		{"postmark-auth", "POINTPOST_POSTMARK_AUTH", str(&c.PostmarkAuth, "", "user:password Postmark's webhook URL carries; serves /webhooks/postmark and /webhooks/postmark/inbound")},
		{"ses-topic", "POINTPOST_SES_TOPIC", str(&c.SESTopic, "", "ARN of the SNS topic Amazon SES notifies; serves /webhooks/ses")},
		{"https", "POINTPOST_HTTPS", func(name string) {
			fs.StringSliceVar(&c.HTTPS, name, nil, "domains to obtain certificates for by ACME and serve HTTPS as, comma-separated; --http then defaults to :80 and redirects")
		}},
		{"https-addr", "POINTPOST_HTTPS_ADDR", str(&c.HTTPSAddr, ":443", "address of the HTTPS server, with --https or --tls-cert")},
		{"tls-cert", "POINTPOST_TLS_CERT", str(&c.TLSCert, "", "PEM certificate (chain) of the HTTPS server, instead of ACME; read again when it changes")},
		{"tls-key", "POINTPOST_TLS_KEY", str(&c.TLSKey, "", "PEM private key of --tls-cert")},
		{"acme-directory", "POINTPOST_ACME_DIRECTORY", str(&c.ACMEDirectory, autocert.DefaultACMEDirectory, "directory URL of the ACME CA --https uses")},
		{"tls-dir", "POINTPOST_TLS_DIR", str(&c.TLSDir, "", "directory ACME's account key, certificates and challenges are kept in; processes behind one load balancer share it (default: certificates beside a SQLite --db; with a PostgreSQL one, the database, which every process on it shares)")},
		{"acme-ca", "POINTPOST_ACME_CA", str(&c.ACMECA, "", "PEM file of the CA of the ACME server's own HTTPS, for a private CA (default: the system's roots)")},
		{"metrics", "POINTPOST_METRICS", str(&c.Metrics, "127.0.0.1:9090", "address of the Prometheus metrics (/metrics), unauthenticated: keep it private; empty: none")},
		{"relay", "POINTPOST_RELAY", str(&c.Relay, "", "SMTP relay URL, smtp://user:pass@host:port or smtps://…; empty keeps mail in the embedded outbox")},
		{"relay-rate", "POINTPOST_RELAY_RATE", func(name string) {
			fs.Float64Var(&c.RelayRate, name, 0, "messages a second the relay takes, across every mail server (default: none, found from its throttling)")
		}},
		{"relay-quota", "POINTPOST_RELAY_QUOTA", func(name string) {
			fs.StringSliceVar(&c.relayQuotas, name, nil, "at most N messages in any DURATION through the relay, as 50000/24h; repeatable (env: comma-separated)")
		}},
		{"relay-connections", "POINTPOST_RELAY_CONNECTIONS", num(&c.RelayConnections, 0, "most connections open to the relay across every mail server; 0: no limit")},
		{"mail-servers", "POINTPOST_MAIL_SERVERS", num(&c.MailServers, 4, "number of in-process mail servers")},
		{"connections", "POINTPOST_CONNECTIONS", num(&c.Workers, 16, "messages in flight (relay connections) per mail server")},
		{"from", "POINTPOST_FROM", str(&c.From, "Pointpost <invitations@pointpost.localhost>", "From address of invitations")},
		{"reply-domain", "POINTPOST_REPLY_DOMAIN", str(&c.ReplyDomain, "", "domain for reply addresses and Message-IDs (default: the From domain)")},
		{"postal-address", "POINTPOST_POSTAL_ADDRESS", str(&c.PostalAddress, "Pointpost, 1 Example Street, Springfield", "the operator's postal address, shown in every message's footer")},
		{"token-key", "POINTPOST_TOKEN_KEY", str(&c.TokenKey, "", "token secret, 32+ hex characters; default: a key made on first start and kept in the database")},
		{"dkim-key", "POINTPOST_DKIM_KEY", str(&c.DKIMKey, "pointpost-dkim.pem", "PEM file of the DKIM signing key (RSA or Ed25519), made on first start if missing; \"off\" sends unsigned")},
		{"dkim-key-type", "POINTPOST_DKIM_KEY_TYPE", str(&c.DKIMKind, "rsa", "kind of DKIM key made when the file is missing: rsa (2048 bits) or ed25519")},
		{"dkim-selector", "POINTPOST_DKIM_SELECTOR", str(&c.DKIMSelector, "pointpost", "DKIM selector: the key is published at SELECTOR._domainkey.FROM-DOMAIN")},
		{"password-cost", "POINTPOST_PASSWORD_COST", num(&c.PasswordCost, 12, "bcrypt cost of toolbox passwords (4 to 31; each step doubles the work)")},
		{"soft-bounces", "POINTPOST_SOFT_BOUNCES", num(&c.SoftBounces, 3, "soft bounces since an address last acknowledged that suppress it")},
		{"max-retries", "POINTPOST_MAX_RETRIES", num(&c.MaxRetries, 5, "retries after a temporary failure before a delivery is given up")},
		{"retry-base", "POINTPOST_RETRY_BASE", func(name string) {
			fs.DurationVar(&c.RetryBase, name, time.Minute, "first wait before a retry, doubled each time")
		}},
		{"settle-interval", "POINTPOST_SETTLE_INTERVAL", func(name string) {
			fs.DurationVar(&c.SettleEvery, name, 5*time.Second, "how often accrued points are posted to consumer accounts")
		}},
		{"backup-dir", "POINTPOST_BACKUP_DIR", str(&c.BackupDir, "", "directory to write a backup of the database to every --backup-every (made if missing); empty: no scheduled backups")},
		{"backup-every", "POINTPOST_BACKUP_EVERY", func(name string) {
			fs.DurationVar(&c.BackupEvery, name, time.Hour, "how often --backup-dir receives a backup")
		}},
		{"backup-keep", "POINTPOST_BACKUP_KEEP", num(&c.BackupKeep, 24, "newest scheduled backups kept in --backup-dir; older ones are removed")},
		{"trusted-proxies", "POINTPOST_TRUSTED_PROXIES", str(&c.trustedProxies, "", "comma-separated IPs and CIDRs of the reverse proxies whose X-Forwarded-For names the client (default: none)")},
		{"role", "POINTPOST_ROLE", str(&c.Role, roleAll, "what this process runs: all; web (toolbox, consumer pages, webhooks); mail (the post office's scheduling, settlement and the mail servers); receiver (replies and bounces by SMTP and IMAP)")},
		{"name", "POINTPOST_NAME", str(&c.Name, "", "this process's name among the processes on one database, its mail servers registered under it, held by one live process at a time; a process started again under its name takes its mail servers back at once (default: HOSTNAME-PID)")},
		{"lease", "POINTPOST_LEASE", func(name string) {
			fs.DurationVar(&c.Lease, name, postoffice.DefaultLease, "how long a mail server that stops reporting (its process killed) keeps its jobs and the deliveries it claimed before live ones take them over")
		}},
		{"demo", "POINTPOST_DEMO", func(name string) {
			fs.BoolVar(&c.Demo, name, false, "seed demo data into an empty database")
		}},
	} {
		f.define(f.name)
		bindEnv(fs, f.name, f.env)
	}
	c.logFlags(fs)
}

// load completes the flags the command line did not give from their environment variables
// and checks the values. Returns an error naming the variable whose value does not parse.
func (c *Config) load(fs *pflag.FlagSet, getenv func(string) string) error {
	var errs []error
	c.given = map[string]bool{}
	c.fromEnv = map[string]string{}
	fs.VisitAll(func(f *pflag.Flag) {
		env := f.Annotations[envAnnotation]
		if !f.Changed && len(env) == 1 {
			if v := getenv(env[0]); v != "" {
				c.fromEnv[f.Name] = env[0]
				if err := fs.Set(f.Name, v); err != nil {
					errs = append(errs, fmt.Errorf("%s=%q: %w", env[0], v, err))
				}
			}
		}
		c.given[f.Name] = f.Changed
	})
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return c.check(fs)
}

// check refuses values out of range, each only if the command has its flag.
func (c *Config) check(fs *pflag.FlagSet) error {
	for _, r := range []struct {
		flag string
		bad  bool
		want string
	}{
		{"mail-servers", c.MailServers < 1, "at least 1"},
		{"connections", c.Workers < 1, "at least 1"},
		{"soft-bounces", c.SoftBounces < 1, "at least 1"},
		{"max-retries", c.MaxRetries < 0, "0 or more"},
		{"password-cost", c.PasswordCost < 4 || c.PasswordCost > 31, "from 4 to 31"},
		{"retry-base", c.RetryBase <= 0, "positive"},
		{"settle-interval", c.SettleEvery <= 0, "positive"},
		{"role", !slices.Contains([]string{roleAll, roleWeb, roleMail, roleReceiver}, c.Role), "all, web, mail or receiver, not " + strconv.Quote(c.Role)},
		{"lease", c.Lease < time.Second, "at least 1s: mail servers report every second"},
		{"backup-every", c.BackupEvery <= 0, "positive, as 1h or 30m"},
		{"backup-keep", c.BackupKeep < 1, "at least 1"},
		{"backup-dir", c.BackupDir != "" && store.IsPostgresURL(c.DB), "left out with a PostgreSQL --db: the server's own means back it up (pg_dump, continuous archiving)"},
		{"relay-rate", fs.Changed("relay-rate") && !(c.RelayRate > 0 && !math.IsInf(c.RelayRate, 0)), "a number of messages a second, more than 0"},
		{"relay-connections", c.RelayConnections < 0, "0 (no limit) or more"},
		{"smtp-max-per-client", c.SMTPMaxPerClient < 1, "at least 1"},
		{"smtp-tls-key", (c.SMTPTLSCert == "") != (c.SMTPTLSKey == ""), "given with --smtp-tls-cert (both or neither)"},
		{"log-format", c.LogFormat != "text" && c.LogFormat != "json", "text or json"},
		{"tls-key", (c.TLSCert == "") != (c.TLSKey == ""), "given with --tls-cert (both or neither)"},
		{"tls-cert", c.TLSCert != "" && len(c.HTTPS) > 0, "left out with --https (ACME obtains the certificate)"},
	} {
		if r.bad && fs.Lookup(r.flag) != nil {
			return fmt.Errorf("%s must be %s", c.source(r.flag), r.want)
		}
	}
	c.RelayQuotas = nil
	for _, q := range c.relayQuotas {
		quota, err := postoffice.ParseQuota(strings.TrimSpace(q))
		if err != nil {
			return fmt.Errorf("%s %q: %w", c.source("relay-quota"), q, err)
		}
		c.RelayQuotas = append(c.RelayQuotas, quota)
	}
	if fs.Lookup("trusted-proxies") != nil {
		proxies, err := web.ParseTrustedProxies(c.trustedProxies)
		if err != nil {
			return fmt.Errorf("--trusted-proxies: %w", err)
		}
		c.TrustedProxies = proxies
	}
	if fs.Lookup("name") != nil && c.Name == "" {
		host, err := os.Hostname()
		if err != nil {
			host = "pointpost"
		}
		c.Name = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if fs.Lookup("https") != nil {
		if err := c.checkHTTPS(); err != nil {
			return err
		}
	}
	if fs.Lookup("log") != nil {
		var level slog.Level
		if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
			return fmt.Errorf("--log %q: must be debug, info, warn or error", c.LogLevel)
		}
	}
	return nil
}

// The roles of serve: a process runs all the parts, or one.
const (
	roleAll      = "all"
	roleWeb      = "web"      // the toolbox, the consumer pages and the providers' webhooks
	roleMail     = "mail"     // the post office's scheduling, settlement and the mail servers
	roleReceiver = "receiver" // replies and bounces by SMTP and IMAP
)

// runs reports whether this process runs role's part; a command without --role is all it
// needs.
func (c *Config) runs(role string) bool { return c.Role == "" || c.Role == roleAll || c.Role == role }

// source names where a flag's value came from: the flag, or its environment variable.
func (c *Config) source(flag string) string {
	if env, ok := c.fromEnv[flag]; ok {
		return env
	}
	return "--" + flag
}

// logger writes the log in the chosen format; the fields are the same in both.
func (c *Config) logger(w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.LogLevel)) // checked by check; empty is info
	opts := &slog.HandlerOptions{Level: level}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// routes are the ways out: the one --relay defines first, then the database's.
func (c *Config) routes(ctx context.Context, st *store.Store) ([]postoffice.Route, error) {
	saved, err := st.Routes(ctx)
	if err != nil {
		return nil, err
	}
	if c.Relay == "" {
		return saved, nil
	}
	routes := []postoffice.Route{{Name: "relay", URL: c.Relay, Rate: c.RelayRate, Quotas: c.RelayQuotas,
		Connections: c.RelayConnections}}
	for _, r := range saved {
		if r.Name != "relay" { // the flags' route wins over a saved one of its name
			routes = append(routes, r)
		}
	}
	return routes, nil
}
