package postoffice

import (
	"context"
	"errors"
	"time"

	"pointpost/rewards"
)

// Channel is how a consumer acknowledged an invitation.
type Channel string

const (
	// ChannelReply: she replied to the e-mail (the receiver 199); earns under reply rules.
	ChannelReply Channel = "reply"
	// ChannelClick: she pressed Submit on the invitation's web page; earns under click rules.
	ChannelClick Channel = "click"
)

// RuleType is the award rule type a channel earns under.
func (c Channel) RuleType() rewards.RuleType {
	if c == ChannelReply {
		return rewards.RuleReply
	}
	return rewards.RuleClick
}

// ErrNoDelivery is an acknowledgement whose token verifies but names no invitation sent.
var ErrNoDelivery = errors.New("no such invitation")

// Ack is one acknowledgement to record (claims 10-11).
type Ack struct {
	JobKey     int64
	ConsumerID int64
	Channel    Channel
	At         time.Time
	// Source says where it came from, for the operator: "smtp <message-id>", "http 1.2.3.4".
	Source string
}

// AckResult is what an acknowledgement did.
type AckResult struct {
	JobKey     int64
	ConsumerID int64
	DeliveryID int64
	JobName    string
	// FirstReceipt is set when this acknowledgement set the received flag (220d).
	FirstReceipt bool
	// Decisions has one entry per rule of the job of the channel's type.
	Decisions []rewards.Decision
	// SuccessURL and IssuerURL come from the job's first rule of the channel's type.
	SuccessURL string
	IssuerURL  string
}

// Points is what the acknowledgement earned.
func (r *AckResult) Points() int64 {
	var p int64
	for _, d := range r.Decisions {
		p += d.Points
	}
	return p
}

// AckStore records acknowledgements: the received flag and the rules' accruals in one
// transaction that is on disk before it returns.
type AckStore interface {
	Acknowledge(ctx context.Context, ack Ack) (*AckResult, error)
}

// Acknowledge verifies a token and records the acknowledgement it carries. Returns an error
// wrapping ErrBadToken for a token that does not verify, ErrNoDelivery for one naming no
// invitation, or the store's error when it could not commit.
func (po *PostOffice) Acknowledge(ctx context.Context, token string, channel Channel, source string) (*AckResult, error) {
	job, consumer, err := po.cfg.Tokens.Decode(token)
	if err != nil {
		return nil, err
	}
	return po.cfg.Store.Acknowledge(ctx, Ack{JobKey: job, ConsumerID: consumer, Channel: channel, At: po.cfg.Now(), Source: source})
}
