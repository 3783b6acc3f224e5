package mailer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"pointpost/postoffice"
	"pointpost/store"
)

// limitedRelay is a relay with a provider's limits nobody told us: at most rate messages
// in each second (454 4.7.0 beyond, at MAIL), at most conns connections (421 beyond, at
// EHLO). Zero is no limit.
type limitedRelay struct {
	sink        *Sink
	rate, conns int

	mu        sync.Mutex
	second    int64
	inSecond  int
	open      int
	peak      int
	throttled atomic.Int64
}

func (l *limitedRelay) NewSession(c *smtp.Conn) (smtp.Session, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conns > 0 && l.open >= l.conns {
		l.throttled.Add(1)
		return nil, &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many connections"}
	}
	l.open++
	l.peak = max(l.peak, l.open)
	s, err := l.sink.NewSession(c)
	return &limitedSession{Session: s, l: l}, err
}

type limitedSession struct {
	smtp.Session
	l *limitedRelay
}

func (s *limitedSession) Mail(from string, opts *smtp.MailOptions) error {
	l := s.l
	l.mu.Lock()
	if sec := time.Now().Unix(); sec != l.second {
		l.second, l.inSecond = sec, 0
	}
	l.inSecond++
	over := l.rate > 0 && l.inSecond > l.rate
	l.mu.Unlock()
	if over {
		l.throttled.Add(1)
		return &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Throttling failure: Maximum sending rate exceeded"}
	}
	return s.Session.Mail(from, opts)
}

func (s *limitedSession) Logout() error {
	s.l.mu.Lock()
	s.l.open--
	s.l.mu.Unlock()
	return s.Session.Logout()
}

func newRouter(t *testing.T, cfg RouterConfig) *Router {
	t.Helper()
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	r, err := NewRouter(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// sendAll sends n messages from workers goroutines through r, each again while the router
// says wait (a bounded number of times), and fails on any other error.
func sendAll(t *testing.T, r *Router, n, workers int) {
	t.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1)); i <= n; i = int(next.Add(1)) {
				env := envelope(fmt.Sprintf("c%d@example.com", i), i)
				var err error
				for try := 0; try < 10000; try++ {
					if err = r.Send(context.Background(), env); !errors.As(err, new(*WaitError)) {
						break
					}
				}
				if err != nil {
					t.Errorf("send %d: %v", i, err)
				}
			}
		})
	}
	wg.Wait()
}

func checkOnce(t *testing.T, sink *Sink, n int) {
	t.Helper()
	seen := map[string]int{}
	for _, m := range sink.Messages() {
		seen[m.To]++
	}
	for i := 1; i <= n; i++ {
		if to := fmt.Sprintf("c%d@example.com", i); seen[to] != 1 {
			t.Errorf("%s arrived %d times, want once", to, seen[to])
		}
	}
}

func TestRouterFindsARateNobodyTold(t *testing.T) {
	sink := &Sink{Keep: true}
	relay := &limitedRelay{sink: sink, rate: 40}
	l := serveSMTP(t, relay)
	r := newRouter(t, RouterConfig{Routes: []postoffice.Route{{Name: "ses", URL: l.url()}}})
	if st := r.Status()[0]; st.Rate != 0 {
		t.Fatalf("a route told no rate starts limited at %g msg/s", st.Rate)
	}
	const n = 120
	sendAll(t, r, n, 8)
	checkOnce(t, sink, n)
	st := r.Status()[0]
	if relay.throttled.Load() == 0 {
		t.Fatal("the relay never throttled: the test proves nothing")
	}
	if st.Throttled != relay.throttled.Load() {
		t.Errorf("route counted %d throttling answers, the relay gave %d", st.Throttled, relay.throttled.Load())
	}
	if st.Rate <= 0 || math.IsInf(st.Rate, 0) {
		t.Errorf("after throttling the route's rate is %g, want one found", st.Rate)
	}
	if st.Sent != n {
		t.Errorf("route counted %d sent, want %d", st.Sent, n)
	}
}

func TestRouterHoldsToAToldRate(t *testing.T) {
	// A route told the relay's rate never hears it throttle.
	sink := &Sink{Keep: true}
	relay := &limitedRelay{sink: sink, rate: 40}
	l := serveSMTP(t, relay)
	r := newRouter(t, RouterConfig{Routes: []postoffice.Route{{Name: "ses", URL: l.url(), Rate: 20}}})
	const n = 30
	sendAll(t, r, n, 8)
	checkOnce(t, sink, n)
	if got := relay.throttled.Load(); got != 0 {
		t.Errorf("at a told 20 msg/s a 40 msg/s relay throttled %d times", got)
	}
}

func TestRouterCutsConnectionsOn421(t *testing.T) {
	sink := &Sink{Keep: true}
	relay := &limitedRelay{sink: sink, conns: 2}
	l := serveSMTP(t, relay)
	r := newRouter(t, RouterConfig{Routes: []postoffice.Route{{Name: "smarthost", URL: l.url()}}})
	const n = 60
	sendAll(t, r, n, 6)
	checkOnce(t, sink, n)
	if relay.throttled.Load() == 0 {
		t.Fatal("the relay never refused a connection: the test proves nothing")
	}
	st := r.Status()[0]
	if st.Connections <= 0 || st.Connections >= 6 {
		t.Errorf("after 421s the route allows %d connections, want a cap below the 6 senders", st.Connections)
	}
	if st.Throttled != relay.throttled.Load() {
		t.Errorf("route counted %d throttling answers, the relay gave %d", st.Throttled, relay.throttled.Load())
	}
}

func TestRouterFailsOverAndWaits(t *testing.T) {
	first, second := &Sink{Keep: true}, &Sink{Keep: true}
	for _, s := range []*Sink{first, second} {
		if err := s.Start("127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
	}
	r := newRouter(t, RouterConfig{Routes: []postoffice.Route{
		{Name: "backup", URL: second.URL(), Priority: 2},
		{Name: "main", URL: first.URL(), Priority: 1},
	}})
	send := func(i int) (string, error) {
		env := envelope(fmt.Sprintf("c%d@example.com", i), i)
		err := r.Send(context.Background(), env)
		return env.Route, err
	}
	for i := range 3 {
		if route, err := send(i); err != nil || route != "main" {
			t.Fatalf("send %d went by %q (%v), want main, the first by priority", i, route, err)
		}
	}
	first.Close() // its relay goes down mid-job
	for i := 3; i < 6; i++ {
		if route, err := send(i); err != nil || route != "backup" {
			t.Fatalf("send %d with main down went by %q (%v), want backup", i, route, err)
		}
	}
	if st := r.Status(); !st[0].Down || st[1].Down {
		t.Errorf("status %+v, want main down and backup up", st)
	}
	second.Close()
	_, err := send(6)
	var wait *WaitError
	if !errors.As(err, &wait) || !strings.Contains(wait.Reason, "relay down") || !wait.Until.After(time.Now()) {
		t.Errorf("send with both relays down = %v, want to wait for a relay", err)
	}
	if first.Count() != 3 || second.Count() != 3 {
		t.Errorf("main took %d and backup %d, want 3 each", first.Count(), second.Count())
	}
}

func TestRouterQuotas(t *testing.T) {
	sink := &Sink{Keep: true}
	if err := sink.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	now := time.Date(2026, 3, 1, 14, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	r := newRouter(t, RouterConfig{Now: clock, Routes: []postoffice.Route{
		{Name: "ses", URL: sink.URL(), Quotas: []postoffice.Quota{{Limit: 100, Window: 24 * time.Hour}, {Limit: 3, Window: time.Hour}}},
		{Name: "spare", URL: sink.URL(), Priority: 1},
	}})
	var routes []string
	for i := range 5 {
		env := envelope(fmt.Sprintf("c%d@example.com", i), i)
		if err := r.Send(context.Background(), env); err != nil {
			t.Fatal(err)
		}
		routes = append(routes, env.Route)
	}
	if got := strings.Join(routes, " "); got != "ses ses ses spare spare" {
		t.Errorf("routes taken %q, want ses three times (its hourly quota), then spare", got)
	}

	alone := newRouter(t, RouterConfig{Now: clock, Routes: []postoffice.Route{
		{Name: "ses", URL: sink.URL(), Quotas: []postoffice.Quota{{Limit: 3, Window: time.Hour}}}}})
	for i := range 3 {
		if err := alone.Send(context.Background(), envelope("a@example.com", i)); err != nil {
			t.Fatal(err)
		}
	}
	err := alone.Send(context.Background(), envelope("a@example.com", 4))
	var wait *WaitError
	if !errors.As(err, &wait) || wait.Reason != "route ses over its 1h0m0s quota of 3" ||
		wait.Until.Before(now.Add(59*time.Minute)) || wait.Until.After(now.Add(time.Hour)) {
		t.Fatalf("fourth send in the hour = %v, want to wait about an hour for the quota", err)
	}
	if sink.Count() != 8 {
		t.Errorf("the relay took %d messages, want 8: nothing over a quota", sink.Count())
	}
	now = now.Add(time.Hour)
	if err := alone.Send(context.Background(), envelope("a@example.com", 5)); err != nil {
		t.Errorf("send once the window moved on: %v", err)
	}
}

func TestRouterQuotaSurvivesRestart(t *testing.T) {
	sink := &Sink{Keep: true}
	if err := sink.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	dir := t.TempDir()
	db := filepath.Join(dir, "q.db")
	st, err := store.Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	clock := func() time.Time { return now }
	routes := []postoffice.Route{{Name: "ses", URL: sink.URL(), Quotas: []postoffice.Quota{{Limit: 3, Window: time.Hour}}}}
	r := newRouter(t, RouterConfig{Store: st, Now: clock, Routes: routes})
	var outcomes []postoffice.Outcome
	for i := range 3 {
		env := envelope("a@example.com", i)
		if err := r.Send(context.Background(), env); err != nil {
			t.Fatal(err)
		}
		// As the mail server records it: the outcome names the route.
		outcomes = append(outcomes, postoffice.Outcome{DeliveryID: int64(1000 + i), Kind: postoffice.OutcomeSent, At: now, Route: env.Route})
	}
	if err := st.RecordOutcomes(context.Background(), outcomes); err != nil {
		t.Fatal(err)
	}
	r.Close()
	st.Close()

	st, err = store.Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now = now.Add(10 * time.Minute)
	again := newRouter(t, RouterConfig{Store: st, Now: clock, Routes: routes})
	err = again.Send(context.Background(), envelope("b@example.com", 9))
	var wait *WaitError
	if !errors.As(err, &wait) || !strings.Contains(wait.Reason, "quota") {
		t.Errorf("after a restart the spent quota sent again: %v", err)
	}
	if sink.Count() != 3 {
		t.Errorf("the relay took %d messages, want 3", sink.Count())
	}
	later := newRouter(t, RouterConfig{Store: st, Now: func() time.Time { return now.Add(time.Hour) }, Routes: routes})
	if err := later.Send(context.Background(), envelope("c@example.com", 10)); err != nil {
		t.Errorf("an hour on, the window is free again: %v", err)
	}
}

func TestMailServerWaitsForRouteUncharged(t *testing.T) {
	t.Parallel()
	h := newHarness(t, setup{consumers: 6, sender: func(h *harness, url string) Sender {
		return newRouter(t, RouterConfig{Store: h.st, Routes: []postoffice.Route{
			{Name: "ses", URL: url, Quotas: []postoffice.Quota{{Limit: 4, Window: time.Hour}}}}})
	}})
	waitFor(t, 10*time.Second, "four sent, then the server waiting", func() bool {
		st := h.server(1).Status()
		return h.counts().Sent == 4 && st.State == "waiting"
	})
	st := h.server(1).Status()
	if !strings.Contains(st.Note, "route ses over its 1h0m0s quota of 4 until") {
		t.Errorf("waiting server's note %q does not say why and until when", st.Note)
	}
	c := h.counts()
	if c.Sent != 4 || c.Pending != 2 || c.Retrying != 0 || c.Failed != 0 {
		t.Errorf("job counts %+v, want 4 sent and 2 pending, uncharged", c)
	}
	if h.sink.Count() != 4 {
		t.Errorf("the relay took %d messages, want 4", h.sink.Count())
	}
	sends, err := h.st.RouteSends(context.Background(), "ses", time.Now().Add(-time.Hour))
	total := 0
	for _, n := range sends {
		total += n
	}
	if err != nil || total != 4 {
		t.Errorf("the store counted %d sends by ses (%v), want 4", total, err)
	}
}

func TestThrottling(t *testing.T) {
	se := func(code int, e smtp.EnhancedCode, msg string) error {
		return &smtp.SMTPError{Code: code, EnhancedCode: e, Message: msg}
	}
	none := smtp.EnhancedCode{}
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{se(421, none, "Too many connections"), true},
		{&relayError{se(421, smtp.EnhancedCode{4, 7, 0}, "try later")}, true},
		{se(454, smtp.EnhancedCode{4, 7, 0}, "Throttling failure"), true},
		{se(451, none, "Rate limit exceeded"), true},
		{se(451, none, "too many messages"), true},
		{se(451, smtp.EnhancedCode{4, 3, 0}, "local error"), false},
		{se(450, smtp.EnhancedCode{4, 7, 1}, "greylisted"), false},
		{se(550, smtp.EnhancedCode{5, 7, 1}, "rate limited forever"), false},
		{errors.New("connection reset"), false},
		{nil, false},
	} {
		if got := Throttling(tc.err); got != tc.want {
			t.Errorf("Throttling(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestRouterMetricsShowNoSecret(t *testing.T) {
	r := newRouter(t, RouterConfig{Routes: []postoffice.Route{{Name: "ses", URL: "smtps://user:hunter2@relay.example",
		Rate: 14, Connections: 3, Quotas: []postoffice.Quota{{Limit: 50000, Window: 24 * time.Hour}}}}})
	var b strings.Builder
	r.WriteMetrics(&b)
	text := b.String()
	for _, want := range []string{`pointpost_route_rate{route="ses"} 14`, `pointpost_route_connections{route="ses"} 3`,
		`pointpost_route_throttled_total{route="ses"} 0`, `pointpost_route_quota_used{route="ses",window="24h0m0s",limit="50000"} 0`} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "hunter2") || strings.Contains(text, "relay.example") {
		t.Errorf("metrics show the relay URL:\n%s", text)
	}
}

func TestRouterKeepsAPinnedMessageToItsRoute(t *testing.T) {
	first, second := &Sink{Keep: true}, &Sink{Keep: true}
	for _, s := range []*Sink{first, second} {
		if err := s.Start("127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
	}
	r := newRouter(t, RouterConfig{Routes: []postoffice.Route{
		{Name: "main", URL: first.URL(), Quotas: []postoffice.Quota{{Limit: 1, Window: time.Hour}}},
		{Name: "dedicated", URL: second.URL(), Priority: 1},
	}})
	env := envelope("a@example.com", 1)
	env.Pin = "dedicated"
	if err := r.Send(context.Background(), env); err != nil || env.Route != "dedicated" {
		t.Errorf("pinned to dedicated, the message went by %q (%v)", env.Route, err)
	}
	env.Pin = "main"
	for i, want := range []bool{true, false} {
		err := r.Send(context.Background(), env)
		if sent := err == nil; sent != want {
			t.Errorf("pinned send %d to main (quota 1/h): %v, want sent %v", i, err, want)
		}
	}
	env.Pin = "gone"
	var wait *WaitError
	if err := r.Send(context.Background(), env); !errors.As(err, &wait) || !strings.Contains(wait.Reason, "gone") {
		t.Errorf("pinned to a missing route: %v, want to wait naming it", err)
	}
	if first.Count() != 1 || second.Count() != 1 {
		t.Errorf("main took %d, dedicated %d; want 1 each", first.Count(), second.Count())
	}
}

func TestRouterLogsNoPassword(t *testing.T) {
	var logs logBuffer
	l := serveSMTP(t, &limitedRelay{sink: &Sink{}, rate: 1})
	addr := l.Addr().String()
	r := newRouter(t, RouterConfig{Logger: slog.New(slog.NewTextHandler(&logs, nil)), Routes: []postoffice.Route{
		{Name: "ses", URL: "smtp://key:hunter2@" + addr}}})
	for i := range 4 { // the relay takes one a second: throttling answers get logged
		err := r.Send(context.Background(), envelope("a@example.com", i))
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("send error %q shows the password", err)
		}
	}
	l.Close()
	r.Send(context.Background(), envelope("a@example.com", 9))
	var metrics strings.Builder
	r.WriteMetrics(&metrics)
	if strings.Contains(logs.String(), "hunter2") || strings.Contains(metrics.String(), "hunter2") {
		t.Errorf("the password shows in logs or metrics:\n%s\n%s", logs.String(), metrics.String())
	}
	if !strings.Contains(logs.String(), "route=ses") {
		t.Errorf("nothing was logged, so the test proves nothing:\n%s", logs.String())
	}
	for _, st := range r.Status() {
		if strings.Contains(st.URL, "hunter2") {
			t.Errorf("status URL %q shows the password", st.URL)
		}
	}
}

func TestRouterReloadsRoutes(t *testing.T) {
	first, second := &Sink{Keep: true}, &Sink{Keep: true}
	for _, s := range []*Sink{first, second} {
		if err := s.Start("127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
	}
	now := time.Date(2026, 3, 1, 14, 0, 0, 0, time.UTC)
	r := newRouter(t, RouterConfig{Now: func() time.Time { return now }, Routes: []postoffice.Route{
		{Name: "main", URL: first.URL(), Quotas: []postoffice.Quota{{Limit: 5, Window: time.Hour}}}}})
	send := func(i int) (string, error) {
		env := envelope(fmt.Sprintf("c%d@example.com", i), i)
		err := r.Send(context.Background(), env)
		return env.Route, err
	}
	for i := range 2 {
		if route, err := send(i); err != nil || route != "main" {
			t.Fatalf("send %d went by %q (%v), want main", i, route, err)
		}
	}
	// A lower quota on the kept route counts what it already sent; a new route takes the rest.
	err := r.Reload(context.Background(), []postoffice.Route{
		{Name: "main", URL: first.URL(), Rate: 50, Quotas: []postoffice.Quota{{Limit: 3, Window: time.Hour}}},
		{Name: "added", URL: second.URL(), Priority: 1}})
	if err != nil {
		t.Fatal(err)
	}
	var routes []string
	for i := 2; i < 5; i++ {
		route, err := send(i)
		if err != nil {
			t.Fatal(err)
		}
		routes = append(routes, route)
	}
	if got := strings.Join(routes, " "); got != "main added added" {
		t.Errorf("routes after the reload %q, want main once more (3 an hour, 2 sent), then added", got)
	}
	st := r.Status()
	if len(st) != 2 || st[0].Name != "main" || st[0].Rate != 50 || st[0].Quotas[0].Used != 3 || st[0].Quotas[0].Limit != 3 {
		t.Errorf("status after the reload %+v, want main at 50/s with 3 of 3 used, then added", st)
	}

	// A bad route changes nothing.
	err = r.Reload(context.Background(), []postoffice.Route{{Name: "main", URL: "http://relay.example"}})
	var re *postoffice.RouteError
	if !errors.As(err, &re) || re.Field != "url" {
		t.Fatalf("reload with a bad URL = %v, want a RouteError naming url", err)
	}
	if len(r.Status()) != 2 {
		t.Errorf("a refused reload changed the routes: %+v", r.Status())
	}

	// A removed route takes nothing more.
	if err := r.Reload(context.Background(), []postoffice.Route{{Name: "added", URL: second.URL()}}); err != nil {
		t.Fatal(err)
	}
	if route, err := send(5); err != nil || route != "added" {
		t.Errorf("send after main was removed went by %q (%v), want added", route, err)
	}
	if first.Count() != 3 || second.Count() != 3 {
		t.Errorf("main took %d and added %d, want 3 each", first.Count(), second.Count())
	}
}

func TestRouterWarmup(t *testing.T) {
	sink := &Sink{Keep: true}
	if err := sink.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	start := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	now := start.Add(time.Hour)
	w := &postoffice.Warmup{First: 2, Factor: 2, EveryDays: 1, Max: 3, Start: start}
	r := newRouter(t, RouterConfig{Now: func() time.Time { return now }, Routes: []postoffice.Route{
		{Name: "fresh", URL: sink.URL(), Warmup: w, Quotas: []postoffice.Quota{{Limit: 100, Window: 24 * time.Hour}}}}})
	send := func(i int) error { return r.Send(context.Background(), envelope(fmt.Sprintf("c%d@example.com", i), i)) }
	for i := range 2 {
		if err := send(i); err != nil {
			t.Fatal(err)
		}
	}
	err := send(2)
	var wait *WaitError
	if !errors.As(err, &wait) || !strings.Contains(wait.Reason, "warming up, at today's cap of 2") {
		t.Fatalf("third send on day 0 = %v, want to wait for the warm-up", err)
	}
	st := r.Status()[0]
	if st.Warmup == nil || st.Warmup.Limit != 2 || st.Warmup.Used != 2 || len(st.Quotas) != 1 || st.Quotas[0].Used != 2 {
		t.Errorf("status %+v, want the warm-up's 2 of 2 apart from the 24h quota's 2 of 100", st)
	}
	// A day later the cap has doubled, up to its max of 3, and the window has moved on.
	now = now.Add(24 * time.Hour)
	for i := 3; i < 6; i++ {
		if err := send(i); err != nil {
			t.Fatalf("send %d on day 1: %v", i, err)
		}
	}
	if err := send(6); !errors.As(err, &wait) {
		t.Errorf("fourth send on day 1 = %v, want to wait at the max of 3", err)
	}
	if sink.Count() != 5 {
		t.Errorf("the relay took %d, want 2 then 3", sink.Count())
	}
}
