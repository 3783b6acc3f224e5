package mailer

import (
	"context"
	"fmt"
	"io"
	"sync"

	"pointpost/postoffice"
)

// Pool is the mail servers of this process.
type Pool struct {
	servers []*MailServer
}

// NewPool makes a mail server of each of ids (the process's rows,
// store.RegisterProcessMailServers) from base, which gives everything but the ID.
func NewPool(ids []int, base Config) *Pool {
	p := &Pool{}
	for _, id := range ids {
		cfg := base
		cfg.ID = id
		p.servers = append(p.servers, New(cfg))
	}
	return p
}

// Servers returns the mail servers.
func (p *Pool) Servers() []*MailServer { return p.servers }

// Statuses returns what each mail server reports now.
func (p *Pool) Statuses() []postoffice.MailServerStatus {
	out := make([]postoffice.MailServerStatus, len(p.servers))
	for i, m := range p.servers {
		out[i] = m.Status()
	}
	return out
}

// Run runs every mail server until ctx ends, and returns when all have stopped.
func (p *Pool) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, m := range p.servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.Run(ctx)
		}()
	}
	wg.Wait()
	return nil
}

// WriteMetrics writes the servers' counters in the Prometheus text format.
func (p *Pool) WriteMetrics(w io.Writer) {
	type metric struct {
		name, help, kind string
		value            func(*MailServer) float64
	}
	metrics := []metric{
		{"pointpost_messages_sent_total", "Messages accepted by the relay.", "counter",
			func(m *MailServer) float64 { return float64(m.sent.Load()) }},
		{"pointpost_messages_retried_total", "Sends that failed temporarily and will be retried.", "counter",
			func(m *MailServer) float64 { return float64(m.retried.Load()) }},
		{"pointpost_messages_rejected_total", "Messages the relay refused permanently (5xx).", "counter",
			func(m *MailServer) float64 { return float64(m.rejected.Load()) }},
		{"pointpost_messages_failed_total", "Deliveries given up after their retries, or not sendable.", "counter",
			func(m *MailServer) float64 { return float64(m.failed.Load()) }},
		{"pointpost_queue_depth", "Deliveries of the server's jobs still to send.", "gauge",
			func(m *MailServer) float64 { return float64(m.queue.Load()) }},
		{"pointpost_send_rate", "Measured messages per second.", "gauge",
			func(m *MailServer) float64 { return m.Status().Rate }},
	}
	for _, mt := range metrics {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", mt.name, mt.help, mt.name, mt.kind)
		for _, m := range p.servers {
			fmt.Fprintf(w, "%s{mail_server=\"%d\"} %g\n", mt.name, m.cfg.ID, mt.value(m))
		}
	}
}
