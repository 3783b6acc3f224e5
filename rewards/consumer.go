// Package rewards owns the consumers and issuers of the incentive program (database 165 and
// the toolbox database 174 of WO 00/42557): who can be invited (consumers, their CSV import),
// the award rules that decide whether an acknowledgement earns points, the accruals and the
// append-only ledger they settle into, a consumer's timeline, the catalog consumers redeem
// points for, and the toolbox's users and API keys.
package rewards

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
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

// An issuer's attributes are its own: stored under "slug:name", written only by that issuer
// (its API keys and users) and seen and targeted only by it, as "name". Attributes without a
// namespace are the program's, written by operators; every issuer may target and read them
// as part of the shared profile, and its own attribute of the same name shadows one.
// Issuer slugs and attribute names never hold ':', so no name reaches into another's.
const attributeNamespaceSep = ":"

// IssuerAttribute is the stored name of the attribute name of the issuer with slug; an empty
// slug (an operator) names the program's attribute.
func IssuerAttribute(slug, name string) string {
	if slug == "" {
		return name
	}
	return slug + attributeNamespaceSep + name
}

// AttributesFor returns the attributes the issuer with slug may see, by the names it knows
// them by: the program's, overlaid by its own. An empty slug (an operator) sees all as stored.
func (c *Consumer) AttributesFor(slug string) map[string]string {
	if slug == "" || len(c.Attributes) == 0 {
		return c.Attributes
	}
	out := make(map[string]string, len(c.Attributes))
	for k, v := range c.Attributes {
		if !strings.Contains(k, attributeNamespaceSep) {
			out[k] = v
		}
	}
	for k, v := range c.Attributes {
		if name, ok := strings.CutPrefix(k, slug+attributeNamespaceSep); ok {
			out[name] = v
		}
	}
	return out
}

// MaxNameLength bounds, in characters, a name a person gives: a job's, an issuer's, a rule's
// description.
const MaxNameLength = 200

// CheckOneLine returns an error if s holds CR, LF or NUL, which would let a value that
// reaches a mail header, a URL or a log line start a new one.
func CheckOneLine(s string) error {
	if strings.ContainsAny(s, "\r\n\x00") {
		return errors.New("must be one line, without line breaks or NUL bytes")
	}
	return nil
}

// CheckName checks a name a person gives: one line of at most MaxNameLength characters.
func CheckName(s string) error {
	if err := CheckOneLine(s); err != nil {
		return err
	}
	if n := utf8.RuneCountInString(s); n > MaxNameLength {
		return fmt.Errorf("must be at most %d characters, not %d", MaxNameLength, n)
	}
	return nil
}

// The dates a job or a rule may name: anything outside is a typing slip (year 20266) that
// would also overflow the arithmetic of periods and prices.
var (
	EarliestDate = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	LatestDate   = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
)

// CheckDate returns an error if t is outside [EarliestDate, LatestDate).
func CheckDate(t time.Time) error {
	if t.Before(EarliestDate) || !t.Before(LatestDate) {
		return fmt.Errorf("must be between the years %d and %d", EarliestDate.Year(), LatestDate.Year()-1)
	}
	return nil
}
