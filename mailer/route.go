package mailer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
	"golang.org/x/time/rate"

	"pointpost/postoffice"
)

// RouteStore is what the routes read from the database: what each route sent when, so a
// quota's window survives a restart. The sends are recorded with the deliveries' outcomes
// (postoffice.Outcome.Route).
type RouteStore interface {
	// RouteSends returns a route's sends since a time, counted by the second (unix time).
	RouteSends(ctx context.Context, route string, since time.Time) (map[int64]int, error)
}

// WaitError says no route has room for a message now: the delivery waits, uncharged, and
// the job with it, until Until, or until the routes change (Changed is closed then): a
// route added or given a larger quota may have room at once.
type WaitError struct {
	Reason  string
	Until   time.Time
	Changed <-chan struct{}
}

func (e *WaitError) Error() string {
	return fmt.Sprintf("waiting: %s until %s", e.Reason, e.Until.Format("15:04:05"))
}

// Throttling reports whether err is a relay asking us to slow down rather than refusing the
// message: 421 (at connect or after a command), or 451/454 with a 4.7.x status or with
// "throttl", "rate" or "too many" in the text.
func Throttling(err error) bool {
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code {
	case 421:
		return true
	case 451, 454:
		if se.EnhancedCode[0] == 4 && se.EnhancedCode[1] == 7 {
			return true
		}
		text := strings.ToLower(se.Message)
		return strings.Contains(text, "throttl") || strings.Contains(text, "rate") || strings.Contains(text, "too many")
	}
	return false
}

// RouterConfig configures a Router.
type RouterConfig struct {
	Routes []postoffice.Route
	// Store gives each quota's sends before this start; nil starts every window empty.
	Store RouteStore
	// HelloName, Timeout, TLS and NoPipelining are as in RelayConfig, for every route.
	HelloName    string
	Timeout      time.Duration
	TLS          *tls.Config
	NoPipelining bool
	// Outbox takes the messages of routes whose URL is postoffice.OutboxURL; its owner
	// closes it.
	Outbox Sender
	Logger *slog.Logger
	Now    func() time.Time
}

// Router is a Sender that sends each message by the first route, by priority, with room: its
// relay up, its quotas not spent, not being throttled. One Router serves every mail server,
// so a route's rate, connections and quotas hold across all of them. When no route has room
// Send returns a *WaitError; a throttling answer slows the route (its rate and connections
// cut by a factor, then raised a step a second) and the message goes by the next route or
// waits, uncharged.
type Router struct {
	cfg       RouterConfig
	reloading sync.Mutex // one Reload at a time
	mu        sync.RWMutex
	routes    []*route
	changed   chan struct{} // closed and replaced by each Reload
	log       *slog.Logger
	now       func() time.Time
}

// Throttling feedback: a cut multiplies the rate and the connections by cutFactor (at most
// once per cutEvery, since the answers to messages already in flight arrive together); a
// route answers nothing new for coolFor after a cut; a second without a throttling answer
// raises the rate by a 50th of its ceiling and the connections by one.
const (
	cutFactor = 0.8
	cutEvery  = time.Second
	coolFor   = time.Second
	raiseStep = 50
)

// route is a route at work.
type route struct {
	postoffice.Route
	// sender is the route's relay; outbox, instead, the embedded outbox.
	sender  *SMTPSender
	outbox  Sender
	limiter *rate.Limiter

	mu        sync.Mutex
	conns     int // the cap now: Connections, or lower after throttling; 0 for none
	inUse     int
	freed     chan struct{} // closed when a connection is given back while some wait
	quotas    []*window
	recent    *window // the last second's sends, for the rate found when none was told
	downFor   time.Duration
	downUntil time.Time
	coolUntil time.Time
	lastCut   time.Time
	lastRaise time.Time
	ceiling   float64 // the rate the relay throttled at, when none was told

	sent, throttled atomic.Int64
}

// NewRouter checks the routes and opens no connection yet. Returns a *RouteError for a bad
// setting, or the store's error reading the quotas' windows.
func NewRouter(ctx context.Context, cfg RouterConfig) (*Router, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	r := &Router{log: cfg.Logger, now: cfg.Now, cfg: cfg, changed: make(chan struct{})}
	if err := r.Reload(ctx, cfg.Routes); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload puts routes to work in place of the Router's, without a restart: a route kept by
// name and relay URL keeps its connections, its throttling and its quotas' counts, and
// takes the new settings; the others start afresh (their quotas' windows read from the
// store). Messages on the wire finish by the route they took. Returns a *RouteError for a
// bad setting, or the store's error, and then changes nothing.
func (r *Router) Reload(ctx context.Context, routes []postoffice.Route) error {
	for _, rt := range routes {
		if err := postoffice.ValidateRoute(rt); err != nil {
			return err
		}
	}
	r.reloading.Lock()
	defer r.reloading.Unlock()
	now := r.now()
	old := map[string]*route{}
	for _, ro := range r.working() {
		old[ro.Name] = ro
	}
	var next []*route
	var updates []func()
	for _, rt := range routes {
		if ro := old[rt.Name]; ro != nil && ro.URL == rt.URL {
			windows, err := r.windows(ctx, rt, now)
			if err != nil {
				return err
			}
			next = append(next, ro)
			updates = append(updates, func() { ro.update(rt, windows, now) })
			continue
		}
		ro, err := r.newRoute(ctx, rt, now)
		if err != nil {
			return err
		}
		next = append(next, ro)
	}
	for _, u := range updates {
		u()
	}
	slices.SortStableFunc(next, func(a, b *route) int { return a.Priority - b.Priority })
	kept := map[*route]bool{}
	for _, ro := range next {
		kept[ro] = true
	}
	for _, ro := range old {
		if !kept[ro] {
			ro.close()
		}
	}
	r.mu.Lock()
	r.routes = next
	changed := r.changed
	r.changed = make(chan struct{})
	r.mu.Unlock()
	close(changed)
	return nil
}

// working returns the routes at work now, and a channel closed when they change.
func (r *Router) working() []*route {
	routes, _ := r.workingSince()
	return routes
}

func (r *Router) workingSince() ([]*route, <-chan struct{}) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.routes, r.changed
}

func (r *Router) newRoute(ctx context.Context, rt postoffice.Route, now time.Time) (*route, error) {
	var s *SMTPSender
	if rt.URL == postoffice.OutboxURL {
		if r.cfg.Outbox == nil {
			return nil, &postoffice.RouteError{Route: rt.Name, Field: "url", Problem: "this process has no outbox"}
		}
	} else {
		var err error
		if s, err = NewSMTPSender(RelayConfig{URL: rt.URL, HelloName: r.cfg.HelloName, Timeout: r.cfg.Timeout,
			TLS: r.cfg.TLS, NoPipelining: r.cfg.NoPipelining}); err != nil {
			return nil, err
		}
	}
	windows, err := r.windows(ctx, rt, now)
	if err != nil {
		return nil, err
	}
	limit := rate.Inf
	if rt.Rate > 0 {
		limit = rate.Limit(rt.Rate)
	}
	ro := &route{Route: rt, sender: s, limiter: rate.NewLimiter(limit, 1), conns: rt.Connections,
		recent: newWindow(time.Second, 10), lastRaise: now, quotas: windows}
	ro.limiter.SetBurstAt(now, 1)
	if s == nil {
		ro.outbox = r.cfg.Outbox
	}
	return ro, nil
}

// limits are the route's quotas at now, its warm-up's cap today last: a quota over 24 hours.
func limits(rt postoffice.Route, now time.Time) []postoffice.Quota {
	if rt.Warmup == nil {
		return rt.Quotas
	}
	return append(slices.Clip(rt.Quotas), postoffice.Quota{Limit: rt.Warmup.Cap(now), Window: 24 * time.Hour})
}

// windows returns a window for each of rt's limits, holding what the route sent in it.
func (r *Router) windows(ctx context.Context, rt postoffice.Route, now time.Time) ([]*window, error) {
	var out []*window
	lims := limits(rt, now)
	for _, q := range lims {
		out = append(out, newWindow(q.Window, 60))
	}
	if r.cfg.Store == nil || len(lims) == 0 {
		return out, nil
	}
	longest := slices.MaxFunc(lims, func(a, b postoffice.Quota) int { return int(a.Window - b.Window) }).Window
	sends, err := r.cfg.Store.RouteSends(ctx, rt.Name, now.Add(-longest))
	if err != nil {
		return nil, fmt.Errorf("route %q: reading its sends: %w", rt.Name, err)
	}
	for sec, n := range sends {
		for _, w := range out {
			w.add(time.Unix(sec, 0), n, now)
		}
	}
	return out, nil
}

// update gives a route at work new settings. A quota over a span it had keeps its count,
// which includes messages not yet recorded in the store; a new span's count is windows',
// read from the store.
func (ro *route) update(rt postoffice.Route, windows []*window, now time.Time) {
	ro.mu.Lock()
	defer ro.mu.Unlock()
	old := slices.Clone(limits(ro.Route, now))
	for i, q := range limits(rt, now) {
		// A window of the same span keeps its count, limit changed or not; each goes once.
		if j := slices.IndexFunc(old, func(o postoffice.Quota) bool { return o.Window == q.Window }); j >= 0 {
			windows[i] = ro.quotas[j]
			old[j].Window = -1
		}
	}
	ro.quotas = windows
	if rt.Rate != ro.Rate {
		limit := rate.Inf
		if rt.Rate > 0 {
			limit = rate.Limit(rt.Rate)
		}
		ro.limiter.SetLimitAt(now, limit)
	}
	if rt.Connections != ro.Connections {
		ro.conns = rt.Connections
	}
	ro.Route = rt
}

// Send sends env by the first route with room, and sets env.Route to it when the relay took
// the message. Returns nil, the relay's refusal, a connection's failure, or a *WaitError
// when no route has room (then the message was not sent).
func (r *Router) Send(ctx context.Context, env *Envelope) error {
	env.Route = ""
	throttled := ""
	for attempt := 0; attempt < 3*len(r.working())+1; attempt++ {
		ro, wait := r.pick(env.Pin)
		if ro == nil {
			return wait
		}
		if err := ro.acquire(ctx); err != nil {
			ro.unreserve(r.now())
			return err
		}
		if err := ro.limiter.Wait(ctx); err != nil {
			ro.release()
			ro.unreserve(r.now())
			return err
		}
		err := ro.send(ctx, env)
		ro.release()
		now := r.now()
		switch {
		case err == nil:
			ro.succeeded(now)
			env.Route = ro.Name
			return nil
		case ctx.Err() != nil:
			ro.unreserve(now)
			return err
		case Throttling(err):
			ro.unreserve(now)
			throttled = ro.Name
			if ro.throttle(now, connectionLimit(err)) {
				r.log.Warn("route throttled; slowing it", "route", ro.Name, "reply", err,
					"rate", ro.rateNow(), "connections", ro.connsNow())
			}
		case Classify(err) == VerdictRelayDown:
			ro.unreserve(now)
			ro.down(now)
			r.log.Warn("route's relay unreachable", "route", ro.Name, "err", err)
		default:
			// The relay answered about this message: it is the message's outcome.
			ro.succeeded(now)
			return err
		}
	}
	// Every try was turned away: the message waits for the routes to cool.
	reason := "route " + throttled + " throttling"
	if throttled == "" {
		reason = "no route's relay reachable"
	}
	return &WaitError{Reason: reason, Until: r.now().Add(coolFor)}
}

// pick reserves a message on the first route with room (pin's alone, if set), preferring one not cooling after a
// throttling answer. With none, it says why and until when the first will have room.
func (r *Router) pick(pin string) (*route, *WaitError) {
	now := r.now()
	routes, changed := r.workingSince()
	var wait *WaitError
	for _, cooling := range []bool{false, true} {
		for _, ro := range routes {
			if pin != "" && ro.Name != pin {
				continue
			}
			reason, until := ro.reserve(now, cooling)
			switch {
			case reason == "":
				return ro, nil
			case until.IsZero(): // cooling: tried in the second round
			case wait == nil || until.Before(wait.Until):
				wait = &WaitError{Reason: "route " + ro.Name + " " + reason, Until: until, Changed: changed}
			}
		}
	}
	if wait == nil {
		wait = &WaitError{Reason: "no route", Until: now.Add(time.Minute), Changed: changed}
		if pin != "" {
			wait.Reason = "no route " + pin + " (the job is pinned to it)"
		}
	}
	return nil, wait
}

// reserve counts a message against the route's quotas if it has room at now, and says why
// not and until when otherwise; a route cooling after a throttling answer has room only if
// cooling is allowed (until is then zero).
func (ro *route) reserve(now time.Time, cooling bool) (string, time.Time) {
	ro.mu.Lock()
	defer ro.mu.Unlock()
	if now.Before(ro.downUntil) {
		return "relay down", ro.downUntil
	}
	lims := limits(ro.Route, now)
	for i, w := range ro.quotas {
		q := lims[i]
		if w.sum(now) >= q.Limit {
			if i == len(ro.Quotas) {
				return fmt.Sprintf("warming up, at today's cap of %d", q.Limit), w.roomAt(now, q.Limit)
			}
			return fmt.Sprintf("over its %s quota of %d", q.Window, q.Limit), w.roomAt(now, q.Limit)
		}
	}
	if !cooling && now.Before(ro.coolUntil) {
		return "throttled", time.Time{}
	}
	for _, w := range ro.quotas {
		w.add(now, 1, now)
	}
	return "", time.Time{}
}

func (ro *route) unreserve(now time.Time) {
	ro.mu.Lock()
	for _, w := range ro.quotas {
		w.add(now, -1, now)
	}
	ro.mu.Unlock()
}

// acquire waits for one of the route's connections.
func (ro *route) acquire(ctx context.Context) error {
	for {
		ro.mu.Lock()
		if ro.conns == 0 || ro.inUse < ro.conns {
			ro.inUse++
			ro.mu.Unlock()
			return nil
		}
		if ro.freed == nil {
			ro.freed = make(chan struct{})
		}
		freed := ro.freed
		ro.mu.Unlock()
		select {
		case <-freed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (ro *route) release() {
	ro.mu.Lock()
	ro.inUse--
	if ro.freed != nil {
		close(ro.freed)
		ro.freed = nil
	}
	ro.mu.Unlock()
}

// succeeded notes a message the relay answered, and raises a throttled route's rate and
// connections a step once a second.
func (ro *route) succeeded(now time.Time) {
	ro.sent.Add(1)
	ro.mu.Lock()
	defer ro.mu.Unlock()
	ro.downFor = 0
	ro.recent.add(now, 1, now)
	if now.Sub(ro.lastRaise) < time.Second || now.Sub(ro.lastCut) < time.Second {
		return
	}
	ro.lastRaise = now
	if limit := ro.limiter.Limit(); limit != rate.Inf {
		ceiling := ro.Rate
		if ceiling == 0 {
			ceiling = ro.ceiling
		}
		next := float64(limit) + max(ceiling/raiseStep, 1)
		if ro.Rate > 0 {
			next = min(next, ro.Rate)
		}
		ro.limiter.SetLimitAt(now, rate.Limit(next))
	}
	if ro.conns > 0 && (ro.Connections == 0 || ro.conns < ro.Connections) {
		ro.conns++
	}
	ro.setMaxIdle()
}

// connectionLimit reports whether a throttling answer is about connections (421: too many
// of them, or the relay closing ours) rather than the rate of messages.
func connectionLimit(err error) bool {
	var se *smtp.SMTPError
	return errors.As(err, &se) && se.Code == 421
}

// throttle counts a throttling answer and, at most once per cutEvery, cuts the route's
// connections and, unless the answer was about connections alone, its rate. It reports
// whether it cut.
func (ro *route) throttle(now time.Time, connectionsOnly bool) bool {
	ro.throttled.Add(1)
	ro.mu.Lock()
	defer ro.mu.Unlock()
	ro.coolUntil = now.Add(coolFor)
	if now.Sub(ro.lastCut) < cutEvery {
		return false
	}
	ro.lastCut = now
	conns := ro.conns
	if conns == 0 {
		conns = max(ro.inUse, 1)
	}
	ro.conns = max(int(float64(conns)*cutFactor), 1)
	ro.setMaxIdle()
	if connectionsOnly {
		return true
	}
	limit := float64(ro.limiter.Limit())
	if ro.limiter.Limit() == rate.Inf {
		// No rate told and none found yet: start from what was being sent.
		limit = float64(max(ro.recent.sum(now), 1))
		ro.ceiling = limit
	} else if ro.Rate == 0 {
		ro.ceiling = limit
	}
	ro.limiter.SetLimitAt(now, rate.Limit(max(limit*cutFactor, 1)))
	return true
}

// down marks the route's relay unreachable for a while that doubles, from a second to a
// minute, while it stays so.
func (ro *route) down(now time.Time) {
	ro.mu.Lock()
	defer ro.mu.Unlock()
	ro.downFor = min(max(2*ro.downFor, time.Second), time.Minute)
	ro.downUntil = now.Add(ro.downFor)
}

func (ro *route) rateNow() float64 {
	l := ro.limiter.Limit()
	if l == rate.Inf {
		return 0
	}
	return float64(l)
}

func (ro *route) connsNow() int {
	ro.mu.Lock()
	defer ro.mu.Unlock()
	return ro.conns
}

// Status returns every route's state, by priority.
func (r *Router) Status() []postoffice.RouteState {
	now := r.now()
	var out []postoffice.RouteState
	for _, ro := range r.working() {
		ro.mu.Lock()
		st := postoffice.RouteState{Name: ro.Name, URL: RedactURL(ro.URL), Priority: ro.Priority, Connections: ro.conns,
			InUse: ro.inUse, Sent: ro.sent.Load(), Throttled: ro.throttled.Load(), Down: now.Before(ro.downUntil),
			Cooling: now.Before(ro.coolUntil)}
		for i, q := range limits(ro.Route, now) {
			qs := postoffice.QuotaState{Quota: q, Used: ro.quotas[i].sum(now)}
			if i == len(ro.Quotas) {
				st.Warmup = &qs
			} else {
				st.Quotas = append(st.Quotas, qs)
			}
		}
		ro.mu.Unlock()
		st.Rate = ro.rateNow()
		out = append(out, st)
	}
	return out
}

// Close closes every route's connections.
func (r *Router) Close() error {
	for _, ro := range r.working() {
		ro.close()
	}
	return nil
}

// send hands env to the route's relay, or to the outbox.
func (ro *route) send(ctx context.Context, env *Envelope) error {
	if ro.sender == nil {
		return ro.outbox.Send(ctx, env)
	}
	return ro.sender.Send(ctx, env)
}

// setMaxIdle keeps no more idle connections than the route's cap; the outbox has none.
func (ro *route) setMaxIdle() {
	if ro.sender != nil {
		ro.sender.maxIdle.Store(int64(ro.conns))
	}
}

// close closes the route's connections; the outbox is its owner's to close.
func (ro *route) close() {
	if ro.sender != nil {
		ro.sender.Close()
	}
}

// window counts sends over a rolling span in n buckets: what it says is spent includes up
// to one bucket's width more than the span, never less.
type window struct {
	width time.Duration
	idx   []int64 // the bucket number each slot holds
	count []int
}

func newWindow(span time.Duration, n int) *window {
	return &window{width: max(span/time.Duration(n), time.Nanosecond), idx: make([]int64, n), count: make([]int, n)}
}

func (w *window) bucket(t time.Time) int64 { return t.UnixNano() / int64(w.width) }

// add counts k sends at t; sends already out of the window at now are dropped.
func (w *window) add(t time.Time, k int, now time.Time) {
	b, cur := w.bucket(t), w.bucket(now)
	n := int64(len(w.idx))
	if b <= cur-n {
		return
	}
	i := b % n
	if w.idx[i] != b {
		w.idx[i], w.count[i] = b, 0
	}
	w.count[i] += k
}

// sum counts the sends in the window ending at now.
func (w *window) sum(now time.Time) int {
	cur, n := w.bucket(now), int64(len(w.idx))
	total := 0
	for i, b := range w.idx {
		if b > cur-n && b <= cur {
			total += w.count[i]
		}
	}
	return total
}

// roomAt is when the window will hold fewer than limit sends, none being added.
func (w *window) roomAt(now time.Time, limit int) time.Time {
	cur, n := w.bucket(now), int64(len(w.idx))
	total := w.sum(now)
	for b := cur - n + 1; b <= cur; b++ {
		if i := b % n; w.idx[i] == b {
			total -= w.count[i]
		}
		if total < limit {
			return time.Unix(0, (b+n)*int64(w.width))
		}
	}
	return now.Add(time.Duration(n) * w.width)
}

// WriteMetrics writes the routes' state in the Prometheus text format. Their URLs, and so
// their passwords, are never written.
func (r *Router) WriteMetrics(w io.Writer) {
	statuses := r.Status()
	type metric struct {
		name, help, kind string
		value            func(postoffice.RouteState) float64
	}
	for _, mt := range []metric{
		{"pointpost_route_sent_total", "Messages the route's relay answered.", "counter",
			func(s postoffice.RouteState) float64 { return float64(s.Sent) }},
		{"pointpost_route_throttled_total", "Throttling answers from the route's relay (421, 451/454 4.7.x).", "counter",
			func(s postoffice.RouteState) float64 { return float64(s.Throttled) }},
		{"pointpost_route_rate", "The route's rate now, messages a second (0: no limit of ours).", "gauge",
			func(s postoffice.RouteState) float64 { return s.Rate }},
		{"pointpost_route_connections", "The most connections the route may open now (0: no limit of ours).", "gauge",
			func(s postoffice.RouteState) float64 { return float64(s.Connections) }},
		{"pointpost_route_down", "1 while the route's relay is unreachable.", "gauge",
			func(s postoffice.RouteState) float64 {
				if s.Down {
					return 1
				}
				return 0
			}},
	} {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", mt.name, mt.help, mt.name, mt.kind)
		for _, s := range statuses {
			fmt.Fprintf(w, "%s{route=%q} %g\n", mt.name, s.Name, mt.value(s))
		}
	}
	fmt.Fprintf(w, "# HELP pointpost_route_quota_used Messages counted in a route's quota window.\n# TYPE pointpost_route_quota_used gauge\n")
	for _, s := range statuses {
		for _, q := range s.Quotas {
			fmt.Fprintf(w, "pointpost_route_quota_used{route=%q,window=%q,limit=\"%d\"} %d\n", s.Name, q.Window.String(), q.Limit, q.Used)
		}
	}
}
