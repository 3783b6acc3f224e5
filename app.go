package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/mail"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"pointpost/mailer"
	"pointpost/postoffice"
	"pointpost/rewards"
	"pointpost/store"
	"pointpost/toolbox"
	"pointpost/web"
)

// app is the wired program.
type app struct {
	cfg    *Config
	log    *slog.Logger
	store  *store.Store
	po     *postoffice.PostOffice
	pool   *mailer.Pool
	sender mailer.Sender
	// router is sender when there are routes, nil with the embedded outbox.
	router *mailer.Router
	// outbox keeps the mail of the embedded outbox: sender without routes, else the relay
	// of the routes whose URL is postoffice.OutboxURL.
	outbox *mailer.Outbox
	// signed is sender with DKIM signing, for mail written outside the mail servers.
	signed mailer.Sender
	dkim   *mailer.DKIMSigner
	from   mail.Address
	// webhooks are the providers' webhooks, set by serve when a provider's secret is given.
	webhooks *web.Webhooks
	// receiver and mailRunning are serve's SMTP receiver and whether its mail servers run,
	// for /readyz.
	receiver    *mailer.Receiver
	mailRunning atomic.Bool
	// relay names the way out, for the log.
	relay string
	// name holds cfg.Name on the database while the process's mail servers run under it.
	name *store.ProcessLock
	// nameLost is set when another process took the name (ProcessLock.Watch): its mail
	// server rows and leases are that process's from then on.
	nameLost atomic.Bool
}

// open opens the database and wires the post office; withMail it also builds the sender and,
// when the process runs the mail role, registers its mail servers and builds the pool.
func open(ctx context.Context, cfg *Config, log *slog.Logger, withMail bool) (*app, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	st, err := store.Open(ctx, cfg.DB)
	if err != nil {
		return nil, err
	}
	a := &app{cfg: cfg, log: log, store: st}
	if err := a.wire(ctx, withMail); err != nil {
		a.close()
		return nil, err
	}
	return a, nil
}

func (a *app) wire(ctx context.Context, withMail bool) error {
	cfg, st := a.cfg, a.store
	if err := st.RecordOpen(ctx, cfg.Version); err != nil {
		return err
	}
	if err := cfg.applySettings(ctx, st); err != nil {
		return err
	}
	if cfg.From != "" {
		from, err := mail.ParseAddress(cfg.From)
		if err != nil {
			return fmt.Errorf("--from %q: %w", cfg.From, err)
		}
		a.from = *from
		if cfg.ReplyDomain == "" {
			cfg.ReplyDomain = domainOf(from.Address)
		}
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = "http://" + cfg.HTTP
	}
	if cfg.SoftBounces > 0 {
		if err := st.SetSoftBounceLimit(ctx, cfg.SoftBounces); err != nil {
			return err
		}
	}
	keys, err := a.keyring(ctx)
	if err != nil {
		return err
	}
	a.po = postoffice.New(postoffice.Config{Store: nameKeeper{st, &a.nameLost}, Tokens: keys, BaseURL: cfg.BaseURL, Logger: a.log,
		HeartbeatTimeout: cfg.Lease})
	if !withMail {
		return nil
	}
	if cfg.Demo {
		if err := a.seedDemoRoute(ctx); err != nil {
			return fmt.Errorf("demo route: %w", err)
		}
	}
	routes, err := cfg.routes(ctx, st)
	if err != nil {
		return err
	}
	relay := "embedded outbox"
	a.outbox = mailer.NewOutbox(st)
	if len(routes) == 0 {
		a.sender = a.outbox
	} else {
		a.router, err = mailer.NewRouter(ctx, mailer.RouterConfig{Routes: routes, Store: st, HelloName: cfg.ReplyDomain,
			NoPipelining: cfg.RelayNoPipelining, Outbox: a.outbox, Logger: a.log})
		if err != nil {
			return err
		}
		a.sender = a.router
		var names []string
		for _, r := range routes {
			names = append(names, r.Name+" "+mailer.RedactURL(r.URL))
		}
		relay = strings.Join(names, ", ")
		if len(routes) == 1 {
			relay = mailer.RedactURL(routes[0].URL)
		}
	}
	a.relay = relay
	if a.dkim, err = dkimSigner(cfg, a.from, a.log); err != nil {
		return err
	}
	a.signed = &mailer.DKIMSender{Sender: a.sender, DKIM: a.dkim}
	if !cfg.runs(roleMail) {
		return nil // the web pages send notices and test sends through the sender alone
	}
	// The name's mail server rows and their leases are one live process's: a second one under
	// the name would send what the first has claimed and end its leases.
	if a.name, err = st.LockProcess(ctx, cfg.Name); err != nil {
		if errors.Is(err, store.ErrProcessNameTaken) {
			return fmt.Errorf("%w: start this process under another %s, or stop the other one", err, cfg.source("name"))
		}
		return err
	}
	ids, err := st.RegisterProcessMailServers(ctx, cfg.Name, cfg.MailServers, relay, time.Now())
	if err != nil {
		return err
	}
	a.pool = mailer.NewPool(ids, mailer.Config{
		Relay: relay, Store: nameKeeper{st, &a.nameLost}, PostOffice: a.po, Sender: a.sender, Tokens: keys, DKIM: a.dkim,
		Addresses:  a.addresses(),
		Workers:    cfg.Workers,
		MaxRetries: cfg.MaxRetries, RetryBase: cfg.RetryBase, Lease: cfg.Lease, Logger: a.log,
	})
	return nil
}

// domainOf is the domain of an e-mail address.
func domainOf(address string) string {
	return address[strings.LastIndexByte(address, '@')+1:]
}

// addresses are where invitations come from and where answers go.
func (a *app) addresses() mailer.Addresses {
	return mailer.Addresses{From: a.from, ReplyDomain: a.cfg.ReplyDomain, BaseURL: a.cfg.BaseURL,
		PostalAddress: a.cfg.PostalAddress}
}

// dkimSigner loads (or, on first start, makes and announces) the DKIM key that signs every
// message for the From domain; nil with --dkim-key off.
func dkimSigner(cfg *Config, from mail.Address, log *slog.Logger) (*mailer.DKIMSigner, error) {
	if cfg.DKIMKey == "" || cfg.DKIMKey == "off" {
		return nil, nil
	}
	key, created, err := mailer.LoadOrCreateDKIMKey(cfg.DKIMKey, cfg.DKIMKind)
	if err != nil {
		return nil, fmt.Errorf("--dkim-key %s: %w", cfg.DKIMKey, err)
	}
	signer, err := mailer.NewDKIMSigner(domainOf(from.Address), mailer.DKIMKey{Selector: cfg.DKIMSelector, Key: key})
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
	log.Info("DKIM signing", "engine", signer.Engine())
	return signer, nil
}

// settingServedURL is where serve last said people reach it; the commands that print links
// use it when they are not told.
const settingServedURL = "served_base_url"

// applySettings takes what no flag or environment variable gave from the database: the
// operators' settings from the toolbox's settings page, and the URL serve last ran at.
func (c *Config) applySettings(ctx context.Context, st *store.Store) error {
	for _, s := range []struct {
		flag, setting string
		dst           *string
	}{{"from", toolbox.SettingFrom, &c.From}, {"reply-domain", toolbox.SettingReplyDomain, &c.ReplyDomain},
		{"postal-address", toolbox.SettingPostalAddress, &c.PostalAddress}, {"base-url", settingServedURL, &c.BaseURL},
		{"mailgun-key", toolbox.SettingMailgunKey, &c.MailgunKey}, {"sendgrid-key", toolbox.SettingSendGridKey, &c.SendGridKey},
		{"sendgrid-inbound", toolbox.SettingSendGridInbound, &c.SendGridInbound},
		{"postmark-auth", toolbox.SettingPostmarkAuth, &c.PostmarkAuth}, {"ses-topic", toolbox.SettingSESTopic, &c.SESTopic}} {
		// A command without the flag has no use for the setting; a given --http says where
		// the server is.
		if _, has := c.given[s.flag]; !has || c.given[s.flag] || (s.flag == "base-url" && c.given["http"]) {
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

// keyring loads the token keys kept in the database (made on first start), with the one
// given by --token-key signing.
func (a *app) keyring(ctx context.Context) (*postoffice.Keyring, error) {
	current, secrets, err := a.store.TokenSecrets(ctx, postoffice.NewSecret)
	if err != nil {
		return nil, fmt.Errorf("token keys: %w", err)
	}
	var given []byte
	if a.cfg.TokenKey != "" {
		if given, err = postoffice.ParseSecret(a.cfg.TokenKey); err != nil {
			return nil, fmt.Errorf("--token-key: %w", err)
		}
	}
	return postoffice.RotateKeyring(current, secrets, given)
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
	if a.outbox != nil && a.router != nil {
		a.outbox.Close() // the router leaves it to us
	}
	a.store.Close()
	// Last: the name stays this process's until nothing of it writes any more.
	if err := a.name.Release(); err != nil {
		a.log.Warn("releasing the process name", "name", a.cfg.Name, "err", err)
	}
}

// handler is the web server: consumer pages and the toolbox.
func (a *app) handler(ctx context.Context) http.Handler {
	notices := &mailer.Notices{Sender: a.signed, From: a.from, Domain: a.cfg.ReplyDomain}
	pages := web.Handler(web.Deps{PostOffice: a.po, Accounts: accounts{a.store}, Consumers: a.store,
		Enrollments: a.store, Confirmations: notices, TrustedProxies: a.cfg.TrustedProxies,
		Codes: a.store, CodeSender: notices,
		BaseURL: a.cfg.BaseURL, Logger: a.log, Webhooks: a.webhooks})
	mux := http.NewServeMux()
	health := a.healthHandler()
	mux.Handle("/healthz", health)
	mux.Handle("/readyz", health)
	for _, prefix := range []string{"/i/", "/a/", "/u/", "/account/", "/join", "/join/", "/static/", "/webhooks/", "/favicon.ico"} {
		mux.Handle(prefix, pages)
	}
	tools := toolbox.Deps{Store: a.store, PostOffice: a.po, Context: ctx, Logger: a.log,
		BaseURL: a.cfg.BaseURL, PasswordCost: a.cfg.PasswordCost, Version: a.cfg.Version,
		TrustedProxies: a.cfg.TrustedProxies, Routes: routeDesk{a}, Setup: a.setup()}
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
	return mux
}

// metricsHandler serves the Prometheus metrics, on their own private address: they carry no
// authentication.
func (a *app) metricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		if a.pool != nil {
			a.pool.WriteMetrics(w)
		}
		if a.router != nil {
			a.router.WriteMetrics(w)
		}
		a.writeQueueMetrics(r.Context(), w)
	})
	return mux
}

// writeQueueMetrics writes the deliveries still to send of each running job. The label is
// job_key: Prometheus gives "job" to the scrape job.
func (a *app) writeQueueMetrics(ctx context.Context, w io.Writer) {
	jobs, err := a.store.Jobs(ctx, postoffice.JobRunning)
	if err != nil {
		return
	}
	fmt.Fprintf(w, "# HELP pointpost_job_pending Deliveries still to send, per running job.\n# TYPE pointpost_job_pending gauge\n")
	for _, j := range jobs {
		if n, err := a.store.PendingCount(ctx, j.Key); err == nil {
			fmt.Fprintf(w, "pointpost_job_pending{job_key=\"%d\"} %d\n", j.Key, n)
		}
	}
}

// listeners are serve's open sockets; metrics is nil when --metrics is empty. With HTTPS,
// https is its socket and tls how it gets certificates, and http redirects to it.
type listeners struct {
	http, smtp, metrics, https net.Listener
	tls                        *tlsServing
}

// serve runs the parts of the process's role — the web server; the scheduler, settlement and
// the mail servers; the receiver — until ctx ends, then stops them in order: HTTP first,
// then the mail servers (which record what they sent), then the scheduler, then the
// database. A process without the web role answers only /healthz and /readyz on its HTTP
// address.
func (a *app) serve(parent context.Context, ls listeners, ready func()) error {
	// A server that fails stops the others as a signal would.
	ctx, stopAll := context.WithCancel(parent)
	defer stopAll()
	receiver := mailer.NewReceiver(mailer.ReceiverConfig{ReplyDomain: a.cfg.ReplyDomain, Mailboxes: a.mailboxes(),
		Tokens: a.po.Tokens(), Acks: a.po, Inbound: inboundRecorder{a.store}, Bounces: inboundRecorder{a.store}, Unsubscribe: a.store, Logger: a.log,
		TLSCertFile: a.cfg.SMTPTLSCert, TLSKeyFile: a.cfg.SMTPTLSKey, MaxConnectionsPerClient: a.cfg.SMTPMaxPerClient,
		GetCertificate: ls.tls.forSMTP()})
	if a.cfg.runs(roleReceiver) {
		a.receiver = receiver
	}
	// The webhooks hand the providers' events to the receiver's handling, without its SMTP.
	if a.cfg.runs(roleWeb) && (a.cfg.MailgunKey != "" || a.cfg.SendGridKey != "" || a.cfg.PostmarkAuth != "" || a.cfg.SESTopic != "" || a.cfg.SendGridInbound != "") {
		wh, err := a.cfg.webhooks(webhookEvents{receiver}, a.log)
		if err != nil {
			return err
		}
		a.webhooks = wh
	}
	var mailbox *mailer.Mailbox
	if a.cfg.IMAP != "" && a.cfg.runs(roleReceiver) {
		var err error
		if mailbox, err = mailer.NewMailbox(mailer.MailboxConfig{URL: a.cfg.IMAP, Expunge: a.cfg.IMAPExpunge, Logger: a.log}, receiver); err != nil {
			return fmt.Errorf("--imap: %w", err)
		}
	}
	// Requests in progress at a stop finish with their answer: their context is not the
	// serve context, which is already cancelled when the shutdown begins.
	handler := a.healthHandler()
	if a.cfg.runs(roleWeb) {
		handler = a.handler(ctx)
	}
	pages := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 2 * time.Minute}
	servers := []*http.Server{pages}
	serving := []func() error{func() error { return pages.Serve(ls.http) }}
	if ls.https != nil {
		pages.Handler, pages.TLSConfig = hsts(pages.Handler), ls.tls.config
		serving[0] = func() error { return pages.ServeTLS(ls.https, "", "") }
		plain := &http.Server{Handler: a.plainHandler(ls), ReadHeaderTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second}
		servers = append(servers, plain)
		serving = append(serving, func() error { return plain.Serve(ls.http) })
	}
	if ls.metrics != nil {
		metrics := &http.Server{Handler: a.metricsHandler(), ReadHeaderTimeout: 10 * time.Second,
			WriteTimeout: 30 * time.Second}
		servers = append(servers, metrics)
		serving = append(serving, func() error { return metrics.Serve(ls.metrics) })
	}
	mailServers := 0
	if a.pool != nil {
		mailServers = len(a.pool.Servers())
	}
	a.log.Info("pointpost serving", "role", a.cfg.Role, "name", a.cfg.Name, "http", "http://"+ls.http.Addr().String(),
		"base_url", a.cfg.BaseURL, "db", a.cfg.DB, "mail_servers", mailServers, "relay", a.relay, "version", a.cfg.Version)

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	var wg sync.WaitGroup
	var poolDone, schedDone sync.WaitGroup
	schedCtx, stopSched := context.WithCancel(context.WithoutCancel(ctx))
	if a.pool != nil {
		poolDone.Add(1)
		a.mailRunning.Store(true)
		go func() { defer poolDone.Done(); defer a.mailRunning.Store(false); a.pool.Run(runCtx) }()
		// Every mail process schedules: the store lets one post office move a job at a
		// time (RecordAssignment), and settlement posts each accrual once however many run.
		schedDone.Add(2)
		go func() { defer schedDone.Done(); a.po.Run(schedCtx) }()
		settler := &rewards.Settler{Store: a.store, Interval: a.cfg.SettleEvery, Logger: a.log}
		go func() { defer schedDone.Done(); settler.Run(schedCtx) }()
	}
	failed := make(chan error, 2+len(servers))
	if a.name != nil {
		// A name lost to another process while the database was away stops this one: the two
		// would share the name's mail servers and leases.
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.name.Watch(ctx, time.Second); err != nil {
				a.nameLost.Store(true)
				cancel() // the mail servers stop now, not after the web's grace period
				failed <- err
			}
		}()
	}
	if mailbox != nil {
		wg.Add(1)
		go func() { defer wg.Done(); _ = mailbox.Run(ctx) }()
	}
	if a.receiver != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := receiver.Serve(ctx, ls.smtp); err != nil {
				failed <- err
			}
		}()
	}
	for i := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := serving[i](); !errors.Is(err, http.ErrServerClosed) {
				failed <- err
			}
		}()
	}
	if ready != nil {
		ready()
	}
	var result error
	select {
	case <-ctx.Done():
	case result = <-failed:
		stopAll()
	}
	a.log.Info("stopping")
	shutdownCtx, done := context.WithTimeout(context.Background(), 5*time.Second)
	defer done()
	for _, srv := range servers {
		if err := srv.Shutdown(shutdownCtx); err != nil {
			a.log.Warn("web server: requests still open after the grace period", "err", err)
			srv.Close()
		}
	}
	wg.Wait() // the receiver, whose ctx has ended, too
	cancel()
	poolDone.Wait()
	stopSched()
	schedDone.Wait()
	if a.pool != nil && !a.nameLost.Load() {
		// The last heartbeat says stopped: the post offices of the other processes give this
		// one's jobs to their servers at once rather than after the lease.
		if err := a.store.ReportMailServers(context.WithoutCancel(ctx), a.pool.Statuses()); err != nil {
			a.log.Warn("reporting the mail servers stopped", "err", err)
		}
	}
	a.log.Info("stopped")
	return result
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

// nameKeeper is the store as the post office and the mail servers write their process's rows:
// once the name is lost to another process, the heartbeats and the releases of leases, which
// name this process's mail server ids, would write over that process's and free what it
// claimed; they are left out. Outcomes are still recorded: the messages went.
type nameKeeper struct {
	*store.Store
	lost *atomic.Bool
}

func (k nameKeeper) ReportMailServers(ctx context.Context, statuses []postoffice.MailServerStatus) error {
	if k.lost.Load() {
		return nil
	}
	return k.Store.ReportMailServers(ctx, statuses)
}

func (k nameKeeper) ReleaseLeases(ctx context.Context, owner int) error {
	if k.lost.Load() {
		return nil
	}
	return k.Store.ReleaseLeases(ctx, owner)
}
