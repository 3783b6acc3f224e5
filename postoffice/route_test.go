package postoffice

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestValidateRoute(t *testing.T) {
	good := Route{Name: "ses", URL: "smtps://user:pw@email-smtp.example:465", Rate: 14,
		Quotas: []Quota{{Limit: 50000, Window: 24 * time.Hour}}}
	if err := ValidateRoute(good); err != nil {
		t.Fatalf("a good route: %v", err)
	}
	cases := []struct {
		change func(*Route)
		field  string
	}{
		{func(r *Route) { r.Name = "" }, "name"},
		{func(r *Route) { r.Name = "Big Name" }, "name"},
		{func(r *Route) { r.URL = "http://relay.example" }, "url"},
		{func(r *Route) { r.URL = "smtp://" }, "url"},
		{func(r *Route) { r.URL = "" }, "url"},
		{func(r *Route) { r.URL = "smtp://u:p%zz@relay.example" }, "url"},
		{func(r *Route) { r.Rate = -1 }, "rate"},
		{func(r *Route) { r.Rate = math.NaN() }, "rate"},
		{func(r *Route) { r.Connections = -2 }, "connections"},
		{func(r *Route) { r.Quotas = []Quota{{Limit: 5, Window: 0}} }, "quota 1"},
		{func(r *Route) { r.Quotas = append(r.Quotas, Quota{Limit: 0, Window: time.Hour}) }, "quota 2"},
		{func(r *Route) { r.Priority = -1 }, "priority"},
	}
	for _, tc := range cases {
		r := good
		r.Quotas = append([]Quota(nil), good.Quotas...)
		tc.change(&r)
		err := ValidateRoute(r)
		var re *RouteError
		if !errors.As(err, &re) || re.Field != tc.field {
			t.Errorf("ValidateRoute(%+v) = %v, want an error naming %s", r, err, tc.field)
		}
		if err != nil && strings.Contains(err.Error(), ":pw@") {
			t.Errorf("the error %q shows the password", err)
		}
	}
}

func TestParseQuota(t *testing.T) {
	for in, want := range map[string]Quota{
		"50000/24h": {Limit: 50000, Window: 24 * time.Hour},
		" 30/1m ":   {Limit: 30, Window: time.Minute},
	} {
		if got, err := ParseQuota(in); err != nil || got != want {
			t.Errorf("ParseQuota(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "50000", "0/24h", "-1/1h", "10/0s", "10/-1h", "x/1h", "10/day"} {
		if _, err := ParseQuota(in); err == nil {
			t.Errorf("ParseQuota(%q) succeeded", in)
		}
	}
}

func TestWarmup(t *testing.T) {
	w, err := ParseWarmup("500/day doubling every 2 days up to 50000")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	w.Start = start
	for day, want := range map[int]int{0: 500, 1: 500, 2: 1000, 3: 1000, 4: 2000, 12: 32000, 14: 50000, 400: 50000} {
		if got := w.Cap(start.Add(time.Duration(day)*24*time.Hour + time.Hour)); got != want {
			t.Errorf("day %d: cap %d, want %d", day, got, want)
		}
	}
	if got := w.Cap(start.Add(-time.Hour)); got != 500 {
		t.Errorf("before the start: cap %d, want the first day's 500", got)
	}
	if w.String() != "500/day doubling every 2 days up to 50000" {
		t.Errorf("String() = %q", w)
	}
	slow, err := ParseWarmup("100/day x1.5 every 1 day up to 1000")
	if err != nil || slow.Factor != 1.5 || slow.EveryDays != 1 || slow.Cap(slow.Start.Add(49*time.Hour)) != 225 {
		t.Errorf("x1.5 warm-up %+v, %v", slow, err)
	}
	if none, err := ParseWarmup("  "); none != nil || err != nil {
		t.Errorf("empty warm-up = %+v, %v", none, err)
	}
	for _, in := range []string{"500", "500/day doubling", "500/week up to 9", "x/day up to 5"} {
		if _, err := ParseWarmup(in); err == nil {
			t.Errorf("ParseWarmup(%q) succeeded", in)
		}
	}
	good := Route{Name: "ses", URL: "smtp://relay.example"}
	for _, bad := range []Warmup{{First: 0, Factor: 2, EveryDays: 1, Max: 10}, {First: 10, Factor: 2, EveryDays: 1, Max: 5},
		{First: 1, Factor: 0.5, EveryDays: 1, Max: 5}, {First: 1, Factor: 2, EveryDays: 0, Max: 5}} {
		r := good
		r.Warmup = &bad
		var re *RouteError
		if err := ValidateRoute(r); !errors.As(err, &re) || re.Field != "warmup" {
			t.Errorf("warm-up %+v: %v, want an error naming warmup", bad, err)
		}
	}
}
