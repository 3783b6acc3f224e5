// Package postoffice is the post office 180 of WO 00/42557: it keeps jobs (the control table,
// FIG. 4), their messages (FIG. 5) and one delivery per selected consumer (FIG. 6); it selects
// the audience, assigns each job to the mail server that will be idle soonest (claim 8),
// compiles the tag templates (claims 5-7) and issues the acknowledgement tokens.
package postoffice

import (
	"time"

	"pointpost/rewards"
)

// JobState is where a job is in its life: draft → scheduled → running → done.
type JobState string

const (
	JobDraft     JobState = "draft"
	JobScheduled JobState = "scheduled"
	JobRunning   JobState = "running"
	JobDone      JobState = "done"
)

// Job is a control table entry 216.
type Job struct {
	Key         int64 // 216a
	IssuerID    int64
	IssuerSlug  string
	IssuerName  string
	Name        string
	State       JobState
	Start       time.Time // 216b: nothing is sent before it
	Stop        time.Time // 216c: nothing is sent after it
	ClientCount int       // 216d: never more deliveries than this
	Suspended   bool      // 216e
	// MailServerID is 216f; 0 while the job is not assigned. AssignReason says why the post
	// office gave the job to that server.
	MailServerID  int
	AssignReason  string
	TextMessageID int64 // 216g; 0 when the job has no text message
	HTMLMessageID int64 // 216h; 0 when the job has no HTML message
	// Selection is the criteria as the issuer gave them, as JSON.
	Selection string
	// SelectionSQL is 216i: the WHERE expression over consumers, as run.
	SelectionSQL  string
	SelectionArgs []any
	// Selected counts the deliveries materialised so far; SelectCursor is the last consumer
	// id the selection has walked past; SelectedAll is set when selection has finished.
	Selected     int
	SelectCursor int64
	SelectedAll  bool
	DoneReason   string
	CreatedAt    time.Time
	UpdatedAt    time.Time
	// Route, when set, is the only route the job's messages may leave by.
	Route string
	// BudgetOverride is set when an operator scheduled the job although its worst case
	// exceeded what was left of its issuer's budget.
	BudgetOverride BudgetOverride
}

// BudgetOverride records who scheduled a job over its issuer's budget, and when.
type BudgetOverride struct {
	By string
	At time.Time
}

// Sendable reports whether the job may send at now.
func (j *Job) Sendable(now time.Time) bool {
	return j.State == JobRunning && !j.Suspended && !now.Before(j.Start) && now.Before(j.Stop)
}

// MessageType is the format a message entry is written for (218b).
type MessageType = rewards.Format

// The message types, for the packages that see them only through the post office.
const (
	MessageText = rewards.FormatText
	MessageHTML = rewards.FormatHTML
)

// Message is a message entry 218: a subject and body template with tags.
type Message struct {
	ID      int64
	Type    MessageType
	Subject string
	Body    string
}

// Delivery is a client mail entry 220.
type Delivery struct {
	ID          int64
	JobKey      int64
	ConsumerID  int64
	Sent        bool
	Received    bool
	RetryCount  int
	Rejected    bool
	Failed      bool // given up after the retry limit
	NextAttempt time.Time
	SentAt      time.Time
	ReceivedAt  time.Time
	LastError   string
	LastRefusal Refusal // the relay's last refusal, zero when it never refused
}

// Recipient is a delivery claimed for sending, with its consumer row joined in.
type Recipient struct {
	DeliveryID int64
	RetryCount int
	Consumer   rewards.Consumer
}

// WantsHTML reports whether the consumer's mail client reads HTML (claim 3).
func (r *Recipient) WantsHTML() bool { return r.Consumer.Format == rewards.FormatHTML }

// Mailable reports whether the consumer may still be sent mail: not unsubscribed, bounced
// or suppressed since the job selected her.
func (r *Recipient) Mailable() bool { return r.Consumer.Status == rewards.StatusActive }

// OutcomeKind is what happened to one send.
type OutcomeKind int

const (
	OutcomeSent     OutcomeKind = iota // 2xx
	OutcomeRetry                       // 4xx or a dropped connection: try again later
	OutcomeRejected                    // 5xx: no retry
	OutcomeFailed                      // retries exhausted
)

// Outcome is the result of one send, recorded by a mail server.
type Outcome struct {
	DeliveryID  int64
	Kind        OutcomeKind
	At          time.Time
	NextAttempt time.Time // for OutcomeRetry
	Error       string    // the reply or error, for anything but OutcomeSent
	// Refusal is the relay's reply classified, when a reply refused the send; zero for
	// anything else (a dropped connection, a local failure).
	Refusal Refusal
	// Route is the route that took a sent message ("" without routes): its quotas count it.
	Route string
	// Owner is the mail server that held the delivery's lease (0: none). An outcome that
	// sent nothing is recorded only while the lease is still its own, or none: a server that
	// stalled past its lease does not undo the claim of the server that took the delivery
	// over.
	Owner int
}

// Refusal is a relay's refusal of a send as the mail server classified it.
type Refusal struct {
	Reply  int    // the SMTP reply code, 550
	Status string // the RFC 3463 status, 5.1.1; refined from the text when the reply gave only a class
	Class  RefusalClass
}

// RefusalClass is what a refusal says about the consumer's address.
type RefusalClass string

const (
	RefusalNone   RefusalClass = ""       // not a refusal
	RefusalHard   RefusalClass = "hard"   // the address is bad: suppress it
	RefusalSoft   RefusalClass = "soft"   // counted against the address, suppressed after a limit
	RefusalPolicy RefusalClass = "policy" // our mail was refused (a block, our sender): never counted against her
)

// JobCounts summarises a job's deliveries.
type JobCounts struct {
	Total    int
	Sent     int
	Pending  int // not yet sent and not given up, including retrying
	Retrying int // pending with at least one failed attempt
	Rejected int
	Failed   int
	Received int
}

// OutboxMessage is a message the embedded outbox captured instead of sending it.
type OutboxMessage struct {
	ID         int64
	DeliveryID int64
	From       string
	To         string
	Subject    string
	Data       []byte
	CreatedAt  time.Time
}
