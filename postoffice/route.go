package postoffice

import (
	"fmt"
	"math"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Route is a named way out to the world: the relay a mail server hands a message to, and
// the limits its provider sets (a rate, quotas over rolling windows, a number of
// connections). A mail server sends each message by the first route, by priority, with room.
type Route struct {
	Name string
	// URL is the relay, smtp://user:pass@host:port (STARTTLS when offered) or smtps://….
	URL string
	// Connections is the most connections open to the relay at once, across every mail
	// server; 0 leaves it to the mail servers' workers.
	Connections int
	// Rate is messages a second, smooth, across every mail server; 0 sets none (the relay's
	// throttling answers then find one).
	Rate float64
	// Quotas are rolling windows: at most Limit messages in any Window.
	Quotas []Quota
	// Priority orders the routes: the lowest with room takes each message.
	Priority int
	// Warmup, when set, caps the messages in any 24 hours by a schedule that grows.
	Warmup *Warmup
}

// Quota is at most Limit messages in any Window.
type Quota struct {
	Limit  int
	Window time.Duration
}

func (q Quota) String() string { return fmt.Sprintf("%d/%s", q.Limit, q.Window) }

// RouteError is a route setting refused, naming the field.
type RouteError struct {
	Route, Field, Problem string
}

func (e *RouteError) Error() string {
	return fmt.Sprintf("route %q: %s: %s", e.Route, e.Field, e.Problem)
}

// OutboxURL is the relay URL of a route into the embedded outbox: its messages are kept for
// the toolbox's Outbox, at the route's pace (the demo sends by one, to be watched).
const OutboxURL = "outbox:"

var routeName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,39}$`)

// ValidateRoute checks a route's settings. Returns a *RouteError naming the first bad field:
// a name that is not 1-40 lower-case letters, digits, - and _; a relay URL that is not
// smtp:// or smtps:// with a host, nor OutboxURL; negative connections; a rate below 0 or not a number;
// a quota whose limit is below 1 or whose window is not positive; a negative priority.
// Its problems never quote the URL, so never its password.
func ValidateRoute(r Route) error {
	bad := func(field, problem string) error { return &RouteError{r.Name, field, problem} }
	if !routeName.MatchString(r.Name) {
		return bad("name", "must be 1-40 lower-case letters, digits, - or _, beginning with a letter or digit")
	}
	u, err := url.Parse(r.URL)
	switch {
	case r.URL == OutboxURL:
	case r.URL == "":
		return bad("url", "a relay URL is required, as smtp://user:pass@host:587")
	case err != nil:
		return bad("url", "not a URL (a password with / ? # @ or % must be %-escaped)")
	case u.Scheme != "smtp" && u.Scheme != "smtps":
		return bad("url", "scheme must be smtp or smtps")
	case u.Hostname() == "":
		return bad("url", "no host")
	}
	if r.Connections < 0 {
		return bad("connections", "must be 0 (no limit) or more")
	}
	if r.Rate < 0 || math.IsNaN(r.Rate) || math.IsInf(r.Rate, 0) {
		return bad("rate", "must be a number of messages a second, more than 0")
	}
	for i, q := range r.Quotas {
		if q.Limit < 1 {
			return bad(fmt.Sprintf("quota %d", i+1), "limit must be at least 1")
		}
		if q.Window <= 0 {
			return bad(fmt.Sprintf("quota %d", i+1), "window must be longer than 0")
		}
	}
	if r.Priority < 0 {
		return bad("priority", "must be 0 or more")
	}
	if r.Warmup != nil {
		if problem := r.Warmup.validate(); problem != "" {
			return bad("warmup", problem)
		}
	}
	return nil
}

// ParseQuota reads a quota written N/DURATION, as 50000/24h or 30/1m.
func ParseQuota(s string) (Quota, error) {
	n, d, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return Quota{}, fmt.Errorf("quota %q: want N/DURATION, as 50000/24h", s)
	}
	limit, err := strconv.Atoi(strings.TrimSpace(n))
	if err != nil || limit < 1 {
		return Quota{}, fmt.Errorf("quota %q: limit must be a whole number, at least 1", s)
	}
	window, err := time.ParseDuration(strings.TrimSpace(d))
	if err != nil || window <= 0 {
		return Quota{}, fmt.Errorf("quota %q: window must be a duration longer than 0, as 24h", s)
	}
	return Quota{Limit: limit, Window: window}, nil
}

// RouteState is a route at work, for pages and metrics. Its URL has no password.
type RouteState struct {
	Name, URL   string
	Priority    int
	Rate        float64 // messages a second now (0: no limit of ours)
	Connections int     // the cap now (0: none)
	InUse       int     // connections sending now
	Sent        int64
	Throttled   int64
	Down        bool // the relay unreachable
	Cooling     bool // after a throttling answer
	Quotas      []QuotaState
	// Warmup is the warm-up's cap today, and what the last 24 hours used of it.
	Warmup *QuotaState
}

// QuotaState is how much of a quota's window is spent.
type QuotaState struct {
	Quota
	Used int
}

// Warmup is a daily cap that grows while a new route (a new sending domain or address)
// earns its reputation: First messages a day from Start, multiplied by Factor every
// EveryDays days, up to Max. It holds as a quota over any 24 hours.
type Warmup struct {
	First     int
	Factor    float64
	EveryDays int
	Max       int
	// Start is when the warm-up began: day 0.
	Start time.Time
}

var warmupSpec = regexp.MustCompile(`^(\d+)/day(?: (?:(doubling)|x([0-9.]+)) every (\d+) days?)? up to (\d+)$`)

// ParseWarmup reads a warm-up written "500/day doubling every 2 days up to 50000" (or
// "x1.5 every 1 day" in place of "doubling"); "" is none. Start is left zero.
func ParseWarmup(s string) (*Warmup, error) {
	s = strings.Join(strings.Fields(s), " ")
	if s == "" {
		return nil, nil
	}
	m := warmupSpec.FindStringSubmatch(s)
	if m == nil {
		return nil, fmt.Errorf("warm-up %q: want as 500/day doubling every 2 days up to 50000", s)
	}
	w := &Warmup{Factor: 1, EveryDays: 1}
	w.First, _ = strconv.Atoi(m[1])
	w.Max, _ = strconv.Atoi(m[5])
	switch {
	case m[2] != "":
		w.Factor = 2
	case m[3] != "":
		f, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			return nil, fmt.Errorf("warm-up %q: the factor %q is not a number", s, m[3])
		}
		w.Factor = f
	}
	if m[4] != "" {
		w.EveryDays, _ = strconv.Atoi(m[4])
	}
	return w, nil
}

func (w Warmup) String() string {
	step := fmt.Sprintf("x%g", w.Factor)
	if w.Factor == 2 {
		step = "doubling"
	}
	days := "days"
	if w.EveryDays == 1 {
		days = "day"
	}
	return fmt.Sprintf("%d/day %s every %d %s up to %d", w.First, step, w.EveryDays, days, w.Max)
}

// Cap is the day's cap at now: First on the days before the first step, then multiplied
// at each step, never above Max.
func (w Warmup) Cap(now time.Time) int {
	steps := 0
	if days := int(now.Sub(w.Start) / (24 * time.Hour)); days > 0 {
		steps = days / w.EveryDays
	}
	c := float64(w.First)
	for range steps {
		if c *= w.Factor; c >= float64(w.Max) {
			return w.Max
		}
	}
	return min(int(c), w.Max)
}

func (w Warmup) validate() string {
	switch {
	case w.First < 1:
		return "the first day's cap must be at least 1"
	case w.Max < w.First:
		return "the cap it grows up to must be at least the first day's"
	case !(w.Factor >= 1) || math.IsInf(w.Factor, 0):
		return "the factor must be at least 1"
	case w.EveryDays < 1:
		return "it must grow every 1 day or more"
	}
	return ""
}
