package postoffice

import (
	"fmt"
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
}

// Quota is at most Limit messages in any Window.
type Quota struct {
	Limit  int
	Window time.Duration
}

func (q Quota) String() string { return fmt.Sprintf("%d/%s", q.Limit, q.Window) }
