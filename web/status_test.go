package web_test

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"pointpost/postoffice"
	"pointpost/rewards"
	"pointpost/web"
)

// TestStatus: each code answers its own status, wrapped or not; an error without a code is
// 500.
func TestStatus(t *testing.T) {
	for _, c := range []struct {
		err  error
		want int
	}{
		{nil, http.StatusOK},
		{rewards.Errorf(rewards.EINVALID, "bad"), http.StatusBadRequest},
		{rewards.Errorf(rewards.EUNAUTHORIZED, "who"), http.StatusUnauthorized},
		{rewards.Errorf(rewards.EFORBIDDEN, "no"), http.StatusForbidden},
		{fmt.Errorf("job 7: %w", rewards.ErrNotFound), http.StatusNotFound},
		{fmt.Errorf("user x: %w", rewards.ErrExists), http.StatusConflict},
		{fmt.Errorf("job 7: %w", rewards.ErrConflict), http.StatusConflict},
		{fmt.Errorf("select: %w", postoffice.ErrTooManySelections), http.StatusTooManyRequests},
		{&rewards.Error{Code: rewards.EUNAVAILABLE, Message: "busy", Err: errors.New("database is locked")}, http.StatusServiceUnavailable},
		{rewards.Errorf(rewards.EINTERNAL, "oops"), http.StatusInternalServerError},
		{errors.New("disk on fire"), http.StatusInternalServerError},
	} {
		if got := web.Status(c.err); got != c.want {
			t.Errorf("Status(%v) = %d, want %d", c.err, got, c.want)
		}
	}
	if m := rewards.ErrorMessage(errors.New("secret detail")); m != "internal error" {
		t.Errorf("message of an uncoded error: %q, want internal error", m)
	}
	if m := rewards.ErrorMessage(fmt.Errorf("job 7: %w", rewards.ErrNotFound)); m != "not found" {
		t.Errorf("message of a wrapped not-found: %q", m)
	}
}
