package postoffice

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// InboundEntry is a message the receiver recorded (a reply, auto-reply, bounce, complaint,
// unsubscribe request, or one that could not be told apart), with the job and consumer a
// verified token named (0 and "" when none did).
type InboundEntry struct {
	ID                int64
	Kind              string
	JobKey            int64
	JobName           string
	ConsumerID        int64
	ConsumerEmail     string
	From, To, Subject string
	Detail            string
	// Unverified marks a bounce or complaint no verified token named: it changed nothing.
	Unverified bool
	CreatedAt  time.Time
}

// KindAcknowledged is the kind of an InboundEntry that is a reply which reached the
// acknowledgement path through its valid token: it earned points, or Detail says why not.
const KindAcknowledged = "acknowledged"

// InboundCursor is where a page of the inbound list continues: the entry after which the
// next page begins, in the list's order (newest first; replies that acknowledged and other
// inbound mail are numbered apart, so the ID alone does not place an entry).
type InboundCursor struct {
	AtMS int64 // when the entry was recorded, Unix milliseconds
	Ack  bool  // the entry is an acknowledgement
	ID   int64
}

// IsZero reports whether c is the start of the list.
func (c InboundCursor) IsZero() bool { return c == InboundCursor{} }

// String is c as a URL carries it.
func (c InboundCursor) String() string {
	src := "m"
	if c.Ack {
		src = "a"
	}
	return strconv.FormatInt(c.AtMS, 10) + "-" + src + strconv.FormatInt(c.ID, 10)
}

// ParseInboundCursor reads a cursor String wrote. Returns an error for anything else.
func ParseInboundCursor(s string) (InboundCursor, error) {
	at, rest, ok := strings.Cut(s, "-")
	var c InboundCursor
	var err error
	if c.AtMS, err = strconv.ParseInt(at, 10, 64); !ok || err != nil || c.AtMS < 0 || len(rest) < 2 || (rest[0] != 'a' && rest[0] != 'm') {
		return InboundCursor{}, fmt.Errorf("inbound cursor %q: not a page link", s)
	}
	c.Ack = rest[0] == 'a'
	if c.ID, err = strconv.ParseInt(rest[1:], 10, 64); err != nil || c.ID <= 0 {
		return InboundCursor{}, fmt.Errorf("inbound cursor %q: not a page link", s)
	}
	return c, nil
}

// Cursor is where the page after e begins.
func (e *InboundEntry) Cursor() InboundCursor {
	return InboundCursor{AtMS: e.CreatedAt.UnixMilli(), Ack: e.Kind == KindAcknowledged, ID: e.ID}
}
