package mailer

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"

	"pointpost/postoffice"
	"pointpost/rewards"
)

// TestStore is what a test send reads and records: the job's messages, whether an address
// may get tests, and the tests each user sent.
type TestStore interface {
	Messages(ctx context.Context, job *postoffice.Job) (text, html *postoffice.Message, err error)
	// TestRecipient reports whether email is an approved test address or an enabled toolbox
	// user's (of issuer issuerID; of any issuer for 0), and its consumer's status, "" if none.
	TestRecipient(ctx context.Context, email string, issuerID int64) (allowed bool, status rewards.ConsumerStatus, err error)
	// RecordTestSend records one test by the user unless limit were sent in the window before
	// at; then it returns false and when the next may go.
	RecordTestSend(ctx context.Context, userID, jobKey int64, email string, at time.Time, limit int, window time.Duration) (ok bool, retryAt time.Time, err error)
}

// TestSendsPerHour is how many tests one toolbox user may send in an hour.
const TestSendsPerHour = 10

// TestRefusedError is a test send refused for its address or its sender's limit, with a
// reason to show as it is.
type TestRefusedError struct {
	Reason string
}

func (e *TestRefusedError) Error() string { return e.Reason }

// TestSends sends an issuer a test of a job ("send a test"): the job's message built exactly
// as a mail server builds it, for a made-up consumer at the test address, with the subject
// prefixed "[TEST] ". Its token names job 0 and consumer 0, which no delivery has: a reply to
// it or a press of its button is refused as naming no invitation, and earns nothing.
type TestSends struct {
	Store     TestStore
	Sender    Sender
	Tokens    *postoffice.Keyring
	Addresses Addresses
	Now       func() time.Time
}

// TestSubjectPrefix starts the subject of every test message.
const TestSubjectPrefix = "[TEST] "

// TestConsumer is the made-up consumer a test is written for, at address to.
func TestConsumer(to string) rewards.Consumer {
	return rewards.Consumer{Email: to, FirstName: "Alex", LastName: "Sample", City: "Springfield", Region: "IL",
		Country: "US", PostalCode: "62701", BirthYear: 1985, Gender: "f", Interests: []string{"golf", "travel"},
		Status: rewards.StatusActive, PointsBalance: 1250}
}

// SendTest sends to the address, for the toolbox user by, one message per format the job
// has: text, then HTML. A test goes only to by's own address, another enabled toolbox user's
// (of by's issuer, for an issuer user) or an address an operator approved; never to a
// consumer who is not active (unsubscribed, bounced, suppressed); and at most
// TestSendsPerHour a user in any hour. Returns a *TestRefusedError for those, an error for
// an address that is not one, a job whose templates do not compile, or the Sender's error,
// naming the format that failed.
func (t *TestSends) SendTest(ctx context.Context, job *postoffice.Job, to string, by *rewards.User) error {
	addr, err := mail.ParseAddress(strings.TrimSpace(to))
	if err != nil || addr.Name != "" {
		return fmt.Errorf("%q is not an e-mail address", to)
	}
	if by == nil || by.ID == 0 {
		return &TestRefusedError{"a test is sent by a toolbox user"}
	}
	to = strings.ToLower(addr.Address)
	allowed, status, err := t.Store.TestRecipient(ctx, to, by.IssuerID)
	if err != nil {
		return err
	}
	if !allowed && !strings.EqualFold(to, by.Email) {
		return &TestRefusedError{fmt.Sprintf("tests go only to toolbox users' own addresses and to addresses an operator approved; %s is neither", to)}
	}
	if status != "" && status != rewards.StatusActive {
		return &TestRefusedError{fmt.Sprintf("%s is %s: no mail goes to it, tests included", to, status)}
	}
	text, html, err := t.Store.Messages(ctx, job)
	if err != nil {
		return err
	}
	if text == nil && html == nil {
		return fmt.Errorf("job %d has no message", job.Key)
	}
	now := time.Now
	if t.Now != nil {
		now = t.Now
	}
	ok, retryAt, err := t.Store.RecordTestSend(ctx, by.ID, job.Key, to, now(), TestSendsPerHour, time.Hour)
	if err != nil {
		return err
	}
	if !ok {
		return &TestRefusedError{fmt.Sprintf("you have sent %d tests in the last hour, the most there may be: the next may go at %s UTC",
			TestSendsPerHour, retryAt.UTC().Format("15:04"))}
	}
	// Job 0, consumer 0: a token no delivery answers to (see TestSends).
	token := t.Tokens.Encode(0, 0)
	var errs []error
	for _, m := range []*postoffice.Message{text, html} {
		if m == nil {
			continue
		}
		test := *m
		test.Subject = TestSubjectPrefix + m.Subject
		var jm *jobMessages
		if test.Type == postoffice.MessageHTML {
			jm, err = compileJob(job, nil, &test, t.Addresses)
		} else {
			jm, err = compileJob(job, &test, nil, t.Addresses)
		}
		if err != nil {
			return err
		}
		r := postoffice.Recipient{Consumer: TestConsumer(addr.Address)}
		r.Consumer.Format = test.Type
		account := ""
		if jm.needsAccount {
			account = token
		}
		data, _ := jm.build(nil, &r, token, account, dateHeader(now()), nil)
		env := &Envelope{From: t.Addresses.From.Address, To: addr.Address, Subject: TestSubjectPrefix + job.Name, Data: data}
		if err := t.Sender.Send(ctx, env); err != nil {
			errs = append(errs, fmt.Errorf("%s test to %s: %w", test.Type, addr.Address, err))
		}
	}
	return errors.Join(errs...)
}
