package mailer

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/mail"
	"time"

	gomail "github.com/emersion/go-message/mail"
)

// Notices sends the one-off messages that are not campaigns, such as the double opt-in
// confirmation of an enrollment, through the same Sender the mail servers use.
type Notices struct {
	Sender Sender
	From   mail.Address
	// Domain carries the Message-IDs.
	Domain string
	Now    func() time.Time
}

// SendConfirmation asks a new consumer to confirm her enrollment by following link.
func (n *Notices) SendConfirmation(ctx context.Context, to, name, link string) error {
	greeting := "Hello,"
	if name != "" {
		greeting = "Hello " + name + ","
	}
	body := greeting + "\n\nplease confirm that you want to join and earn points by opening this link:\n\n" +
		link + "\n\nIf you did not ask to join, ignore this message: nothing happens without your confirmation.\n"
	return n.send(ctx, to, name, "Please confirm your membership", body)
}

// SendInvitation gives a new toolbox user the one-time link with which they choose a
// password; what says what the account is for ("the operators' toolbox", "Acme's campaigns").
func (n *Notices) SendInvitation(ctx context.Context, to, name, what, link string) error {
	greeting := "Hello,"
	if name != "" {
		greeting = "Hello " + name + ","
	}
	body := greeting + "\n\nyou have been given an account for " + what + " on pointpost.\n" +
		"Open this link to choose your password and sign in:\n\n" + link + "\n\n" +
		"The link works once, for 7 days. If you did not expect this, ignore this message.\n"
	return n.send(ctx, to, name, "Your pointpost account", body)
}

// SendPasswordLink sends a toolbox user a new one-time link to set their password, for an
// invitation whose link was lost or a forgotten password.
func (n *Notices) SendPasswordLink(ctx context.Context, to, name, what, link string) error {
	greeting := "Hello,"
	if name != "" {
		greeting = "Hello " + name + ","
	}
	body := greeting + "\n\nhere is a new link to set the password of your pointpost account for " + what + ":\n\n" +
		link + "\n\nIt works once, for 7 days. If you did not ask for it, " +
		"ignore this message: your password stays as it is.\n"
	return n.send(ctx, to, name, "A new link for your pointpost account", body)
}

// SendRedemptionCode gives a consumer the one-time code that confirms her redemption of
// item: proof that whoever pressed Redeem reads her mail. valid is how long it works.
func (n *Notices) SendRedemptionCode(ctx context.Context, to, name, item, code string, valid time.Duration) error {
	greeting := "Hello,"
	if name != "" {
		greeting = "Hello " + name + ","
	}
	body := greeting + "\n\nto redeem " + item + " with your points, type this code on the page where you " +
		"pressed Redeem:\n\n    " + code + "\n\nIt works once, for " + fmt.Sprint(int(valid/time.Minute)) + " minutes.\n\n" +
		"If you did not press Redeem, someone has a link from one of your invitations: do not give " +
		"them this code. Without it nothing is spent.\n"
	return n.send(ctx, to, name, "Your code to redeem your points", body)
}

func (n *Notices) send(ctx context.Context, to, name, subject, body string) error {
	now := time.Now
	if n.Now != nil {
		now = n.Now
	}
	var h gomail.Header
	h.SetAddressList("From", []*gomail.Address{{Name: n.From.Name, Address: n.From.Address}})
	h.SetAddressList("To", []*gomail.Address{{Name: name, Address: to}})
	h.SetSubject(subject)
	h.SetDate(now())
	id := make([]byte, 12)
	_, _ = rand.Read(id)
	h.SetMessageID(hex.EncodeToString(id) + "@" + n.Domain)
	h.Set("Auto-Submitted", "auto-generated") // RFC 3834: no auto-replies to this
	h.SetContentType("text/plain", map[string]string{"charset": "utf-8"})
	var buf bytes.Buffer
	w, err := gomail.CreateSingleInlineWriter(&buf, h)
	if err != nil {
		return err
	}
	if _, err := w.Write([]byte(body)); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	if err := n.Sender.Send(ctx, &Envelope{From: n.From.Address, To: to, Subject: subject, Data: buf.Bytes()}); err != nil {
		return fmt.Errorf("sending to %s: %w", to, err)
	}
	return nil
}
