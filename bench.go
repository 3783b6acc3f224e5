package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"pointpost/mailer"
	"pointpost/postoffice"
	"pointpost/store"
)

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
	// SinkThrottled counts the sink's 454 answers (--sink-rate).
	SinkThrottled int64 `json:"sink_throttled"`
	// RelayLatencyMS is the delay added each way to the relay; Pipelining whether the mail
	// servers could pipeline.
	RelayLatencyMS float64 `json:"relay_latency_ms"`
	Pipelining     bool    `json:"pipelining"`
	// Acks measures Submit POSTs over loopback, each answered after its durable commit.
	Acks *loadResult `json:"acks,omitempty"`
	// Replies measures e-mail replies to the receiver over SMTP, each answered after its commit.
	Replies *loadResult `json:"replies,omitempty"`
}

// benchCommand runs a real job through the real post office and mail servers into an
// in-process SMTP sink (or --relay) and measures it.
func benchCommand(e *cli) *cobra.Command {
	var o benchOptions
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "measure end-to-end sending against an in-process SMTP sink",
		Args:  nArgs(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), e.stdout)
		},
	}
	fs := cmd.Flags()
	fs.IntVar(&o.consumers, "consumers", 100_000, "synthetic consumers, all selected")
	fs.StringVar(&o.relay, "relay", "", "send to this SMTP relay instead of the in-process sink")
	fs.IntVar(&o.servers, "mail-servers", 1, "mail servers (one job runs on one)")
	fs.IntVar(&o.conns, "connections", 16, "connections per mail server")
	fs.BoolVar(&o.asJSON, "json", false, "print one JSON object")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary database and print where it is")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the sending phase to this file")
	fs.IntVar(&o.acks, "acks", 0, "then acknowledge this many invitations by Submit POSTs over HTTP")
	fs.IntVar(&o.ackConns, "ack-connections", 64, "concurrent HTTP connections for --acks")
	fs.IntVar(&o.replies, "replies", 0, "then reply by e-mail to this many invitations, over SMTP to the receiver")
	fs.IntVar(&o.replyConns, "reply-connections", 16, "concurrent SMTP connections for --replies")
	fs.StringVar(&o.dkimKind, "dkim", "", "sign every message with a new DKIM key of this kind: rsa or ed25519 (default: unsigned)")
	fs.DurationVar(&o.latency, "relay-latency", 0, "hold each direction's bytes to and from the relay this long, through an in-process proxy: a relay that far away")
	fs.BoolVar(&o.noPipelining, "no-pipelining", false, "send one SMTP command a round trip even where the relay offers PIPELINING")
	fs.Float64Var(&o.relayRate, "relay-rate", 0, "tell the route the relay's rate, messages a second (default: none)")
	fs.StringVar(&o.db, "db", "", "measure on this PostgreSQL server, postgres://user@host/database: bench makes a database of its own there and drops it after (default: a SQLite file in a temporary directory)")
	fs.IntVar(&o.sinkRate, "sink-rate", 0, "the in-process sink takes at most this many messages a second, answering 454 4.7.0 beyond (default: no limit)")
	return cmd
}

// benchOptions are bench's flags.
type benchOptions struct {
	consumers, servers, conns, acks, ackConns, replies, replyConns, sinkRate int
	relay, cpuProfile, dkimKind, db                                          string
	asJSON, keep, noPipelining                                               bool
	latency                                                                  time.Duration
	relayRate                                                                float64
}

func (o benchOptions) run(ctx context.Context, stdout io.Writer) error {
	if o.consumers < 1 {
		return errors.New("--consumers must be at least 1")
	}
	if o.latency < 0 {
		return errors.New("--relay-latency must not be negative")
	}
	if o.db != "" && !store.IsPostgresURL(o.db) {
		return errors.New("--db must be a PostgreSQL URL (postgres://…): on SQLite, bench makes its own file")
	}
	dir, err := os.MkdirTemp("", "pointpost-bench-")
	if err != nil {
		return err
	}
	if !o.keep {
		defer os.RemoveAll(dir)
	}
	db := filepath.Join(dir, "bench.db")
	if o.db != "" {
		var drop func() error
		if db, drop, err = benchDatabase(ctx, o.db); err != nil {
			return err
		}
		if !o.keep {
			defer func() {
				if err := drop(); err != nil {
					fmt.Fprintln(os.Stderr, "bench:", err)
				}
			}()
		}
	}
	sink, closeRelay, err := o.startRelay()
	if err != nil {
		return err
	}
	defer closeRelay()
	cfg := &Config{DB: db, HTTP: "127.0.0.1:0", Relay: o.relay, MailServers: o.servers,
		RelayNoPipelining: o.noPipelining, RelayRate: o.relayRate,
		Workers: o.conns, From: "Bench <bench@pointpost.localhost>", MaxRetries: 5, RetryBase: time.Second, LogLevel: "warn",
		SoftBounces: 3, DKIMKey: "off", DKIMKind: o.dkimKind, DKIMSelector: "bench"}
	if o.dkimKind != "" {
		cfg.DKIMKey = filepath.Join(dir, "dkim.pem")
	}
	log := cfg.logger(os.Stderr)
	a, err := open(ctx, cfg, log, true)
	if err != nil {
		return err
	}
	defer a.close()

	t := time.Now()
	if err := a.seedConsumers(ctx, o.consumers, 7); err != nil {
		return err
	}
	res := benchResult{Consumers: o.consumers, SeedSeconds: time.Since(t).Seconds(),
		RelayLatencyMS: float64(o.latency) / float64(time.Millisecond), Pipelining: !o.noPipelining}
	job, _, err := a.po.CreateJob(ctx, demoCampaign(a.po.Now().Add(-time.Second), o.consumers))
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

	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
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
		res.SinkMessages, res.SinkThrottled = sink.Count(), sink.Throttled()
	}
	if o.keep {
		fmt.Fprintln(os.Stderr, "database kept at", cfg.DB)
	}
	if o.acks > 0 {
		r, err := a.benchAcks(ctx, job.Key, o.acks, o.ackConns)
		if err != nil {
			return err
		}
		res.Acks = &r
	}
	if o.replies > 0 {
		r, err := a.benchReplies(ctx, job.Key, o.replies, o.replyConns)
		if err != nil {
			return err
		}
		res.Replies = &r
	}
	if o.asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	res.print(stdout)
	if counts.Sent != counts.Total || counts.Total == 0 {
		return fmt.Errorf("only %d of %d selected messages were sent (%+v)", counts.Sent, counts.Total, counts)
	}
	return nil
}

// print writes the result for a person to read.
func (res benchResult) print(stdout io.Writer) {
	pipelining := "pipelined where offered"
	if !res.Pipelining {
		pipelining = "one command a round trip"
	}
	fmt.Fprintf(stdout, "consumers      %d (seeded in %.1fs)\nselection      %.2fs\nrelay          %g ms added each way, %s\nmessages       %d sent in %.2fs\nrate           %.0f msg/s\ncpu            %.1fs\npeak rss       %.1f MB\n",
		res.Consumers, res.SeedSeconds, res.SelectionSeconds, res.RelayLatencyMS, pipelining, res.Messages, res.Seconds,
		res.MsgsPerSec, res.CPUSeconds, float64(res.PeakRSSBytes)/(1<<20))
	if res.SinkThrottled > 0 {
		fmt.Fprintf(stdout, "throttled      %d answers of 454 from the sink (%.1f%% of tries)\n", res.SinkThrottled,
			100*float64(res.SinkThrottled)/float64(res.SinkThrottled+res.SinkMessages))
	}
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
}

// startRelay starts the sink when no relay is given, and the delay proxy in front of the
// relay when a latency is; o.relay becomes the address to send to. closeRelay stops both.
func (o *benchOptions) startRelay() (sink *mailer.Sink, closeRelay func(), err error) {
	var closers []func()
	closeRelay = func() {
		for _, c := range slices.Backward(closers) {
			c()
		}
	}
	defer func() {
		if err != nil {
			closeRelay()
		}
	}()
	if o.relay == "" {
		sink = &mailer.Sink{Rate: o.sinkRate}
		if err := sink.Start("127.0.0.1:0"); err != nil {
			return nil, closeRelay, err
		}
		closers = append(closers, func() { sink.Close() })
		o.relay = sink.URL()
	}
	if o.latency > 0 {
		u, err := url.Parse(o.relay)
		if err != nil || u.Host == "" {
			return nil, closeRelay, fmt.Errorf("--relay %q: not a relay URL", mailer.RedactURL(o.relay))
		}
		proxy := &mailer.DelayProxy{Target: u.Host, Delay: o.latency}
		if err := proxy.Start("127.0.0.1:0"); err != nil {
			return nil, closeRelay, err
		}
		closers = append(closers, func() { proxy.Close() })
		u.Host = proxy.Addr()
		o.relay = u.String()
	}
	return sink, closeRelay, nil
}

// waitDone polls until the job is done.
// benchDatabase makes an empty database on the PostgreSQL server of serverURL, for one run,
// and returns its URL and the function that drops it.
func benchDatabase(ctx context.Context, serverURL string) (string, func() error, error) {
	u, err := url.Parse(serverURL)
	if err != nil {
		return "", nil, fmt.Errorf("--db: %w", err)
	}
	name := fmt.Sprintf("pointpost_bench_%d_%d", os.Getpid(), time.Now().UnixNano())
	admin := func(ctx context.Context, stmt string) error {
		conn, err := pgx.Connect(ctx, serverURL)
		if err != nil {
			return fmt.Errorf("--db: %w", err)
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, stmt)
		return err
	}
	if err := admin(ctx, "CREATE DATABASE "+name); err != nil {
		return "", nil, fmt.Errorf("bench: make a database on the server of --db: %w", err)
	}
	u.Path = "/" + name
	// Dropped also when bench was interrupted.
	return u.String(), func() error { return admin(context.WithoutCancel(ctx), "DROP DATABASE "+name+" WITH (FORCE)") }, nil
}

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
