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

// TestStore is what a test send reads: the job's messages.
type TestStore interface {
	Messages(ctx context.Context, job *postoffice.Job) (text, html *postoffice.Message, err error)
}

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

// SendTest sends to the address one message per format the job has: text, then HTML.
// Returns an error for an address that is not one, a job whose templates do not compile, or
// the Sender's error, naming the format that failed.
func (t *TestSends) SendTest(ctx context.Context, job *postoffice.Job, to string) error {
	addr, err := mail.ParseAddress(strings.TrimSpace(to))
	if err != nil || addr.Name != "" {
		return fmt.Errorf("%q is not an e-mail address", to)
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
