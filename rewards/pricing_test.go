package rewards

import (
	"math"
	"testing"
	"time"
)

func TestAwardsPerConsumer(t *testing.T) {
	day := func(d int) time.Time { return time.Date(2026, 3, d, 0, 0, 0, 0, time.UTC) }
	var zero time.Time
	for _, tc := range []struct {
		name              string
		rule              AwardRule
		jobStart, jobStop time.Time
		want              int64
	}{
		{"once per job", AwardRule{Frequency: FrequencyOnce}, day(1), day(10), 1},
		{"open job, period rule", AwardRule{Frequency: FrequencyPeriod, Period: 24 * time.Hour}, day(1), zero, 1},
		{"daily over nine days", AwardRule{Frequency: FrequencyPeriod, Period: 24 * time.Hour}, day(1), day(10), 9},
		{"daily, rule starts later", AwardRule{Frequency: FrequencyPeriod, Period: 24 * time.Hour, Start: day(5)}, day(1), day(10), 5},
		{"daily, rule stops earlier", AwardRule{Frequency: FrequencyPeriod, Period: 24 * time.Hour, Stop: day(3)}, day(1), day(10), 2},
		{"daily, job mid-day to mid-day", AwardRule{Frequency: FrequencyPeriod, Period: 24 * time.Hour}, day(1).Add(12 * time.Hour), day(2).Add(12 * time.Hour), 2},
		{"rule over before the job", AwardRule{Frequency: FrequencyOnce, Stop: day(1)}, day(2), day(10), 0},
		{"rule starts after the job", AwardRule{Frequency: FrequencyPeriod, Period: time.Hour, Start: day(11)}, day(2), day(10), 0},
		{"open job, rule's stop bounds it", AwardRule{Frequency: FrequencyPeriod, Period: 24 * time.Hour, Stop: day(4)}, day(1), zero, 3},
	} {
		if got := tc.rule.AwardsPerConsumer(tc.jobStart, tc.jobStop); got != tc.want {
			t.Errorf("%s: %d awards per consumer, want %d", tc.name, got, tc.want)
		}
	}
}

func TestPrice(t *testing.T) {
	start, stop := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 3, 8, 0, 0, 0, 0, time.UTC)
	daily := AwardRule{Points: 10, Frequency: FrequencyPeriod, Period: 24 * time.Hour}
	if c := daily.Price(0, 100, start, stop); c != (RuleCost{Points: 10, Times: 7, Uncapped: 7000, Most: 7000}) {
		t.Errorf("daily rule, 100 recipients, 7 days: %+v", c)
	}
	capped := daily
	capped.Budget = 5000
	if c := capped.Price(1000, 100, start, stop); c != (RuleCost{Points: 10, Times: 7, Uncapped: 7000, Most: 4000, Capped: true, BudgetLeft: 4000}) {
		t.Errorf("budget 5000 with 1000 spent: %+v, want capped at 4000", c)
	}
	if c := capped.Price(6000, 100, start, stop); c.Most != 0 || !c.Capped {
		t.Errorf("budget overspent: %+v, want capped at 0", c)
	}
	if c := capped.Price(0, 10, start, stop); c.Most != 700 || c.Capped {
		t.Errorf("under the budget: %+v, want 700 uncapped", c)
	}
	huge := AwardRule{Points: math.MaxInt64 / 2, Frequency: FrequencyOnce}
	if c := huge.Price(0, 3, start, stop); c.Most != math.MaxInt64 {
		t.Errorf("overflowing cost: %+v, want it saturated", c)
	}
}

func TestUncappedCost(t *testing.T) {
	// 300 recipients × 35 points: 10,500, whatever a rule's budget caps it at.
	capped := AwardRule{Points: 35, Frequency: FrequencyOnce, Budget: 6000}
	c := capped.Price(0, 300, time.Time{}, time.Time{})
	if c.Uncapped != 10500 || c.Most != 6000 || !c.Capped || c.BudgetLeft != 6000 {
		t.Errorf("35 points to 300 under a 6,000 budget: %+v, want 10,500 capped at 6,000", c)
	}
	other := AwardRule{Points: 5, Frequency: FrequencyOnce}
	if got := UncappedCost([]RuleCost{c, other.Price(0, 300, time.Time{}, time.Time{})}); got != 12000 {
		t.Errorf("UncappedCost = %d, want 10,500 + 1,500", got)
	}
	if got := UncappedCost([]RuleCost{{Uncapped: math.MaxInt64}, {Uncapped: 1}}); got != math.MaxInt64 {
		t.Errorf("UncappedCost saturates: %d", got)
	}
}

func TestJobCostAndBudget(t *testing.T) {
	most, per := JobCost([]RuleCost{{Points: 10, Times: 7, Most: 7000}, {Points: 5, Times: 1, Most: 400, Capped: true}})
	if most != 7400 || per != 75 {
		t.Errorf("JobCost: most %d, per consumer %d; want 7400 and 75", most, per)
	}
	if most, per := JobCost([]RuleCost{{Points: math.MaxInt64, Times: 2, Most: math.MaxInt64}, {Points: 1, Times: 1, Most: 1}}); most != math.MaxInt64 || per != math.MaxInt64 {
		t.Errorf("JobCost saturates: most %d, per consumer %d", most, per)
	}
	for _, tc := range []struct {
		budget, spent, most int64
		over                bool
		left                int64
	}{
		{0, 0, 1 << 40, false, 0},
		{1000, 200, 800, false, 800},
		{1000, 200, 801, true, 800},
		{1000, 1500, 1, true, 0},
	} {
		if over, left := OverBudget(tc.budget, tc.spent, tc.most); over != tc.over || left != tc.left {
			t.Errorf("OverBudget(%d, %d, %d) = %v, %d; want %v, %d", tc.budget, tc.spent, tc.most, over, left, tc.over, tc.left)
		}
	}
}
