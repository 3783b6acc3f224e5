package postoffice

import "time"

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
