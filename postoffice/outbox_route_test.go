package postoffice_test

import (
	"errors"
	"testing"

	"pointpost/postoffice"
)

func TestValidateRouteTakesTheOutbox(t *testing.T) {
	if err := postoffice.ValidateRoute(postoffice.Route{Name: "demo", URL: postoffice.OutboxURL, Rate: 50}); err != nil {
		t.Errorf("the outbox route: %v", err)
	}
	for _, url := range []string{"outbox://x", "outbox:x", "file:///tmp/out"} {
		var re *postoffice.RouteError
		if err := postoffice.ValidateRoute(postoffice.Route{Name: "demo", URL: url}); !errors.As(err, &re) || re.Field != "url" {
			t.Errorf("url %q: %v, want refused", url, err)
		}
	}
}
