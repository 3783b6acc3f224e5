package postoffice

import (
	"context"
	"fmt"
	"strings"

	"pointpost/rewards"
)

// Invitation is an earning invitation as a web page (claim 12): the same message entry the
// e-mail was written from, rendered for the consumer the token names.
type Invitation struct {
	Token    string
	Job      *Job
	Consumer *rewards.Consumer
	Subject  string
	// Body is the HTML message rendered with HTML-escaped values when the job has one;
	// otherwise the text message, and IsHTML is false.
	Body   string
	IsHTML bool
	// AccountToken opens the consumer's account page; it names no job.
	AccountToken string
}

// Invitation renders the invitation a token names. Returns an error wrapping ErrBadToken
// for a token that does not verify, or the store's not-found error.
func (po *PostOffice) Invitation(ctx context.Context, token string) (*Invitation, error) {
	jobKey, consumerID, err := po.cfg.Tokens.Decode(token)
	if err != nil {
		return nil, err
	}
	st := po.cfg.Store
	job, err := st.Job(ctx, jobKey)
	if err != nil {
		return nil, err
	}
	c, err := st.ConsumerByID(ctx, consumerID)
	if err != nil {
		return nil, err
	}
	text, html, err := st.Messages(ctx, job)
	if err != nil {
		return nil, err
	}
	inv := &Invitation{Token: token, Job: job, Consumer: c, AccountToken: po.AccountToken(consumerID)}
	m := text
	if html != nil {
		m, inv.IsHTML = html, true
	}
	if m == nil {
		return nil, fmt.Errorf("job %d has no message", job.Key)
	}
	ack, page, unsub := po.Links(token)
	v := TagValues{Consumer: c, Token: token, AckURL: ack, PageURL: page, UnsubscribeURL: unsub,
		AccountURL: AccountURL(po.cfg.BaseURL, inv.AccountToken), IssuerName: job.IssuerName, JobName: job.Name}
	subject, err := ParseTemplate(m.Subject)
	if err != nil {
		return nil, err
	}
	body, err := ParseTemplate(m.Body)
	if err != nil {
		return nil, err
	}
	inv.Subject = subject.String(&v, false)
	inv.Body = body.String(&v, inv.IsHTML)
	return inv, nil
}

// AccountToken is a token for a consumer's account page: it names her and no job.
func (po *PostOffice) AccountToken(consumerID int64) string {
	return po.cfg.Tokens.Encode(0, consumerID)
}

// Links returns the consumer-facing URLs for a token: the acknowledgement link (opens the
// invitation page), the invitation page, and the unsubscribe page.
func (po *PostOffice) Links(token string) (ack, page, unsubscribe string) {
	return LinksFor(po.cfg.BaseURL, token)
}

// LinksFor builds the consumer-facing URLs for a token under base: /a/ acknowledges (the
// page with its Submit button), /i/ is the invitation page, /u/ unsubscribes.
func LinksFor(base, token string) (ack, page, unsubscribe string) {
	base = strings.TrimRight(base, "/")
	return base + "/a/" + token, base + "/i/" + token, base + "/u/" + token
}

// AccountURL is the link to a consumer's account page for her account token.
func AccountURL(base, accountToken string) string {
	return strings.TrimRight(base, "/") + "/account/" + accountToken
}
