package web_test

import (
	"net/http"
	"strings"
	"testing"

	"pointpost/rewards"
	"pointpost/web/pagetest"
)

// A test message's links (job 0, consumer 0: see mailer.TestSends) answer a page saying it
// was a test, and earn or change nothing.
func TestTestMessageLinksSayItIsATestAndDoNothing(t *testing.T) {
	w := newWorld(t)
	tok := w.keys.Encode(0, 0)
	for _, path := range []string{"/i/" + tok, "/a/" + tok, "/u/" + tok} {
		for _, post := range []bool{false, true} {
			var p *page
			if post {
				p = w.post(path, nil)
			} else {
				p = w.get(path)
			}
			p.want(t, http.StatusOK)
			if got := pagetest.Text(p.one(t, "test-link-what")); !strings.Contains(got, "A test earns no points and changes nothing") {
				t.Errorf("%s (post %v): %q", path, post, got)
			}
			if p.has("thanks") || p.has("submit-form") || p.has("unsubscribe-form") {
				t.Errorf("%s (post %v) shows a real page's parts", path, post)
			}
		}
	}
	w.assertNothingRecorded(w.ann)
	if c := w.consumer("ann@example.com"); c.Status != rewards.StatusActive {
		t.Fatalf("a test link changed her status: %s", c.Status)
	}
}
