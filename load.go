package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"pointpost/mailer"
)

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
