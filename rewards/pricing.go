package rewards

import "time"

// RuleCost is the most one award rule can cost a job, with the arithmetic that gives it.
type RuleCost struct {
	Points int64
	// Times is how many times the rule may award one consumer within the job's dates.
	Times int64
	// Uncapped is recipients × Points × Times. Most is Uncapped capped by what is left of
	// the rule's budget, BudgetLeft (Capped then).
	Uncapped   int64
	Most       int64
	Capped     bool
	BudgetLeft int64
}

// Price is the most r can award in a job from jobStart to jobStop (either zero: open) sent
// to recipients consumers, r having awarded spent points already: each recipient earns its
// points once per job, or once per period for a period rule, while both the job and the
// rule run; the rule's own budget caps it.
func (r *AwardRule) Price(spent int64, recipients int, jobStart, jobStop time.Time) RuleCost {
	c := RuleCost{Points: r.Points, Times: r.AwardsPerConsumer(jobStart, jobStop)}
	c.Uncapped = MostPoints(int64(recipients), r.Points, c.Times)
	c.Most = c.Uncapped
	if r.Budget > 0 {
		if left := max(r.Budget-spent, 0); c.Most > left {
			c.Most, c.Capped, c.BudgetLeft = left, true, left
		}
	}
	return c
}

// AwardsPerConsumer is how many times r may award one consumer within a job's dates, from
// jobStart to jobStop (either zero: open).
func (r *AwardRule) AwardsPerConsumer(jobStart, jobStop time.Time) int64 {
	from, until := jobStart, jobStop
	if !r.Start.IsZero() && r.Start.After(from) {
		from = r.Start
	}
	if !r.Stop.IsZero() && (until.IsZero() || r.Stop.Before(until)) {
		until = r.Stop
	}
	if !from.IsZero() && !until.IsZero() && !until.After(from) {
		return 0
	}
	if r.Frequency != FrequencyPeriod || r.Period <= 0 || from.IsZero() || until.IsZero() {
		return 1
	}
	// Periods are numbered as Occurrence numbers them.
	p := r.Period.Milliseconds()
	return (until.UnixMilli()-1)/p - from.UnixMilli()/p + 1
}

// JobCost sums the rules' costs: the most the job can award in all (most) and to one
// consumer (perConsumer), both saturating rather than overflowing.
func JobCost(rules []RuleCost) (most, perConsumer int64) {
	for _, c := range rules {
		most = SumMostPoints(most, c.Most)
		perConsumer = SumMostPoints(perConsumer, MostPoints(c.Points, c.Times))
	}
	return most, perConsumer
}

// UncappedCost is what the rules would award with no rule's budget capping them:
// recipients × the points one consumer may earn, saturating.
func UncappedCost(rules []RuleCost) int64 {
	var sum int64
	for _, c := range rules {
		sum = SumMostPoints(sum, c.Uncapped)
	}
	return sum
}

// OverBudget reports whether a job that may award most points can exceed what is left of an
// issuer's budget (budget 0: none) with spent points awarded already, and what is left.
func OverBudget(budget, spent, most int64) (over bool, left int64) {
	if budget <= 0 {
		return false, 0
	}
	left = max(budget-spent, 0)
	return most > left, left
}
