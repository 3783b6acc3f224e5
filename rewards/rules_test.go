package rewards

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestAddAndMulPointsNeverWrap(t *testing.T) {
	for _, tc := range []struct {
		a, b int64
		sum  int64
		ok   bool
	}{
		{1, 2, 3, true},
		{math.MaxInt64 - 1, 1, math.MaxInt64, true},
		{math.MaxInt64, 1, 0, false},
		{math.MaxInt64 - 2, MaxAwardPoints, 0, false},
		{math.MinInt64, -1, 0, false},
		{-5, 3, -2, true},
	} {
		if sum, ok := AddPoints(tc.a, tc.b); sum != tc.sum || ok != tc.ok {
			t.Errorf("AddPoints(%d, %d) = %d, %v; want %d, %v", tc.a, tc.b, sum, ok, tc.sum, tc.ok)
		}
	}
	for _, tc := range []struct {
		a, b, p int64
		ok      bool
	}{
		{3, 4, 12, true},
		{0, math.MaxInt64, 0, true},
		{1 << 31, 1 << 31, 1 << 62, true},
		{1 << 32, 1 << 31, 0, false},
		{math.MaxInt64, 2, 0, false},
		{-1, 2, 0, false},
	} {
		if p, ok := MulPoints(tc.a, tc.b); p != tc.p || ok != tc.ok {
			t.Errorf("MulPoints(%d, %d) = %d, %v; want %d, %v", tc.a, tc.b, p, ok, tc.p, tc.ok)
		}
	}
	// The most a job can cost: ten million recipients, the most points, a period rule of a
	// minute over a century.
	if got := MostPoints(10_000_000, MaxAwardPoints, 100*525_600); got != math.MaxInt64 {
		t.Errorf("MostPoints past int64 = %d, want it saturated", got)
	}
	if got := MostPoints(1000, 10, 3); got != 30_000 {
		t.Errorf("MostPoints = %d", got)
	}
	if got := SumMostPoints(math.MaxInt64-1, 5); got != math.MaxInt64 {
		t.Errorf("SumMostPoints past int64 = %d", got)
	}
}

// Budget checks that added spent and points wrapped to a negative number and so awarded.
func TestDecideBudgetNeverWraps(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r := AwardRule{ID: 1, Type: RuleClick, Points: MaxAwardPoints, Frequency: FrequencyOnce, Budget: MaxBudget}
	if d := r.Decide(now, time.Time{}, History{RuleSpent: math.MaxInt64 - 10}); d.Awarded || !strings.Contains(d.Reason, "rule's points budget") {
		t.Errorf("rule spent near int64: %+v", d)
	}
	r.Budget = 0
	if d := r.Decide(now, time.Time{}, History{IssuerSpent: math.MaxInt64 - 10, IssuerBudget: MaxBudget}); d.Awarded || !strings.Contains(d.Reason, "issuer's points budget") {
		t.Errorf("issuer spent near int64: %+v", d)
	}
	if d := r.Decide(now, time.Time{}, History{IssuerSpent: MaxBudget - MaxAwardPoints, IssuerBudget: MaxBudget}); !d.Awarded || d.Points != MaxAwardPoints {
		t.Errorf("award that just fits: %+v", d)
	}
	// A rule stored before the bounds awards nothing rather than an overflowing sum.
	r.Points = math.MaxInt64
	if d := r.Decide(now, time.Time{}, History{}); d.Awarded || !strings.Contains(d.Reason, "outside 1 to 1000000") {
		t.Errorf("rule past the bound: %+v", d)
	}
}

func TestValidateBoundsPoints(t *testing.T) {
	base := AwardRule{Type: RuleClick, Points: 1, Frequency: FrequencyOnce}
	for _, tc := range []struct {
		name  string
		edit  func(*AwardRule)
		field string // "" for valid
	}{
		{"most points", func(r *AwardRule) { r.Points = MaxAwardPoints }, ""},
		{"past the most points", func(r *AwardRule) { r.Points = MaxAwardPoints + 1 }, "points:"},
		{"int64 points", func(r *AwardRule) { r.Points = math.MaxInt64 }, "points:"},
		{"zero points", func(r *AwardRule) { r.Points = 0 }, "points:"},
		{"most budget", func(r *AwardRule) { r.Budget = MaxBudget }, ""},
		{"past the most budget", func(r *AwardRule) { r.Budget = MaxBudget + 1 }, "budget:"},
		{"negative budget", func(r *AwardRule) { r.Budget = -1 }, "budget:"},
	} {
		r := base
		tc.edit(&r)
		err := r.Validate()
		switch {
		case tc.field == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.field != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.field)):
			t.Errorf("%s: %v, want an error naming %s", tc.name, err, tc.field)
		}
	}
	for _, cost := range []int64{0, MaxBudget + 1, math.MaxInt64} {
		it := CatalogItem{Name: "x", Cost: cost}
		if err := it.Validate(); err == nil || !strings.HasPrefix(err.Error(), "cost:") {
			t.Errorf("cost %d: %v", cost, err)
		}
	}
	if err := CheckBudget("budget", MaxBudget); err != nil {
		t.Errorf("CheckBudget at the bound: %v", err)
	}
}
