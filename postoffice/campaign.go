package postoffice

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"pointpost/rewards"
)

// Campaign is a job as an operator writes it in a campaign file (`pointpost campaign create`).
type Campaign struct {
	Issuer      string          `json:"issuer"`
	IssuerName  string          `json:"issuer_name,omitempty"`
	Name        string          `json:"name"`
	Start       string          `json:"start"`
	Stop        string          `json:"stop"`
	ClientCount int             `json:"client_count"`
	Selection   json.RawMessage `json:"selection,omitempty"`
	Text        *MessageSpec    `json:"text,omitempty"`
	HTML        *MessageSpec    `json:"html,omitempty"`
	// MailServer pins the job to one mail server; 0 lets the post office choose (claim 8).
	MailServer int `json:"mail_server,omitempty"`
	// Draft keeps the job from being scheduled until someone schedules it. A draft may lack
	// its messages' subjects; PostOffice.Ready checks them when it is scheduled.
	Draft bool `json:"draft,omitempty"`
	// Rules are award rules made for this job; RuleIDs names the issuer's existing ones.
	Rules   []RuleSpec `json:"rules,omitempty"`
	RuleIDs []int64    `json:"rule_ids,omitempty"`
}

// RuleSpec is an award rule as a campaign file writes it.
type RuleSpec struct {
	Description string `json:"description,omitempty"`
	Type        string `json:"type"`
	Points      int64  `json:"points"`
	// Frequency is "once" (per job), "period" (once per consumer per Period, like "24h" or
	// "168h") or "times" (up to MaxTimes per consumer, once per job).
	Frequency  string `json:"frequency"`
	Period     string `json:"period,omitempty"`
	MaxTimes   int    `json:"max_times,omitempty"`
	Start      string `json:"start,omitempty"`
	Stop       string `json:"stop,omitempty"`
	IssuerURL  string `json:"issuer_url,omitempty"`
	SuccessURL string `json:"success_url,omitempty"`
	Budget     int64  `json:"budget,omitempty"`
}

// rule checks a rule spec and makes the rule. Errors are *FieldError under field.
func (r *RuleSpec) rule(field string) (*rewards.AwardRule, error) {
	rule := &rewards.AwardRule{Description: r.Description, Type: rewards.RuleType(r.Type), Points: r.Points,
		Frequency: rewards.Frequency(r.Frequency), MaxTimes: r.MaxTimes, IssuerURL: r.IssuerURL,
		SuccessURL: r.SuccessURL, Budget: r.Budget}
	if rule.Frequency == "" {
		rule.Frequency = rewards.FrequencyOnce
	}
	if r.Period != "" {
		d, err := time.ParseDuration(r.Period)
		if err != nil {
			return nil, &FieldError{field + ".period", "must be a duration like \"24h\""}
		}
		rule.Period = d
	}
	for _, t := range []struct {
		name  string
		value string
		dst   *time.Time
	}{{"start", r.Start, &rule.Start}, {"stop", r.Stop, &rule.Stop}} {
		if t.value == "" {
			continue
		}
		v, err := time.Parse(time.RFC3339, t.value)
		if err != nil {
			return nil, &FieldError{field + "." + t.name, "must be an RFC 3339 time"}
		}
		*t.dst = v.UTC()
	}
	if err := rule.Validate(); err != nil {
		name, reason, _ := strings.Cut(err.Error(), ": ")
		return nil, &FieldError{field + "." + name, reason}
	}
	return rule, nil
}

// MessageSpec is the subject and body template of one format.
type MessageSpec struct {
	Subject string `json:"subject"`
	Body    string `json:"body"`
}

// FieldError is a campaign that is wrong in one named field.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

var slugPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// MaxTemplateBytes bounds a message's body template, whichever way a campaign comes in
// (toolbox form, API, campaign file): more than twice what mail clients show before they
// clip, and two of them fit in one API request.
const MaxTemplateBytes = 256 << 10

// maxSubjectBytes bounds a subject template: a header line, folded, stays readable.
const maxSubjectBytes = 1000

// MaxCampaignBytes bounds a campaign's JSON: two templates at their largest, escaped, and
// room for the rest.
const MaxCampaignBytes = 4*MaxTemplateBytes + 1<<20

// ReadCampaign reads and decodes a campaign file of at most MaxCampaignBytes, as
// ParseCampaign does. Returns an error for a larger one without reading it all.
func ReadCampaign(r io.Reader) (*Campaign, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxCampaignBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxCampaignBytes {
		return nil, fmt.Errorf("campaign is larger than %d MB: a message body may be at most %d KB",
			MaxCampaignBytes>>20, MaxTemplateBytes>>10)
	}
	return ParseCampaign(data)
}

// ParseCampaign decodes a campaign file. Returns a *FieldError naming the field that is
// wrong (a key given twice included), or a JSON syntax error with its position, or an error
// for data after the campaign.
func ParseCampaign(data []byte) (*Campaign, error) {
	var dup *DuplicateKeyError
	var trailing *TrailingDataError
	switch err := CheckStrictJSON(data); {
	case errors.As(err, &dup):
		return nil, &FieldError{Field: dup.Path, Reason: "is given twice: give each key once"}
	case errors.As(err, &trailing):
		return nil, fmt.Errorf("campaign: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var c Campaign
	if err := dec.Decode(&c); err != nil {
		var typeErr *json.UnmarshalTypeError
		var syntaxErr *json.SyntaxError
		switch {
		case errors.As(err, &typeErr):
			return nil, &FieldError{Field: typeErr.Field, Reason: fmt.Sprintf("must be a %s, not %s", typeErr.Type, typeErr.Value)}
		case errors.As(err, &syntaxErr):
			return nil, fmt.Errorf("campaign is not valid JSON at byte %d: %w", syntaxErr.Offset, err)
		case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
			return nil, errors.New("campaign is not valid JSON: it ends too early")
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			return nil, &FieldError{Field: field, Reason: "unknown field"}
		}
		return nil, fmt.Errorf("campaign: %w", err)
	}
	return &c, nil
}

// plan is a campaign checked and compiled into what the store keeps.
type plan struct {
	job        Job
	text, html *Message
	criteria   *Criteria
	rules      []*rewards.AwardRule
	ruleIDs    []int64
}

// Validate checks every field of c as CreateJob does, without a store: the selection is
// checked, not compiled nor run. Errors are *FieldError.
func (c *Campaign) Validate() error {
	_, err := c.compile()
	return err
}

// compile checks every field of c and builds the job. Errors are *FieldError.
func (c *Campaign) compile() (*plan, error) {
	p := &plan{}
	if !slugPattern.MatchString(c.Issuer) {
		return nil, &FieldError{"issuer", "must be a short lower-case name of letters, digits, - and _"}
	}
	if strings.TrimSpace(c.Name) == "" {
		return nil, &FieldError{"name", "is required"}
	}
	if err := rewards.CheckName(c.Name); err != nil {
		return nil, &FieldError{"name", err.Error()}
	}
	if err := rewards.CheckName(c.IssuerName); err != nil {
		return nil, &FieldError{"issuer_name", err.Error()}
	}
	start, err := time.Parse(time.RFC3339, c.Start)
	if err != nil {
		return nil, &FieldError{"start", "must be an RFC 3339 time like 2026-12-01T09:00:00Z"}
	}
	if err := rewards.CheckDate(start); err != nil {
		return nil, &FieldError{"start", err.Error()}
	}
	stop, err := time.Parse(time.RFC3339, c.Stop)
	if err != nil {
		return nil, &FieldError{"stop", "must be an RFC 3339 time like 2026-12-31T00:00:00Z"}
	}
	if err := rewards.CheckDate(stop); err != nil {
		return nil, &FieldError{"stop", err.Error()}
	}
	if !stop.After(start) {
		return nil, &FieldError{"stop", "must be after start"}
	}
	if c.ClientCount <= 0 {
		return nil, &FieldError{"client_count", "must be a positive number"}
	}
	if c.MailServer < 0 {
		return nil, &FieldError{"mail_server", "must be a mail server number, or 0 to choose automatically"}
	}
	// A draft may be saved without a subject (Ready checks it when it is scheduled), not
	// without any message: there would be nothing to keep.
	if c.Text == nil && c.HTML == nil {
		return nil, &FieldError{"text", "a campaign needs a text or an html message (or both)"}
	}
	for _, m := range []struct {
		field string
		spec  *MessageSpec
		typ   MessageType
		dst   **Message
	}{{"text", c.Text, "text", &p.text}, {"html", c.HTML, "html", &p.html}} {
		if m.spec == nil {
			continue
		}
		if strings.TrimSpace(m.spec.Subject) == "" && !c.Draft {
			return nil, &FieldError{m.field + ".subject", "is required"}
		}
		if strings.ContainsAny(m.spec.Subject, "\r\n\x00") {
			return nil, &FieldError{m.field + ".subject", "must be one line, without NUL bytes"}
		}
		if len(m.spec.Subject) > maxSubjectBytes {
			return nil, &FieldError{m.field + ".subject", fmt.Sprintf("must be at most %d bytes, not %d", maxSubjectBytes, len(m.spec.Subject))}
		}
		if len(m.spec.Body) > MaxTemplateBytes {
			return nil, &FieldError{m.field + ".body", fmt.Sprintf("must be at most %d KB, not %d KB", MaxTemplateBytes>>10, (len(m.spec.Body)+1023)>>10)}
		}
		if strings.ContainsRune(m.spec.Body, 0) {
			return nil, &FieldError{m.field + ".body", "must not hold NUL bytes"}
		}
		if _, err := ParseTemplate(m.spec.Subject); err != nil {
			return nil, &FieldError{m.field + ".subject", err.Error()}
		}
		if _, err := ParseTemplate(m.spec.Body); err != nil {
			return nil, &FieldError{m.field + ".body", err.Error()}
		}
		*m.dst = &Message{Type: m.typ, Subject: m.spec.Subject, Body: m.spec.Body}
	}
	sel, err := ParseSelection(c.Selection)
	if err != nil {
		return nil, selectionFieldError(err)
	}
	if p.criteria, err = sel.Check(c.Issuer); err != nil {
		return nil, selectionFieldError(err)
	}
	if len(c.Selection) > 0 {
		p.job.Selection = string(c.Selection)
	}
	for i := range c.Rules {
		rule, err := c.Rules[i].rule(fmt.Sprintf("rules[%d]", i))
		if err != nil {
			return nil, err
		}
		p.rules = append(p.rules, rule)
	}
	p.ruleIDs = c.RuleIDs
	p.job.Name = strings.TrimSpace(c.Name)
	p.job.Start, p.job.Stop = start.UTC(), stop.UTC()
	p.job.ClientCount = c.ClientCount
	p.job.MailServerID = c.MailServer
	p.job.State = JobScheduled
	if c.Draft {
		p.job.State = JobDraft
	}
	return p, nil
}

// CreateJob checks a campaign, runs its selection once to prove it (a raw SQL selection
// under the store's guard), and stores the job. Returns a *FieldError for a campaign that is
// wrong, with matching set to the consumers its selection matches now; an error wrapping
// ErrTooManySelections when the issuer has too many selections running.
func (po *PostOffice) CreateJob(ctx context.Context, c *Campaign) (job *Job, matching int, err error) {
	p, err := c.compile()
	if err != nil {
		return nil, 0, err
	}
	if p.job.SelectionSQL, p.job.SelectionArgs, err = po.cfg.Store.CompileSelection(p.criteria); err != nil {
		return nil, 0, &FieldError{"selection", err.Error()}
	}
	matching, err = po.cfg.Store.CheckSelection(WithSelectionOwner(ctx, c.Issuer), p.job.SelectionSQL, p.job.SelectionArgs, p.criteria.Raw != "")
	if errors.Is(err, ErrTooManySelections) {
		return nil, 0, err // nothing wrong with the campaign: try again
	}
	if err != nil {
		return nil, 0, &FieldError{"selection", err.Error()}
	}
	iss, err := po.cfg.Store.EnsureIssuer(ctx, c.Issuer, c.IssuerName)
	if err != nil {
		return nil, 0, err
	}
	p.job.IssuerID, p.job.IssuerSlug = iss.ID, iss.Slug
	if err := po.cfg.Store.CreateJob(ctx, &p.job, p.text, p.html, JobRules{New: p.rules, Existing: p.ruleIDs}); err != nil {
		return nil, 0, err
	}
	po.cfg.Logger.Info("job created", "job", p.job.Key, "issuer", iss.Slug, "state", p.job.State, "matching", matching)
	return &p.job, matching, nil
}

// selectionFieldError names the part of the selection that is wrong.
func selectionFieldError(err error) error {
	var se *SelectionError
	if errors.As(err, &se) {
		return &FieldError{Field: se.Path, Reason: se.Reason}
	}
	return &FieldError{Field: "selection", Reason: err.Error()}
}

// DuplicateKeyError is JSON that gives one key twice in an object, at Path ("rules[0].points").
// encoding/json keeps the last value silently, so what a person reads first is not what runs.
type DuplicateKeyError struct {
	Path string
}

func (e *DuplicateKeyError) Error() string {
	return fmt.Sprintf("%s is given twice: give each key once", e.Path)
}

// TrailingDataError is JSON with more after its one value, at byte Offset.
type TrailingDataError struct {
	Offset int64
}

func (e *TrailingDataError) Error() string {
	return fmt.Sprintf("unexpected data after the JSON value at byte %d", e.Offset)
}

// maxJSONDepth is as deep as encoding/json itself decodes.
const maxJSONDepth = 10000

// CheckStrictJSON reads data token by token and returns a *DuplicateKeyError for a key given
// twice in one object, a *TrailingDataError for anything after the one value, or the
// decoder's error for JSON that does not parse.
func CheckStrictJSON(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := strictJSONValue(dec, "", 0); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return &TrailingDataError{Offset: dec.InputOffset()}
	}
	return nil
}

// strictJSONValue reads one value at path, checking the keys of its objects.
func strictJSONValue(dec *json.Decoder, path string, depth int) error {
	if depth > maxJSONDepth {
		return fmt.Errorf("JSON nested more than %d levels deep", maxJSONDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch tok {
	case json.Delim('{'):
		seen := map[string]bool{}
		for dec.More() {
			t, err := dec.Token()
			if err != nil {
				return err
			}
			key, _ := t.(string)
			p := key
			if path != "" {
				p = path + "." + key
			}
			if seen[key] {
				return &DuplicateKeyError{Path: p}
			}
			seen[key] = true
			if err := strictJSONValue(dec, p, depth+1); err != nil {
				return err
			}
		}
	case json.Delim('['):
		for i := 0; dec.More(); i++ {
			if err := strictJSONValue(dec, fmt.Sprintf("%s[%d]", path, i), depth+1); err != nil {
				return err
			}
		}
	default:
		return nil
	}
	_, err = dec.Token() // the closing delimiter
	return err
}
