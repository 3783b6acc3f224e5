package rewards

import (
	"errors"
	"reflect"
	"testing"
	"unicode/utf8"
)

func demo(t *testing.T, n int, seed int64) []Consumer {
	t.Helper()
	var out []Consumer
	if err := DemoConsumers(n, seed, func(c Consumer) error {
		out = append(out, c)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDemoConsumersDeterministic(t *testing.T) {
	a, b := demo(t, 500, 7), demo(t, 500, 7)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("same seed, different consumers")
	}
	if c := demo(t, 500, 8); reflect.DeepEqual(a, c) {
		t.Fatal("different seeds, same consumers")
	}
}

func TestDemoConsumersVaried(t *testing.T) {
	const n = 20000
	cs := demo(t, n, 1)
	if len(cs) != n {
		t.Fatalf("%d consumers, want %d", len(cs), n)
	}
	emails := make(map[string]bool, n)
	countries := map[string]int{}
	formats := map[Format]int{}
	statuses := map[ConsumerStatus]int{}
	plans := map[string]int{}
	nonASCII, userN := 0, 0
	for _, c := range cs {
		got, err := ValidEmail(c.Email)
		if err != nil || got != c.Email {
			t.Fatalf("email %q: %q, %v", c.Email, got, err)
		}
		for i := 0; i < len(c.Email); i++ {
			if c.Email[i] >= utf8.RuneSelf {
				t.Fatalf("email %q is not ASCII", c.Email)
			}
		}
		if emails[c.Email] {
			t.Fatalf("email %q twice", c.Email)
		}
		emails[c.Email] = true
		if c.Email[:5] == "user-" {
			userN++
		}
		if len(c.FirstName+c.LastName) != utf8.RuneCountInString(c.FirstName+c.LastName) {
			nonASCII++
		}
		if c.FirstName == "" || c.LastName == "" || c.City == "" || c.Region == "" || c.PostalCode == "" {
			t.Fatalf("incomplete %+v", c)
		}
		if c.BirthYear < 1940 || c.BirthYear > 2008 {
			t.Fatalf("birth year %d", c.BirthYear)
		}
		if len(c.Interests) < 1 || len(c.Interests) > 4 || !reflect.DeepEqual(NormalizeInterests(c.Interests), c.Interests) {
			t.Fatalf("interests %q", c.Interests)
		}
		if _, err := ParseFormat(string(c.Format)); err != nil || c.Format == "" {
			t.Fatalf("format %q", c.Format)
		}
		countries[c.Country]++
		formats[c.Format]++
		statuses[c.Status]++
		plans[c.Attributes["plan"]]++
		if c.Attributes["segment"] == "" {
			t.Fatalf("no segment: %+v", c.Attributes)
		}
	}
	for _, cc := range []string{"US", "CA", "GB", "DE", "FR", "JP", "PL"} {
		if countries[cc] == 0 {
			t.Errorf("no consumers in %s", cc)
		}
	}
	if html := float64(formats[FormatHTML]) / n; html < 0.55 || html > 0.65 {
		t.Errorf("html share %.2f, want about 0.6", html)
	}
	if nonASCII < n/10 || userN == 0 {
		t.Errorf("%d non-ASCII names, %d user-N addresses", nonASCII, userN)
	}
	if statuses[StatusActive] < n*95/100 || statuses[StatusUnsubscribed] == 0 || statuses[StatusBounced] == 0 {
		t.Errorf("statuses %v", statuses)
	}
	if plans["gold"] == 0 || plans["silver"] == 0 || plans["bronze"] == 0 || len(plans) != 3 {
		t.Errorf("plans %v", plans)
	}
}

func TestDemoConsumersStopsOnError(t *testing.T) {
	stop := errors.New("stop")
	calls := 0
	err := DemoConsumers(100, 1, func(Consumer) error {
		calls++
		if calls == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || calls != 3 {
		t.Fatalf("err %v after %d calls", err, calls)
	}
}

func BenchmarkDemoConsumers(b *testing.B) {
	for b.Loop() {
		_ = DemoConsumers(10000, 1, func(Consumer) error { return nil })
	}
	b.ReportMetric(float64(10000*b.N)/b.Elapsed().Seconds(), "consumers/s")
}
