package rewards

import (
	"fmt"
	"math"
	"math/bits"
	"strings"
	"time"
)

// The bounds of every points-bearing input: what one acknowledgement may earn under a rule,
// and a budget (a rule's or an issuer's), a catalog cost or a correction. They keep every
// sum the program keeps (spent totals, balances, a job's most cost) far from int64's limit:
// overflowing a spent total or a balance at MaxAwardPoints an accrual takes more than 2^43
// accruals, more rows than a SQLite file (at most 2^48 bytes) holds. Migration 0010 enforces
// the same numbers in the database.
const (
	MaxAwardPoints int64 = 1_000_000
	MaxBudget      int64 = 1_000_000_000_000_000
)

// CheckPoints returns an error naming field unless 1 <= v <= most.
func CheckPoints(field string, v, most int64) error {
	if v <= 0 || v > most {
		return fmt.Errorf("%s: must be a whole number of points from 1 to %d", field, most)
	}
	return nil
}

// CheckBudget returns an error naming field unless 0 <= v <= MaxBudget (0: no cap).
func CheckBudget(field string, v int64) error {
	if v < 0 || v > MaxBudget {
		return fmt.Errorf("%s: must be from 0 (no cap) to %d points", field, MaxBudget)
	}
	return nil
}

// AddPoints is a+b, and false when the sum does not fit in an int64.
func AddPoints(a, b int64) (int64, bool) {
	sum := a + b
	if (b > 0 && sum < a) || (b < 0 && sum > a) {
		return 0, false
	}
	return sum, true
}

// MulPoints is a*b for a, b >= 0, and false when the product does not fit in an int64 (or an
// operand is negative).
func MulPoints(a, b int64) (int64, bool) {
	if a < 0 || b < 0 {
		return 0, false
	}
	hi, lo := bits.Mul64(uint64(a), uint64(b))
	if hi != 0 || lo > math.MaxInt64 {
		return 0, false
	}
	return int64(lo), true
}

// MostPoints is the product of non-negative factors (recipients, points, times), or
// math.MaxInt64 when it does not fit: for an estimate of the most points a job can cost, where
// "more than any budget" is the truthful answer to an overflow.
func MostPoints(factors ...int64) int64 {
	p := int64(1)
	for _, f := range factors {
		var ok bool
		if p, ok = MulPoints(p, f); !ok {
			return math.MaxInt64
		}
	}
	return p
}

// SumMostPoints is a+b for estimates made by MostPoints: math.MaxInt64 past int64.
func SumMostPoints(a, b int64) int64 {
	if sum, ok := AddPoints(a, b); ok {
		return sum
	}
	return math.MaxInt64
}

// RuleType is what a consumer does to earn under a rule (the seed's award types).
type RuleType string

const (
	RuleReply         RuleType = "reply"         // replied to the e-mail
	RuleClick         RuleType = "click"         // clicked through / pressed Submit on the page
	RuleBanner        RuleType = "banner"        // an ad banner
	RulePurchase      RuleType = "purchase"      // a purchase reported by the issuer
	RuleQuestionnaire RuleType = "questionnaire" // a questionnaire answered
)

// RuleTypes lists every rule type, for forms and validation; a new slice each call, so no
// caller can change what Validate accepts.
func RuleTypes() []RuleType {
	return []RuleType{RuleReply, RuleClick, RuleBanner, RulePurchase, RuleQuestionnaire}
}

// Frequency says how often a consumer may earn under a rule.
type Frequency string

const (
	// FrequencyOnce: once per job.
	FrequencyOnce Frequency = "once"
	// FrequencyPeriod: once per consumer per Period, across jobs.
	FrequencyPeriod Frequency = "period"
	// FrequencyTimes: up to MaxTimes per consumer across jobs, at most once per job.
	FrequencyTimes Frequency = "times"
)

// AwardRule is an issuer's rule for awarding points (toolbox database 174).
type AwardRule struct {
	ID          int64
	IssuerID    int64
	Description string
	Type        RuleType
	Points      int64
	Frequency   Frequency
	Period      time.Duration // for FrequencyPeriod
	MaxTimes    int           // for FrequencyTimes
	// Start and Stop bound when the rule awards; zero means unbounded.
	Start, Stop time.Time
	IssuerURL   string
	SuccessURL  string
	// Budget caps the points the rule may award in all; 0 means no cap.
	Budget  int64
	Retired bool
}

// Validate checks a rule's fields. Returns an error naming the field.
func (r *AwardRule) Validate() error {
	known := false
	for _, t := range RuleTypes() {
		known = known || r.Type == t
	}
	switch {
	case !known:
		return fmt.Errorf("type: %q is not one of reply, click, banner, purchase, questionnaire", r.Type)
	case r.Points <= 0 || r.Points > MaxAwardPoints:
		return CheckPoints("points", r.Points, MaxAwardPoints)
	case r.Frequency != FrequencyOnce && r.Frequency != FrequencyPeriod && r.Frequency != FrequencyTimes:
		return fmt.Errorf("frequency: %q is not once, period or times", r.Frequency)
	case r.Frequency == FrequencyPeriod && r.Period < time.Minute:
		return fmt.Errorf("period: a period rule needs a period of at least a minute, like \"24h\"")
	case r.Frequency == FrequencyTimes && r.MaxTimes < 1:
		return fmt.Errorf("max_times: a times rule needs max_times of at least 1")
	case !r.Start.IsZero() && !r.Stop.IsZero() && !r.Stop.After(r.Start):
		return fmt.Errorf("stop: must be after start")
	case r.Budget < 0 || r.Budget > MaxBudget:
		return CheckBudget("budget", r.Budget)
	}
	for _, u := range []struct{ field, url string }{{"issuer_url", r.IssuerURL}, {"success_url", r.SuccessURL}} {
		if u.url != "" && !strings.HasPrefix(u.url, "https://") && !strings.HasPrefix(u.url, "http://") {
			return fmt.Errorf("%s: must be an http or https URL", u.field)
		}
		if err := CheckOneLine(u.url); err != nil {
			return fmt.Errorf("%s: %w", u.field, err)
		}
	}
	if err := CheckName(r.Description); err != nil {
		return fmt.Errorf("description: %w", err)
	}
	for _, t := range []struct {
		field string
		at    time.Time
	}{{"start", r.Start}, {"stop", r.Stop}} {
		if !t.at.IsZero() {
			if err := CheckDate(t.at); err != nil {
				return fmt.Errorf("%s: %w", t.field, err)
			}
		}
	}
	return nil
}

// withinBudget reports whether spent+points stays within budget; a sum past int64 does not.
func withinBudget(spent, points, budget int64) bool {
	sum, ok := AddPoints(spent, points)
	return ok && sum <= budget
}

// History is what has been awarded before, as a decision needs it.
type History struct {
	// ThisJob counts awards of this rule to this consumer for this job (in this period,
	// for a period rule).
	ThisJob int
	// InPeriod counts awards of this rule to this consumer in the current period.
	InPeriod int
	// Total counts awards of this rule to this consumer ever.
	Total int
	// RuleSpent and IssuerSpent are the points awarded so far under the rule and by the
	// issuer; IssuerBudget is the issuer's cap (0: none).
	RuleSpent, IssuerSpent, IssuerBudget int64
}

// Decision is what a rule decided about one acknowledgement.
type Decision struct {
	RuleID  int64
	Points  int64 // 0 when not awarded
	Awarded bool
	// Reason says why nothing was awarded, in words an operator can read.
	Reason string
	// Occurrence keys the award with (rule, job, consumer), so a replay finds it taken: 0
	// for once-per-job and times rules, the period's number for period rules.
	Occurrence int64
}

// Occurrence is the key an acknowledgement at now takes under the rule.
func (r *AwardRule) Occurrence(now time.Time) int64 {
	if r.Frequency == FrequencyPeriod && r.Period > 0 {
		return now.UnixMilli() / r.Period.Milliseconds()
	}
	return 0
}

// PeriodStart is when the period containing now began, for a period rule.
func (r *AwardRule) PeriodStart(now time.Time) time.Time {
	if r.Frequency != FrequencyPeriod || r.Period <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(r.Occurrence(now) * r.Period.Milliseconds()).UTC()
}

// Decide says whether an acknowledgement at now earns points under the rule, given what was
// awarded before and when the job stops awarding (216c: no points after its stop date).
func (r *AwardRule) Decide(now, jobStop time.Time, h History) Decision {
	d := Decision{RuleID: r.ID, Occurrence: r.Occurrence(now)}
	switch {
	case r.Retired:
		d.Reason = "the rule is retired"
	case !r.Start.IsZero() && now.Before(r.Start):
		d.Reason = "the rule has not started yet"
	case !r.Stop.IsZero() && !now.Before(r.Stop):
		d.Reason = "the rule has ended"
	case !jobStop.IsZero() && !now.Before(jobStop):
		d.Reason = "the campaign has ended"
	case h.ThisJob > 0:
		d.Reason = "already awarded for this invitation"
	case r.Frequency == FrequencyPeriod && h.InPeriod > 0:
		d.Reason = fmt.Sprintf("already awarded in this period of %s", r.Period)
	case r.Frequency == FrequencyTimes && h.Total >= r.MaxTimes:
		d.Reason = fmt.Sprintf("already awarded the most times allowed (%d)", r.MaxTimes)
	case r.Points <= 0 || r.Points > MaxAwardPoints:
		// A rule stored before the bound existed: it awards nothing rather than a sum that
		// could overflow.
		d.Reason = fmt.Sprintf("the rule's points (%d) are outside 1 to %d", r.Points, MaxAwardPoints)
	case r.Budget > 0 && !withinBudget(h.RuleSpent, r.Points, r.Budget):
		d.Reason = "the rule's points budget is spent"
	case h.IssuerBudget > 0 && !withinBudget(h.IssuerSpent, r.Points, h.IssuerBudget):
		d.Reason = "the issuer's points budget is spent"
	default:
		d.Awarded, d.Points = true, r.Points
	}
	return d
}
