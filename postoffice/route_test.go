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
