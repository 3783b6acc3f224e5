package postoffice

import (
	"strings"
	"time"

	"pointpost/rewards"
)

// Segment is a selection an issuer named and saved, for later campaigns to reuse (a
// listmonk list, a Mailchimp segment). Selection is the criteria as JSON, as Job.Selection.
type Segment struct {
	ID        int64
	IssuerID  int64
	Name      string
	Selection string
	CreatedAt time.Time
}

// CheckSegmentName returns an error saying why name cannot name a segment: it is required,
// one line, and at most rewards.MaxNameLength characters.
func CheckSegmentName(name string) error {
	if strings.TrimSpace(name) == "" {
		return &FieldError{"segment_name", "give the segment a name"}
	}
	if err := rewards.CheckName(name); err != nil {
		return &FieldError{"segment_name", err.Error()}
	}
	return nil
}
