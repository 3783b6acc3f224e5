// Package rewards owns the consumers and issuers of the incentive program (database 165 and
// the toolbox database 174 of WO 00/42557): who can be invited (consumers, their CSV import),
// the award rules that decide whether an acknowledgement earns points, the accruals and the
// append-only ledger they settle into, a consumer's timeline, the catalog consumers redeem
// points for, and the toolbox's users and API keys.
package rewards

import (
	"fmt"
	"strings"
)

// Format is the kind of mail client a consumer reads with (claim 3).
type Format string

const (
	FormatText Format = "text"
	FormatHTML Format = "html"
)

// ParseFormat accepts "text" or "html" in any case; an empty value means text.
func ParseFormat(s string) (Format, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "text", "plain":
		return FormatText, nil
	case "html":
		return FormatHTML, nil
	}
	return "", fmt.Errorf("format %q is not text or html", s)
}

// ConsumerStatus says whether a consumer may be selected for a campaign.
type ConsumerStatus string

const (
	StatusActive       ConsumerStatus = "active"
	StatusUnsubscribed ConsumerStatus = "unsubscribed"
	StatusBounced      ConsumerStatus = "bounced"
	StatusSuppressed   ConsumerStatus = "suppressed"
)

// Consumer is an enrolled member of the program with the demographics campaigns target.
type Consumer struct {
	ID         int64
	Email      string
	FirstName  string
	LastName   string
	City       string
	Region     string
	Country    string
	PostalCode string
	BirthYear  int
	Gender     string
	Interests  []string
	Format     Format
	// Attributes holds any further columns an import brought, by name.
	Attributes map[string]string
	Status     ConsumerStatus
	// PointsBalance is the consumer's posted points, shown in invitations.
	PointsBalance int64
}

// FullName joins first and last name, leaving out an empty part.
func (c *Consumer) FullName() string {
	return strings.TrimSpace(c.FirstName + " " + c.LastName)
}

// Issuer is an advertiser that commissions campaigns.
type Issuer struct {
	ID   int64
	Slug string
	Name string
}
