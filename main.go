// Command pointpost runs an incentive e-mail program: a post office that selects consumers
// and schedules campaigns onto in-process mail servers, which write every message on the fly
// and send it over SMTP. See README.md.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/mail"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"pointpost/mailer"
	"pointpost/postoffice"
	"pointpost/rewards"
	"pointpost/store"
	"pointpost/toolbox"
	"pointpost/web"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "pointpost:", err)
		os.Exit(1)
	}
}

const usage = `usage: pointpost COMMAND [flags]

commands:
  serve                       run the post office, mail servers and web server
  import consumers FILE.csv   add or update consumers from a CSV file
  campaign create FILE.json   define a job from a campaign file; prints its job key
  job list|show|suspend|resume|stop|schedule [KEY]
  consumer EMAIL [--json]     a consumer's timeline: deliveries, acknowledgements, points
  settle                      post pending points into consumer accounts now
  issuer budget SLUG POINTS   cap the points an issuer's rules may award in all (0: no cap)
  catalog list|add NAME COST STOCK [DESCRIPTION]   the rewards consumers redeem points for
  user add --operator EMAIL | --issuer SLUG EMAIL   a toolbox account; prints its invitation link
  user link EMAIL             a new one-time link for a user to set a password
  apikey create --operator | ISSUER [--name NAME]   a key for the JSON API; prints it once
  bench                       measure end-to-end sending against an in-process SMTP sink

Run 'pointpost COMMAND -h' for a command's flags.`

// run is the whole program, so tests can run it with their own arguments and environment.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	switch args[0] {
	case "serve":
		return serveCommand(ctx, args[1:], getenv, stdout)
	case "import":
		if len(args) < 2 || args[1] != "consumers" {
			return errors.New("usage: pointpost import consumers FILE.csv")
		}
		return importCommand(ctx, args[2:], getenv, stdout)
	case "campaign":
		if len(args) < 2 || args[1] != "create" {
			return errors.New("usage: pointpost campaign create FILE.json")
		}
		return campaignCommand(ctx, args[2:], getenv, stdout)
	case "job":
		return jobCommand(ctx, args[1:], getenv, stdout)
	case "bench":
		return benchCommand(ctx, args[1:], getenv, stdout)
	case "consumer":
		return consumerCommand(ctx, args[1:], getenv, stdout)
	case "settle":
		return settleCommand(ctx, args[1:], getenv, stdout)
	case "issuer":
		return issuerCommand(ctx, args[1:], getenv, stdout)
	case "catalog":
		return catalogCommand(ctx, args[1:], getenv, stdout)
	case "user":
		return userCommand(ctx, args[1:], getenv, stdout)
	case "apikey":
		return apikeyCommand(ctx, args[1:], getenv, stdout)
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	}
	return fmt.Errorf("unknown command %q\n%s", args[0], usage)
}

// Config is everything serve needs, from flags and their environment variables.
type Config struct {
	DB          string
	HTTP        string
	SMTP        string
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
	// SettleEvery is how often accrued points are posted into consumer accounts.
	SettleEvery time.Duration

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
	// SESTopic is the ARN of the SNS topic SES notifies.
	SESTopic string

	// given names the settings given by flag or environment, which win over the toolbox's
	// settings page.
	given map[string]bool
}

// flags binds Config to a flag set; each flag's default comes from its env variable.
func (c *Config) flags(fs *flag.FlagSet, getenv func(string) string) {
	c.given = map[string]bool{}
	str := func(p *string, name, env, def, help string) {
		if v := getenv(env); v != "" {
			def = v
			c.given[name] = true
		}
		fs.StringVar(p, name, def, help+" (env "+env+")")
	}
	num := func(p *int, name, env string, def int, help string) {
		if v, err := strconv.Atoi(getenv(env)); err == nil {
			def = v
		}
		fs.IntVar(p, name, def, help+" (env "+env+")")
	}
	str(&c.DB, "db", "POINTPOST_DB", "pointpost.db", "SQLite database file")
	str(&c.HTTP, "http", "POINTPOST_HTTP", "127.0.0.1:8080", "address of the web server (toolbox and consumer pages)")
	str(&c.SMTP, "smtp", "POINTPOST_SMTP", "127.0.0.1:2525", "address of the SMTP receiver for replies")
	str(&c.SMTPTLSCert, "smtp-tls-cert", "POINTPOST_SMTP_TLS_CERT", "", "PEM certificate (chain) the receiver offers by STARTTLS; read again when it changes")
	str(&c.SMTPTLSKey, "smtp-tls-key", "POINTPOST_SMTP_TLS_KEY", "", "PEM private key of --smtp-tls-cert")
	num(&c.SMTPMaxPerClient, "smtp-max-per-client", "POINTPOST_SMTP_MAX_PER_CLIENT", 10, "SMTP connections at once from one IP address (a local relay in front of the receiver needs more)")
	str(&c.MailgunKey, "mailgun-key", "POINTPOST_MAILGUN_KEY", "", "Mailgun webhook signing key; serves /webhooks/mailgun and /webhooks/mailgun/inbound")
	str(&c.SendGridKey, "sendgrid-key", "POINTPOST_SENDGRID_KEY", "", "SendGrid signed event webhook verification key (base64); serves /webhooks/sendgrid")
	str(&c.PostmarkAuth, "postmark-auth", "POINTPOST_POSTMARK_AUTH", "", "user:password Postmark's webhook URL carries; serves /webhooks/postmark and /webhooks/postmark/inbound")
	str(&c.SESTopic, "ses-topic", "POINTPOST_SES_TOPIC", "", "ARN of the SNS topic Amazon SES notifies; serves /webhooks/ses")
	str(&c.IMAP, "imap", "POINTPOST_IMAP", "", "mailbox to read replies and bounces from, imaps://user:pass@host/INBOX or imap://… (STARTTLS)")
	fs.BoolVar(&c.IMAPExpunge, "imap-expunge", getenv("POINTPOST_IMAP_EXPUNGE") == "true",
		"flag and expunge processed mailbox messages instead of moving them to Processed (env POINTPOST_IMAP_EXPUNGE)")
	str(&c.Relay, "relay", "POINTPOST_RELAY", "", "SMTP relay URL, smtp://user:pass@host:port or smtps://…; empty keeps mail in the embedded outbox")
	num(&c.MailServers, "mail-servers", "POINTPOST_MAIL_SERVERS", 4, "number of in-process mail servers")
	num(&c.Workers, "connections", "POINTPOST_CONNECTIONS", 16, "messages in flight (relay connections) per mail server")
	str(&c.From, "from", "POINTPOST_FROM", "Pointpost <invitations@pointpost.localhost>", "From address of invitations")
	str(&c.ReplyDomain, "reply-domain", "POINTPOST_REPLY_DOMAIN", "", "domain for reply addresses and Message-IDs (default: the From domain)")
	str(&c.PostalAddress, "postal-address", "POINTPOST_POSTAL_ADDRESS", "Pointpost, 1 Example Street, Springfield",
		"the operator's postal address, shown in every message's footer")
	str(&c.BaseURL, "base-url", "POINTPOST_BASE_URL", "", "public URL of the web server, for links in messages (default: http://ADDRESS of --http)")
	str(&c.TokenKey, "token-key", "POINTPOST_TOKEN_KEY", "", "token secret, 32+ hex characters; default: a key made on first start and kept in the database")
	str(&c.DKIMKey, "dkim-key", "POINTPOST_DKIM_KEY", "pointpost-dkim.pem",
		"PEM file of the DKIM signing key (RSA or Ed25519), made on first start if missing; \"off\" sends unsigned")
	str(&c.DKIMKind, "dkim-key-type", "POINTPOST_DKIM_KEY_TYPE", "rsa", "kind of DKIM key made when the file is missing: rsa (2048 bits) or ed25519")
	str(&c.DKIMSelector, "dkim-selector", "POINTPOST_DKIM_SELECTOR", "pointpost", "DKIM selector: the key is published at SELECTOR._domainkey.FROM-DOMAIN")
	num(&c.PasswordCost, "password-cost", "POINTPOST_PASSWORD_COST", 12, "bcrypt cost of toolbox passwords (4 to 31; each step doubles the work)")
	num(&c.SoftBounces, "soft-bounces", "POINTPOST_SOFT_BOUNCES", 3, "soft bounces since an address last acknowledged that suppress it")
	num(&c.MaxRetries, "max-retries", "POINTPOST_MAX_RETRIES", 5, "retries after a temporary failure before a delivery is given up")
	retry := "1m"
	if v := getenv("POINTPOST_RETRY_BASE"); v != "" {
		retry = v
	}
	fs.Func("retry-base", "first wait before a retry, doubled each time (env POINTPOST_RETRY_BASE) (default 1m)", func(s string) error {
		d, err := time.ParseDuration(s)
		if err == nil && d <= 0 {
			err = errors.New("must be positive")
		}
		c.RetryBase = d
		return err
	})
	c.RetryBase, _ = time.ParseDuration(retry)
	settle := "5s"
	if v := getenv("POINTPOST_SETTLE_INTERVAL"); v != "" {
		settle = v
	}
	c.SettleEvery, _ = time.ParseDuration(settle)
	fs.Func("settle-interval", "how often accrued points are posted to consumer accounts (env POINTPOST_SETTLE_INTERVAL) (default 5s)", func(s string) error {
		d, err := time.ParseDuration(s)
		if err == nil && d <= 0 {
			err = errors.New("must be positive")
		}
		c.SettleEvery = d
		return err
	})
	demo := getenv("POINTPOST_DEMO") == "1" || getenv("POINTPOST_DEMO") == "true"
	fs.BoolVar(&c.Demo, "demo", demo, "seed demo data into an empty database (env POINTPOST_DEMO)")
	str(&c.LogLevel, "log", "POINTPOST_LOG", "info", "log level: debug, info, warn, error")
}

func (c *Config) logger(w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.LogLevel))
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

func parseConfig(name string, args []string, getenv func(string) string) (*Config, *flag.FlagSet, error) {
	var c Config
	fs := flag.NewFlagSet("pointpost "+name, flag.ContinueOnError)
	c.flags(fs, getenv)
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	fs.Visit(func(f *flag.Flag) { c.given[f.Name] = true })
	if c.MailServers < 1 {
		return nil, nil, errors.New("--mail-servers must be at least 1")
	}
	if c.Workers < 1 {
		return nil, nil, errors.New("--connections must be at least 1")
	}
	if c.SoftBounces < 1 {
		return nil, nil, errors.New("--soft-bounces must be at least 1")
	}
	if c.PasswordCost < 4 || c.PasswordCost > 31 {
		return nil, nil, errors.New("--password-cost must be from 4 to 31")
	}
	return &c, fs, nil
}

// app is the wired program.
type app struct {
	cfg    *Config
	log    *slog.Logger
	store  *store.Store
	po     *postoffice.PostOffice
	pool   *mailer.Pool
	sender mailer.Sender
	// signed is sender with DKIM signing, for mail written outside the mail servers.
	signed mailer.Sender
	dkim   *mailer.DKIMSigner
	from   mail.Address
	// webhooks are the providers' webhooks, set by serve when a provider's secret is given.
	webhooks *web.Webhooks
}

// open opens the database and wires the post office; with mail servers it also builds the
// sender and the pool.
func open(ctx context.Context, cfg *Config, log *slog.Logger, withMail bool) (*app, error) {
	st, err := store.Open(ctx, cfg.DB)
	if err != nil {
		return nil, err
	}
	if err := cfg.applySettings(ctx, st); err != nil {
		st.Close()
		return nil, err
	}
	from, err := mail.ParseAddress(cfg.From)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("--from %q: %w", cfg.From, err)
	}
	if cfg.ReplyDomain == "" {
		cfg.ReplyDomain = from.Address[strings.LastIndexByte(from.Address, '@')+1:]
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = "http://" + cfg.HTTP
	}
	a := &app{cfg: cfg, log: log, store: st, from: *from}
	if cfg.SoftBounces > 0 {
		if err := st.SetSoftBounceLimit(ctx, cfg.SoftBounces); err != nil {
			st.Close()
			return nil, err
		}
	}
	keys, err := a.keyring(ctx)
	if err != nil {
		st.Close()
		return nil, err
	}
	a.po = postoffice.New(postoffice.Config{Store: st, Tokens: keys, BaseURL: cfg.BaseURL, Logger: log})
	if !withMail {
		return a, nil
	}
	if cfg.Relay == "" {
		a.sender = mailer.NewOutbox(st)
	} else if a.sender, err = mailer.NewSMTPSender(mailer.RelayConfig{URL: cfg.Relay, HelloName: cfg.ReplyDomain}); err != nil {
		st.Close()
		return nil, err
	}
	relay := "embedded outbox"
	if cfg.Relay != "" {
		relay = mailer.RedactURL(cfg.Relay)
	}
	if err := st.RegisterMailServers(ctx, cfg.MailServers, relay); err != nil {
		a.close()
		return nil, err
	}
	if a.dkim, err = dkimSigner(cfg, from, log); err != nil {
		a.close()
		return nil, err
	}
	a.signed = &mailer.DKIMSender{Sender: a.sender, DKIM: a.dkim}
	a.pool = mailer.NewPool(cfg.MailServers, mailer.Config{
		Relay: relay, Store: st, PostOffice: a.po, Sender: a.sender, Tokens: keys, DKIM: a.dkim,
		Addresses:  a.addresses(),
		Workers:    cfg.Workers,
		MaxRetries: cfg.MaxRetries, RetryBase: cfg.RetryBase, Logger: log,
	})
	return a, nil
}

// addresses are where invitations come from and where answers go.
func (a *app) addresses() mailer.Addresses {
	return mailer.Addresses{From: a.from, ReplyDomain: a.cfg.ReplyDomain, BaseURL: a.cfg.BaseURL,
		PostalAddress: a.cfg.PostalAddress}
}

// dkimSigner loads (or, on first start, makes and announces) the DKIM key that signs every
// message for the From domain; nil with --dkim-key off.
func dkimSigner(cfg *Config, from *mail.Address, log *slog.Logger) (*mailer.DKIMSigner, error) {
	if cfg.DKIMKey == "" || cfg.DKIMKey == "off" {
		return nil, nil
	}
	key, created, err := mailer.LoadOrCreateDKIMKey(cfg.DKIMKey, cfg.DKIMKind)
	if err != nil {
		return nil, fmt.Errorf("--dkim-key %s: %w", cfg.DKIMKey, err)
	}
	domain := from.Address[strings.LastIndexByte(from.Address, '@')+1:]
	signer, err := mailer.NewDKIMSigner(domain, mailer.DKIMKey{Selector: cfg.DKIMSelector, Key: key})
	if err != nil {
		return nil, fmt.Errorf("--dkim-key %s: %w", cfg.DKIMKey, err)
	}
	for _, r := range signer.Records() {
		if created {
			log.Warn("made a new DKIM key: publish this TXT record", "file", cfg.DKIMKey, "name", r.Name, "value", r.Text)
		} else {
			log.Debug("DKIM signing", "name", r.Name, "value", r.Text)
		}
	}
	return signer, nil
}

// applySettings takes the operators' settings from the toolbox's settings page for what no
// flag or environment variable gave.
func (c *Config) applySettings(ctx context.Context, st *store.Store) error {
	for _, s := range []struct {
		flag, setting string
		dst           *string
	}{{"from", toolbox.SettingFrom, &c.From}, {"reply-domain", toolbox.SettingReplyDomain, &c.ReplyDomain},
		{"postal-address", toolbox.SettingPostalAddress, &c.PostalAddress}} {
		if c.given[s.flag] {
			continue
		}
		v, err := st.Setting(ctx, s.setting)
		if err != nil {
			return fmt.Errorf("setting %s: %w", s.setting, err)
		}
		if v != "" {
			*s.dst = v
		}
	}
	return nil
}

// keyring loads the token keys kept in the database (made on first start). A key given by
// flag signs new tokens, as the version after the stored ones, while every stored version
// still verifies the tokens already sent.
func (a *app) keyring(ctx context.Context) (*postoffice.Keyring, error) {
	current, secrets, err := a.store.TokenSecrets(ctx, postoffice.NewSecret)
	if err != nil {
		return nil, fmt.Errorf("token keys: %w", err)
	}
	if a.cfg.TokenKey != "" {
		secret, err := parseHexKey(a.cfg.TokenKey)
		if err != nil {
			return nil, fmt.Errorf("--token-key: %w", err)
		}
		current = 0
		for v, s := range secrets {
			if bytes.Equal(s, secret) {
				current = v
			}
		}
		if current == 0 {
			for v := range secrets {
				current = max(current, v)
			}
			current++
			secrets[current] = secret
		}
	}
	return postoffice.NewKeyring(current, secrets)
}

func parseHexKey(s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) < 16 {
		return nil, errors.New("must be at least 32 hexadecimal characters")
	}
	return b, nil
}

// mailboxes are the local parts at the reply domain the receiver takes besides the token
// addresses: the From address's, where bounces come back while invitations carry it as
// their envelope sender.
func (a *app) mailboxes() []string {
	at := strings.LastIndexByte(a.from.Address, '@')
	if at > 0 && strings.EqualFold(a.from.Address[at+1:], a.cfg.ReplyDomain) {
		return []string{a.from.Address[:at]}
	}
	return nil
}

func (a *app) close() {
	if a.sender != nil {
		a.sender.Close()
	}
	a.store.Close()
}

// handler is the web server: consumer pages, the toolbox and the metrics.
func (a *app) handler(ctx context.Context) http.Handler {
	isNotFound := func(err error) bool { return errors.Is(err, store.ErrNotFound) }
	notices := &mailer.Notices{Sender: a.signed, From: a.from, Domain: a.cfg.ReplyDomain}
	pages := web.Handler(web.Deps{PostOffice: a.po, Accounts: accounts{a.store}, Consumers: a.store,
		Enrollments: a.store, Confirmations: notices,
		BaseURL: a.cfg.BaseURL, Logger: a.log, IsNotFound: isNotFound, Webhooks: a.webhooks})
	mux := http.NewServeMux()
	for _, prefix := range []string{"/i/", "/a/", "/u/", "/account/", "/join", "/join/", "/static/", "/webhooks/"} {
		mux.Handle(prefix, pages)
	}
	tools := toolbox.Deps{Store: a.store, Accounts: a.store, Campaigns: a.store, Reports: a.store,
		Consumers: a.store, Settings: a.store, API: a.store, Inbound: a.store, PostOffice: a.po, Context: ctx, Logger: a.log,
		IsNotFound: isNotFound, BaseURL: a.cfg.BaseURL, PasswordCost: a.cfg.PasswordCost}
	if a.cfg.Relay != "" {
		// Without a relay, mail stays in the outbox on this machine: the toolbox shows the
		// link to pass on instead of claiming it was e-mailed.
		tools.Invitations = notices
	}
	if a.sender != nil {
		tools.TestSender = &mailer.TestSends{Store: a.store, Sender: a.signed, Tokens: a.po.Tokens(),
			Addresses: a.addresses()}
	}
	mux.Handle("/", toolbox.Handler(tools))
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		a.pool.WriteMetrics(w)
		a.writeQueueMetrics(r.Context(), w)
	})
	return mux
}

// serve runs the scheduler, the mail servers and the web server until ctx ends, then stops
// them in order: HTTP first, then the mail servers (which record what they sent), then the
// scheduler, then the database.
func (a *app) serve(parent context.Context, ln, smtpLn net.Listener, ready func(httpAddr, smtpAddr string)) error {
	// A server that fails stops the others as a signal would.
	ctx, stopAll := context.WithCancel(parent)
	defer stopAll()
	receiver := mailer.NewReceiver(mailer.ReceiverConfig{ReplyDomain: a.cfg.ReplyDomain, Mailboxes: a.mailboxes(),
		Tokens: a.po.Tokens(), Acks: a.po, Inbound: inboundRecorder{a.store}, Bounces: inboundRecorder{a.store}, Unsubscribe: a.store, Logger: a.log,
		TLSCertFile: a.cfg.SMTPTLSCert, TLSKeyFile: a.cfg.SMTPTLSKey, MaxConnectionsPerClient: a.cfg.SMTPMaxPerClient})
	if a.cfg.MailgunKey != "" || a.cfg.SendGridKey != "" || a.cfg.PostmarkAuth != "" || a.cfg.SESTopic != "" {
		wh, err := a.cfg.webhooks(webhookEvents{receiver}, a.log)
		if err != nil {
			return err
		}
		a.webhooks = wh
	}
	mux := a.handler(ctx)
	var mailbox *mailer.Mailbox
	if a.cfg.IMAP != "" {
		var err error
		if mailbox, err = mailer.NewMailbox(mailer.MailboxConfig{URL: a.cfg.IMAP, Expunge: a.cfg.IMAPExpunge, Logger: a.log}, receiver); err != nil {
			return fmt.Errorf("--imap: %w", err)
		}
	}
	// Requests in progress at a stop finish with their answer: their context is not the
	// serve context, which is already cancelled when the shutdown begins.
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 2 * time.Minute}
	a.log.Info("pointpost serving", "http", "http://"+ln.Addr().String(), "db", a.cfg.DB,
		"mail_servers", a.cfg.MailServers, "relay", a.pool.Servers()[0].Status().Relay)

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	var wg sync.WaitGroup
	var poolDone, schedDone sync.WaitGroup
	poolDone.Add(1)
	go func() { defer poolDone.Done(); a.pool.Run(runCtx) }()
	schedCtx, stopSched := context.WithCancel(context.WithoutCancel(ctx))
	schedDone.Add(2)
	go func() { defer schedDone.Done(); a.po.Run(schedCtx) }()
	settler := &rewards.Settler{Store: a.store, Interval: a.cfg.SettleEvery, Logger: a.log}
	go func() { defer schedDone.Done(); settler.Run(schedCtx) }()
	httpErr := make(chan error, 3)
	if mailbox != nil {
		wg.Add(1)
		go func() { defer wg.Done(); _ = mailbox.Run(ctx) }()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := receiver.Serve(ctx, smtpLn); err != nil {
			httpErr <- err
		}
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			httpErr <- err
		}
	}()
	if ready != nil {
		ready(ln.Addr().String(), smtpLn.Addr().String())
	}
	var result error
	select {
	case <-ctx.Done():
	case result = <-httpErr:
		stopAll()
	}
	a.log.Info("stopping")
	shutdownCtx, done := context.WithTimeout(context.Background(), 5*time.Second)
	defer done()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		a.log.Warn("web server: requests still open after the grace period", "err", err)
		srv.Close()
	}
	wg.Wait() // the receiver, whose ctx has ended, too
	cancel()
	poolDone.Wait()
	stopSched()
	schedDone.Wait()
	a.log.Info("stopped")
	return result
}

func (a *app) writeQueueMetrics(ctx context.Context, w io.Writer) {
	jobs, err := a.store.Jobs(ctx, postoffice.JobRunning)
	if err != nil {
		return
	}
	fmt.Fprintf(w, "# HELP pointpost_job_pending Deliveries still to send, per running job.\n# TYPE pointpost_job_pending gauge\n")
	for _, j := range jobs {
		if n, err := a.store.PendingCount(ctx, j.Key); err == nil {
			fmt.Fprintf(w, "pointpost_job_pending{job=\"%d\"} %d\n", j.Key, n)
		}
	}
}

func serveCommand(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cfg, _, err := parseConfig("serve", args, getenv)
	if err != nil {
		return err
	}
	log := cfg.logger(os.Stderr)
	// Listening first turns a port 0 into the real one before links are made from it.
	ln, err := net.Listen("tcp", cfg.HTTP)
	if err != nil {
		return fmt.Errorf("--http %s: %w", cfg.HTTP, err)
	}
	defer ln.Close()
	smtpLn, err := net.Listen("tcp", cfg.SMTP)
	if err != nil {
		return fmt.Errorf("--smtp %s: %w", cfg.SMTP, err)
	}
	defer smtpLn.Close()
	cfg.HTTP, cfg.SMTP = ln.Addr().String(), smtpLn.Addr().String()
	a, err := open(ctx, cfg, log, true)
	if err != nil {
		return err
	}
	defer a.close()
	if cfg.Demo {
		if err := a.seedDemo(ctx); err != nil {
			return fmt.Errorf("demo data: %w", err)
		}
	}
	return a.serve(ctx, ln, smtpLn, func(httpAddr, smtpAddr string) {
		fmt.Fprintf(stdout, "pointpost is running: open http://%s/ (replies: smtp://%s)\n", httpAddr, smtpAddr)
		link, err := toolbox.SetupLink(ctx, a.store, a.store, a.cfg.BaseURL, time.Now())
		if err != nil {
			log.Error("setup link", "err", err)
		} else if link != "" {
			fmt.Fprintf(stdout, "No operator yet: open %s to create the first toolbox account (valid 24 hours, once).\n", link)
		}
	})
}

// seedDemo fills an empty database with 10,000 consumers, one issuer and a campaign that
// starts at once. A database that already has consumers is left alone.
func (a *app) seedDemo(ctx context.Context) error {
	n, err := a.store.CountConsumers(ctx)
	if err != nil || n > 0 {
		return err
	}
	if err := a.seedConsumers(ctx, 10_000, 1); err != nil {
		return err
	}
	now := a.po.Now()
	job, matching, err := a.po.CreateJob(ctx, demoCampaign(now, 10_000))
	if err != nil {
		return err
	}
	for _, item := range []rewards.CatalogItem{
		{Name: "Coffee voucher", Description: "A cup at any partner café", Cost: 10, Stock: 500},
		{Name: "Cinema ticket", Description: "One ticket, any film", Cost: 50, Stock: 100},
		{Name: "Weekend getaway", Description: "Two nights for two", Cost: 5000, Stock: 2},
	} {
		if err := a.store.AddCatalogItem(ctx, &item); err != nil {
			return err
		}
	}
	a.log.Info("demo data seeded", "consumers", 10_000, "job", job.Key, "recipients", matching)
	return nil
}

func (a *app) seedConsumers(ctx context.Context, n int, seed int64) error {
	batch := make([]rewards.Consumer, 0, 5000)
	flush := func() error {
		_, _, err := a.store.UpsertConsumers(ctx, batch)
		batch = batch[:0]
		return err
	}
	err := rewards.DemoConsumers(n, seed, func(c rewards.Consumer) error {
		batch = append(batch, c)
		if len(batch) == cap(batch) {
			return flush()
		}
		return nil
	})
	if err != nil {
		return err
	}
	return flush()
}

func demoCampaign(now time.Time, count int) *postoffice.Campaign {
	return &postoffice.Campaign{
		Issuer: "acme", IssuerName: "Acme Outdoor", Name: "Welcome to Acme points",
		Start: now.UTC().Format(time.RFC3339), Stop: now.Add(30 * 24 * time.Hour).UTC().Format(time.RFC3339),
		ClientCount: count,
		Rules: []postoffice.RuleSpec{
			{Description: "Reply to the invitation", Type: "reply", Points: 10, Frequency: "once"},
			{Description: "Open the invitation and press Submit", Type: "click", Points: 10, Frequency: "once",
				IssuerURL: "https://acme.example/"},
		},
		Text: &postoffice.MessageSpec{
			Subject: "<_&getUserName_>, 10 points are waiting for you",
			Body: "POINTENTIALS -- Acme Outdoor\n\nDear <_&getUserName_>,\n\n" +
				"Acme invites you to earn 10 points: reply to this e-mail, or open\n<_&getAckURL_>\n\n" +
				"Your balance: <_&getPointsBalance_> points.\nWe think you like <_&getInterests_> in <_&getCity_>.\n\n" +
				"Your points and rewards: <_&getAccountURL_>\n" +
				"To stop these e-mails: <_&getUnsubscribeURL_>\n",
		},
		HTML: &postoffice.MessageSpec{
			Subject: "<_&getUserName_>, 10 points are waiting for you",
			Body: `<html><body style="font-family:sans-serif"><h1>POINTENTIALS</h1>` +
				`<p>Dear <_&getUserName_>,</p><p><font size="+1" color="#FF0000">Acme invites you to earn 10 points.</font></p>` +
				`<p><a href="<_&getAckURL_>">Earn my points</a> or simply reply to this e-mail.</p>` +
				`<p>Your balance: <b><_&getPointsBalance_></b> points. We think you like <_&getInterests_> in <_&getCity_>.</p>` +
				`<p style="font-size:small"><a href="<_&getAccountURL_>">My points and rewards</a> · ` +
				`<a href="<_&getUnsubscribeURL_>">Unsubscribe</a></p></body></html>`,
		},
	}
}

// storeOnly opens the database for the commands that do not send.
func storeOnly(ctx context.Context, name string, args []string, getenv func(string) string) (*app, *flag.FlagSet, error) {
	cfg, fs, err := parseConfig(name, args, getenv)
	if err != nil {
		return nil, nil, err
	}
	a, err := open(ctx, cfg, cfg.logger(io.Discard), false)
	return a, fs, err
}

func importCommand(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	a, fs, err := storeOnly(ctx, "import consumers", args, getenv)
	if err != nil {
		return err
	}
	defer a.close()
	if fs.NArg() != 1 {
		return errors.New("usage: pointpost import consumers [--db FILE] FILE.csv")
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		return err
	}
	defer f.Close()
	start := time.Now()
	res, err := a.store.ImportConsumersCSV(ctx, f, func(e rewards.RowError) {
		fmt.Fprintf(stdout, "%s: %v\n", filepath.Base(fs.Arg(0)), &e)
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "imported %d rows in %.1fs: %d new, %d updated, %d bad\n",
		res.Rows, time.Since(start).Seconds(), res.Inserted, res.Updated, res.Bad)
	return nil
}

func campaignCommand(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	a, fs, err := storeOnly(ctx, "campaign create", args, getenv)
	if err != nil {
		return err
	}
	defer a.close()
	if fs.NArg() != 1 {
		return errors.New("usage: pointpost campaign create [--db FILE] FILE.json")
	}
	data, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	c, err := postoffice.ParseCampaign(data)
	if err != nil {
		return fmt.Errorf("%s: %w", fs.Arg(0), err)
	}
	job, _, err := a.po.CreateJob(ctx, c)
	if err != nil {
		return fmt.Errorf("%s: %w", fs.Arg(0), err)
	}
	fmt.Fprintln(stdout, job.Key)
	return nil
}

func jobCommand(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: pointpost job list|show|suspend|resume|stop|schedule [KEY]")
	}
	verb := args[0]
	a, fs, err := storeOnly(ctx, "job "+verb, args[1:], getenv)
	if err != nil {
		return err
	}
	defer a.close()
	if verb == "list" {
		jobs, err := a.store.Jobs(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%-6s %-10s %-9s %-24s %9s %9s %s\n", "KEY", "ISSUER", "STATE", "NAME", "SELECTED", "SENT", "SERVER")
		for _, j := range jobs {
			counts, err := a.store.JobCounts(ctx, j.Key)
			if err != nil {
				return err
			}
			state := string(j.State)
			if j.Suspended {
				state += "*"
			}
			fmt.Fprintf(stdout, "%-6d %-10s %-9s %-24.24s %9d %9d %d\n", j.Key, j.IssuerSlug, state, j.Name, j.Selected, counts.Sent, j.MailServerID)
		}
		return nil
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("usage: pointpost job %s KEY", verb)
	}
	key, err := strconv.ParseInt(fs.Arg(0), 10, 64)
	if err != nil {
		return fmt.Errorf("job key %q is not a number", fs.Arg(0))
	}
	switch verb {
	case "show":
		job, err := a.store.Job(ctx, key)
		if err != nil {
			return err
		}
		counts, err := a.store.JobCounts(ctx, key)
		if err != nil {
			return err
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"job": job, "counts": counts})
	case "suspend":
		return a.po.Suspend(ctx, key)
	case "resume":
		return a.po.Resume(ctx, key)
	case "stop":
		return a.po.Stop(ctx, key)
	case "schedule":
		return a.po.Schedule(ctx, key)
	}
	return fmt.Errorf("unknown job command %q", verb)
}

// benchResult is what `pointpost bench --json` prints.
type benchResult struct {
	Consumers        int     `json:"consumers"`
	Messages         int     `json:"messages"`
	Seconds          float64 `json:"seconds"`
	MsgsPerSec       float64 `json:"msgs_per_sec"`
	CPUSeconds       float64 `json:"cpu_seconds"`
	PeakRSSBytes     int64   `json:"peak_rss_bytes"` // while selecting and sending
	SelectionSeconds float64 `json:"selection_seconds"`
	SeedSeconds      float64 `json:"seed_seconds"`
	SinkMessages     int64   `json:"sink_messages,omitempty"`
	// Acks measures Submit POSTs over loopback, each answered after its durable commit.
	Acks *loadResult `json:"acks,omitempty"`
	// Replies measures e-mail replies to the receiver over SMTP, each answered after its commit.
	Replies *loadResult `json:"replies,omitempty"`
}

// benchCommand runs a real job through the real post office and mail servers into an
// in-process SMTP sink (or --relay) and measures it.
func benchCommand(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("pointpost bench", flag.ContinueOnError)
	consumers := fs.Int("consumers", 100_000, "synthetic consumers, all selected")
	relay := fs.String("relay", "", "send to this SMTP relay instead of the in-process sink")
	servers := fs.Int("mail-servers", 1, "mail servers (one job runs on one)")
	conns := fs.Int("connections", 16, "connections per mail server")
	asJSON := fs.Bool("json", false, "print one JSON object")
	keep := fs.Bool("keep", false, "keep the temporary database and print where it is")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the sending phase to this file")
	acks := fs.Int("acks", 0, "then acknowledge this many invitations by Submit POSTs over HTTP")
	ackConns := fs.Int("ack-connections", 64, "concurrent HTTP connections for --acks")
	replies := fs.Int("replies", 0, "then reply by e-mail to this many invitations, over SMTP to the receiver")
	replyConns := fs.Int("reply-connections", 16, "concurrent SMTP connections for --replies")
	dkimKind := fs.String("dkim", "", "sign every message with a new DKIM key of this kind: rsa or ed25519 (default: unsigned)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *consumers < 1 {
		return errors.New("--consumers must be at least 1")
	}
	dir, err := os.MkdirTemp("", "pointpost-bench-")
	if err != nil {
		return err
	}
	if !*keep {
		defer os.RemoveAll(dir)
	}
	var sink *mailer.Sink
	if *relay == "" {
		sink = &mailer.Sink{}
		if err := sink.Start("127.0.0.1:0"); err != nil {
			return err
		}
		defer sink.Close()
		*relay = sink.URL()
	}
	cfg := &Config{DB: filepath.Join(dir, "bench.db"), HTTP: "127.0.0.1:0", Relay: *relay, MailServers: *servers,
		Workers: *conns, From: "Bench <bench@pointpost.localhost>", MaxRetries: 5, RetryBase: time.Second, LogLevel: "warn",
		SoftBounces: 3, DKIMKey: "off", DKIMKind: *dkimKind, DKIMSelector: "bench"}
	if *dkimKind != "" {
		cfg.DKIMKey = filepath.Join(dir, "dkim.pem")
	}
	log := cfg.logger(os.Stderr)
	a, err := open(ctx, cfg, log, true)
	if err != nil {
		return err
	}
	defer a.close()

	t := time.Now()
	if err := a.seedConsumers(ctx, *consumers, 7); err != nil {
		return err
	}
	res := benchResult{Consumers: *consumers, SeedSeconds: time.Since(t).Seconds()}
	job, _, err := a.po.CreateJob(ctx, demoCampaign(a.po.Now().Add(-time.Second), *consumers))
	if err != nil {
		return err
	}
	// The figures cover selecting and sending, not making the synthetic consumers.
	resetPeakRSS()
	cpu0 := cpuSeconds()
	t = time.Now()
	// One scheduler pass selects the whole audience before any mail server has reported.
	if err := a.po.Tick(ctx); err != nil {
		return err
	}
	res.SelectionSeconds = time.Since(t).Seconds()

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); a.pool.Run(runCtx) }()
	go func() { defer wg.Done(); a.po.Run(runCtx) }()
	t = time.Now()
	err = waitDone(ctx, a.store, job.Key)
	res.Seconds = time.Since(t).Seconds()
	cancel()
	wg.Wait()
	if err != nil {
		return err
	}
	res.CPUSeconds = cpuSeconds() - cpu0
	res.PeakRSSBytes = peakRSS()
	counts, err := a.store.JobCounts(ctx, job.Key)
	if err != nil {
		return err
	}
	res.Messages = counts.Sent
	res.MsgsPerSec = float64(counts.Sent) / res.Seconds
	if sink != nil {
		res.SinkMessages = sink.Count()
	}
	if *keep {
		fmt.Fprintln(os.Stderr, "database kept at", cfg.DB)
	}
	if *acks > 0 {
		r, err := a.benchAcks(ctx, job.Key, *acks, *ackConns)
		if err != nil {
			return err
		}
		res.Acks = &r
	}
	if *replies > 0 {
		r, err := a.benchReplies(ctx, job.Key, *replies, *replyConns)
		if err != nil {
			return err
		}
		res.Replies = &r
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	fmt.Fprintf(stdout, "consumers      %d (seeded in %.1fs)\nselection      %.2fs\nmessages       %d sent in %.2fs\nrate           %.0f msg/s\ncpu            %.1fs\npeak rss       %.1f MB\n",
		res.Consumers, res.SeedSeconds, res.SelectionSeconds, res.Messages, res.Seconds, res.MsgsPerSec, res.CPUSeconds,
		float64(res.PeakRSSBytes)/(1<<20))
	if res.Acks != nil {
		fmt.Fprintf(stdout, "acks           %d in %.2fs: %.0f/s, p50 %.1f ms, p99 %.1f ms, max %.1f ms, %d failed, cpu %.1fs\n",
			res.Acks.Requests, res.Acks.Seconds, res.Acks.PerSec, res.Acks.P50Millis, res.Acks.P99Millis,
			res.Acks.MaxMillis, res.Acks.Failures, res.Acks.CPUSeconds)
	}
	if res.Replies != nil {
		fmt.Fprintf(stdout, "replies        %d in %.2fs: %.0f/s, p50 %.1f ms, p99 %.1f ms, max %.1f ms, %d failed, cpu %.1fs\n",
			res.Replies.Requests, res.Replies.Seconds, res.Replies.PerSec, res.Replies.P50Millis, res.Replies.P99Millis,
			res.Replies.MaxMillis, res.Replies.Failures, res.Replies.CPUSeconds)
	}
	if counts.Sent != counts.Total || counts.Total == 0 {
		return fmt.Errorf("only %d of %d selected messages were sent (%+v)", counts.Sent, counts.Total, counts)
	}
	return nil
}

// waitDone polls until the job is done.
func waitDone(ctx context.Context, st *store.Store, key int64) error {
	for {
		job, err := st.Job(ctx, key)
		if err != nil {
			return err
		}
		if job.State == postoffice.JobDone {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// resetPeakRSS starts a new high-water mark of the resident set (Linux clear_refs 5).
func resetPeakRSS() {
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// peakRSS reads the process's high-water resident set size from /proc.
func peakRSS() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			kb, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// loadResult is what a load run measured.
type loadResult struct {
	Requests   int     `json:"requests"`
	Failures   int     `json:"failures"`
	Seconds    float64 `json:"seconds"`
	PerSec     float64 `json:"per_sec"`
	P50Millis  float64 `json:"p50_ms"`
	P99Millis  float64 `json:"p99_ms"`
	MaxMillis  float64 `json:"max_ms"`
	CPUSeconds float64 `json:"cpu_seconds"`
	FirstError string  `json:"first_error,omitempty"`
}

// postLoad POSTs an empty form to every path once, from conns concurrent keep-alive
// HTTP/1.1 connections to addr, and measures throughput and latency. Like wrk, it writes
// each request by hand and reads the response with http.ReadResponse, so that the load
// generator, which shares the machine, takes little of it. A response other than want
// counts as a failure.
func postLoad(ctx context.Context, addr string, paths []string, conns, want int) loadResult {
	next := make(chan string)
	latencies := make([][]time.Duration, conns)
	failures := make([]int, conns)
	var firstErr sync.Once
	var res loadResult
	fail := func(i int, err error) {
		failures[i]++
		firstErr.Do(func() { res.FirstError = err.Error() })
	}
	var wg sync.WaitGroup
	start := time.Now()
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var conn net.Conn
			var r *bufio.Reader
			defer func() {
				if conn != nil {
					conn.Close()
				}
			}()
			var req []byte
			for path := range next {
				t := time.Now()
				if conn == nil {
					var err error
					if conn, err = net.DialTimeout("tcp", addr, 10*time.Second); err != nil {
						fail(i, err)
						continue
					}
					r = bufio.NewReader(conn)
				}
				req = append(req[:0], "POST "...)
				req = append(req, path...)
				req = append(req, " HTTP/1.1\r\nHost: "...)
				req = append(req, addr...)
				req = append(req, "\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 0\r\n\r\n"...)
				conn.SetDeadline(time.Now().Add(30 * time.Second))
				_, err := conn.Write(req)
				var resp *http.Response
				if err == nil {
					resp, err = http.ReadResponse(r, nil)
				}
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != want {
						err = fmt.Errorf("%s: HTTP %d", path, resp.StatusCode)
					}
				}
				latencies[i] = append(latencies[i], time.Since(t))
				if err != nil {
					fail(i, err)
					conn.Close()
					conn = nil
				}
			}
		}()
	}
	for _, p := range paths {
		select {
		case next <- p:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	var all []time.Duration
	for i := range conns {
		all = append(all, latencies[i]...)
		res.Failures += failures[i]
	}
	summarize(&res, all)
	return res
}

func consumerCommand(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	// The e-mail may come before the flags: pointpost consumer EMAIL --json.
	var email string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		email, args = args[0], args[1:]
	}
	asJSON := slices.Contains(args, "--json") || slices.Contains(args, "-json")
	args = slices.DeleteFunc(args, func(a string) bool { return a == "--json" || a == "-json" })
	a, fs, err := storeOnly(ctx, "consumer", args, getenv)
	if err != nil {
		return err
	}
	defer a.close()
	if email == "" && fs.NArg() == 1 {
		email = fs.Arg(0)
	}
	if email == "" {
		return errors.New("usage: pointpost consumer EMAIL [--json]")
	}
	tl, err := a.store.Timeline(ctx, email)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("no consumer with e-mail %s", email)
	}
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(tl)
	}
	return tl.WriteText(stdout)
}

func settleCommand(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	a, _, err := storeOnly(ctx, "settle", args, getenv)
	if err != nil {
		return err
	}
	defer a.close()
	n, err := (&rewards.Settler{Store: a.store}).SettleNow(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "posted %d accruals\n", n)
	return nil
}

// accounts adapts the store to the web pages, which need only whether a redemption worked.
type accounts struct{ *store.Store }

func (a accounts) Redeem(ctx context.Context, consumerID, itemID int64) error {
	_, err := a.Store.Redeem(ctx, consumerID, itemID)
	return err
}

// inboundRecorder keeps what the receiver took that earned nothing.
type inboundRecorder struct{ st *store.Store }

func (r inboundRecorder) RecordInbound(ctx context.Context, m *mailer.InboundRecord) error {
	return r.st.RecordInbound(ctx, &store.InboundMessage{Kind: m.Kind, JobKey: m.JobKey, ConsumerID: m.ConsumerID,
		From: m.From, To: m.To, Subject: m.Subject, Detail: m.Detail, Key: m.Key})
}

// RecordBounce records a bounce or complaint and applies its effects: rejected deliveries,
// bounced or suppressed consumers.
func (r inboundRecorder) RecordBounce(ctx context.Context, b *mailer.BounceRecord) error {
	sb := &store.Bounce{Message: store.InboundMessage{Kind: b.Kind, JobKey: b.JobKey, ConsumerID: b.ConsumerID,
		From: b.From, To: b.To, Subject: b.Subject, Detail: b.Detail}, Key: b.Key, Complaint: b.Complaint, Reported: b.Reported}
	for _, f := range b.Failures {
		sb.Failures = append(sb.Failures, store.BounceFailure{Email: f.Recipient, Severity: string(f.Severity),
			Status: f.Status, Detail: f.Detail()})
	}
	return r.st.RecordBounce(ctx, sb)
}

// benchAcks serves the web pages on loopback and presses Submit on n invitations of a job
// from conns connections. Each POST is answered after its acknowledgement is committed.
func (a *app) benchAcks(ctx context.Context, jobKey int64, n, conns int) (loadResult, error) {
	ids, err := a.store.JobConsumers(ctx, jobKey, n)
	if err != nil {
		return loadResult{}, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return loadResult{}, err
	}
	srv := &http.Server{Handler: a.handler(ctx), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	paths := make([]string, len(ids))
	for i, id := range ids {
		paths[i] = "/i/" + a.po.Tokens().Encode(jobKey, id)
	}
	cpu0 := cpuSeconds()
	res := postLoad(ctx, ln.Addr().String(), paths, conns, http.StatusOK)
	res.CPUSeconds = cpuSeconds() - cpu0
	if res.Failures > 0 {
		return res, fmt.Errorf("%d of %d acknowledgements failed; first: %s", res.Failures, res.Requests, res.FirstError)
	}
	return res, nil
}

// benchReplies runs the receiver on loopback and replies to n invitations of a job, as mail
// clients would (Re: subject with the token, to the reply address), from conns persistent
// SMTP connections. Each reply is answered after its acknowledgement is committed.
func (a *app) benchReplies(ctx context.Context, jobKey int64, n, conns int) (loadResult, error) {
	ids, err := a.store.JobConsumers(ctx, jobKey, n)
	if err != nil {
		return loadResult{}, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return loadResult{}, err
	}
	rctx, stop := context.WithCancel(ctx)
	receiver := mailer.NewReceiver(mailer.ReceiverConfig{ReplyDomain: a.cfg.ReplyDomain, Mailboxes: a.mailboxes(),
		Tokens: a.po.Tokens(), Acks: a.po, Inbound: inboundRecorder{a.store}, Bounces: inboundRecorder{a.store}, Unsubscribe: a.store, Logger: a.log,
		MaxConnections: conns + 4, MaxConnectionsPerClient: conns + 4})
	done := make(chan error, 1)
	go func() { done <- receiver.Serve(rctx, ln) }()
	defer func() { stop(); <-done }()

	sender, err := mailer.NewSMTPSender(mailer.RelayConfig{URL: "smtp://" + ln.Addr().String(), Timeout: 30 * time.Second})
	if err != nil {
		return loadResult{}, err
	}
	defer sender.Close()
	next := make(chan int64)
	latencies := make([][]time.Duration, conns)
	failures := make([]int, conns)
	var res loadResult
	var firstErr sync.Once
	var wg sync.WaitGroup
	cpu0, start := cpuSeconds(), time.Now()
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range next {
				token := a.po.Tokens().Encode(jobKey, id)
				to := "reply+" + token + "@" + a.cfg.ReplyDomain
				data := fmt.Sprintf("From: <c%d@example.com>\r\nTo: <%s>\r\nSubject: Re: Your points [#%s]\r\n"+
					"Message-ID: <r%d@example.com>\r\nIn-Reply-To: <%s@%s>\r\n\r\nYes, count me in!\r\n",
					id, to, token, id, token, a.cfg.ReplyDomain)
				t := time.Now()
				err := sender.Send(ctx, &mailer.Envelope{From: fmt.Sprintf("c%d@example.com", id), To: to, Data: []byte(data)})
				latencies[i] = append(latencies[i], time.Since(t))
				if err != nil {
					failures[i]++
					firstErr.Do(func() { res.FirstError = err.Error() })
				}
			}
		}()
	}
	for _, id := range ids {
		next <- id
	}
	close(next)
	wg.Wait()
	res.Seconds, res.CPUSeconds = time.Since(start).Seconds(), cpuSeconds()-cpu0
	var all []time.Duration
	for i := range conns {
		all = append(all, latencies[i]...)
		res.Failures += failures[i]
	}
	summarize(&res, all)
	if res.Failures > 0 {
		return res, fmt.Errorf("%d of %d replies failed; first: %s", res.Failures, res.Requests, res.FirstError)
	}
	return res, nil
}

// summarize fills in the counts and latency percentiles of a load run.
func summarize(res *loadResult, all []time.Duration) {
	slices.Sort(all)
	res.Requests = len(all)
	if len(all) > 0 {
		pick := func(q float64) float64 { return float64(all[int(q*float64(len(all)-1))]) / 1e6 }
		res.P50Millis, res.P99Millis, res.MaxMillis = pick(0.50), pick(0.99), pick(1)
		res.PerSec = float64(len(all)) / res.Seconds
	}
}

func issuerCommand(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	const usage = "usage: pointpost issuer budget SLUG POINTS"
	if len(args) < 1 || args[0] != "budget" {
		return errors.New(usage)
	}
	a, fs, err := storeOnly(ctx, "issuer budget", args[1:], getenv)
	if err != nil {
		return err
	}
	defer a.close()
	if fs.NArg() != 2 {
		return errors.New(usage)
	}
	points, err := strconv.ParseInt(fs.Arg(1), 10, 64)
	if err != nil || points < 0 {
		return fmt.Errorf("points %q: must be a whole number, 0 or more", fs.Arg(1))
	}
	iss, err := a.issuer(ctx, fs.Arg(0))
	if err != nil {
		return err
	}
	if err := a.store.SetIssuerBudget(ctx, iss.ID, points); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s may award %d points in all\n", iss.Slug, points)
	return nil
}

// issuer returns the issuer with slug.
func (a *app) issuer(ctx context.Context, slug string) (rewards.Issuer, error) {
	issuers, err := a.store.Issuers(ctx)
	if err != nil {
		return rewards.Issuer{}, err
	}
	for _, iss := range issuers {
		if iss.Slug == slug {
			return iss, nil
		}
	}
	return rewards.Issuer{}, fmt.Errorf("no issuer %q", slug)
}

// takeFlag removes a command's own flag (and, if it has one, its value) from args, leaving
// the configuration flags for parseConfig.
func takeFlag(args []string, name string, hasValue bool) (rest []string, value string, found bool, err error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a != "-"+name && a != "--"+name {
			if v, ok := strings.CutPrefix(a, "--"+name+"="); ok && hasValue {
				return append(args[:i:i], args[i+1:]...), v, true, nil
			}
			continue
		}
		if !hasValue {
			return append(args[:i:i], args[i+1:]...), "", true, nil
		}
		if i+1 == len(args) {
			return nil, "", false, fmt.Errorf("--%s needs a value", name)
		}
		return append(args[:i:i], args[i+2:]...), args[i+1], true, nil
	}
	return args, "", false, nil
}

// userCommand adds toolbox accounts and makes one-time links for them: the way in for the
// first operator on a machine whose serve output nobody saw.
func userCommand(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	const usage = "usage: pointpost user add --operator EMAIL | user add --issuer SLUG EMAIL | user link EMAIL"
	if len(args) < 1 {
		return errors.New(usage)
	}
	verb, args := args[0], args[1:]
	args, operator, err := func() ([]string, bool, error) {
		rest, _, found, err := takeFlag(args, "operator", false)
		return rest, found, err
	}()
	if err != nil {
		return err
	}
	args, slug, _, err := takeFlag(args, "issuer", true)
	if err != nil {
		return err
	}
	a, fs, err := storeOnly(ctx, "user "+verb, args, getenv)
	if err != nil {
		return err
	}
	defer a.close()
	if fs.NArg() != 1 {
		return errors.New(usage)
	}
	now := time.Now()
	switch verb {
	case "add":
		u := &rewards.User{Email: fs.Arg(0), Role: rewards.RoleOperator}
		switch {
		case operator == (slug != ""):
			return errors.New("user add: give --operator or --issuer SLUG\n" + usage)
		case slug != "":
			iss, err := a.issuer(ctx, slug)
			if err != nil {
				return err
			}
			u.Role, u.IssuerID = rewards.RoleIssuer, iss.ID
		}
		link, err := toolbox.AddUser(ctx, a.store, u, a.cfg.BaseURL, now)
		if errors.Is(err, store.ErrExists) {
			return fmt.Errorf("%s already has an account: 'pointpost user link %s' makes a new sign-in link", u.Email, u.Email)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s added as %s; to set a password, open (valid 7 days, once):\n%s\n", u.Email, u.Role, link)
	case "link":
		u, _, err := a.store.UserByEmail(ctx, fs.Arg(0))
		if err != nil {
			return err
		}
		link, err := toolbox.NewUserLink(ctx, a.store, u.ID, a.cfg.BaseURL, now, 24*time.Hour)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "for %s, open (valid 24 hours, once):\n%s\n", u.Email, link)
	default:
		return errors.New(usage)
	}
	return nil
}

// apikeyCommand makes a JSON API key and prints its secret, the only time it is shown.
func apikeyCommand(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	const usage = "usage: pointpost apikey create --operator | ISSUER [--name NAME]"
	if len(args) < 1 || args[0] != "create" {
		return errors.New(usage)
	}
	args, _, operator, err := takeFlag(args[1:], "operator", false)
	if err != nil {
		return err
	}
	args, name, _, err := takeFlag(args, "name", true)
	if err != nil {
		return err
	}
	a, fs, err := storeOnly(ctx, "apikey create", args, getenv)
	if err != nil {
		return err
	}
	defer a.close()
	k := &rewards.APIKey{Name: name}
	switch {
	case operator && fs.NArg() == 0:
	case !operator && fs.NArg() == 1:
		iss, err := a.issuer(ctx, fs.Arg(0))
		if err != nil {
			return err
		}
		k.IssuerID = iss.ID
	default:
		return errors.New(usage)
	}
	secret, err := toolbox.NewAPIKey(ctx, a.store, k, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, secret)
	return nil
}

func catalogCommand(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	const usage = "usage: pointpost catalog list | catalog add NAME COST STOCK [DESCRIPTION]"
	if len(args) < 1 || (args[0] != "list" && args[0] != "add") {
		return errors.New(usage)
	}
	a, fs, err := storeOnly(ctx, "catalog "+args[0], args[1:], getenv)
	if err != nil {
		return err
	}
	defer a.close()
	if args[0] == "add" {
		if fs.NArg() < 3 || fs.NArg() > 4 {
			return errors.New(usage)
		}
		item := rewards.CatalogItem{Name: fs.Arg(0), Description: fs.Arg(3)}
		if item.Cost, err = strconv.ParseInt(fs.Arg(1), 10, 64); err != nil {
			return fmt.Errorf("cost %q: must be a whole number of points", fs.Arg(1))
		}
		if item.Stock, err = strconv.ParseInt(fs.Arg(2), 10, 64); err != nil {
			return fmt.Errorf("stock %q: must be a whole number", fs.Arg(2))
		}
		if err := a.store.AddCatalogItem(ctx, &item); err != nil {
			return err
		}
		fmt.Fprintln(stdout, item.ID)
		return nil
	}
	items, err := a.store.Catalog(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%-4s %-30s %8s %7s\n", "ID", "NAME", "COST", "STOCK")
	for _, it := range items {
		fmt.Fprintf(stdout, "%-4d %-30.30s %8d %7d\n", it.ID, it.Name, it.Cost, it.Stock)
	}
	return nil
}

// webhooks builds the providers' webhooks from their secrets. Returns an error for a
// SendGrid key that is not a base64 P-256 public key, or Postmark auth without a colon.
func (c *Config) webhooks(events web.WebhookEvents, log *slog.Logger) (*web.Webhooks, error) {
	wh := &web.Webhooks{Events: events, MailgunKey: c.MailgunKey, SESTopicARN: c.SESTopic, Logger: log}
	if c.SendGridKey != "" {
		der, err := base64.StdEncoding.DecodeString(strings.TrimSpace(c.SendGridKey))
		if err != nil {
			return nil, fmt.Errorf("--sendgrid-key: not base64: %w", err)
		}
		pub, err := x509.ParsePKIXPublicKey(der)
		key, ok := pub.(*ecdsa.PublicKey)
		if err != nil || !ok || key.Curve != elliptic.P256() {
			return nil, fmt.Errorf("--sendgrid-key: not an ECDSA P-256 public key (%v)", err)
		}
		wh.SendGridKey = key
	}
	if c.PostmarkAuth != "" {
		u, p, ok := strings.Cut(c.PostmarkAuth, ":")
		if !ok || u == "" || p == "" {
			return nil, errors.New("--postmark-auth: give user:password")
		}
		wh.PostmarkUser, wh.PostmarkPassword = u, p
	}
	return wh, nil
}

// webhookEvents gives the webhooks the receiver's inbound path.
type webhookEvents struct{ r *mailer.Receiver }

func (e webhookEvents) ProviderEvent(ctx context.Context, ev web.WebhookEvent) error {
	return e.r.TakeProviderEvent(ctx, mailer.ProviderEvent{Provider: ev.Provider, ID: ev.ID, Kind: mailer.InboundKind(ev.Kind),
		Tokens: ev.Tokens, Recipient: ev.Recipient, Status: ev.Status, Diagnostic: ev.Diagnostic, Permanent: ev.Permanent, Subject: ev.Subject})
}

func (e webhookEvents) InboundParse(ctx context.Context, raw []byte) error {
	return e.r.TakeInboundParse(ctx, raw)
}
