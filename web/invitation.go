package web

import (
	"net/http"
	"strings"

	"github.com/a-h/templ"
	"github.com/go-chi/chi/v5"

	"pointpost/postoffice"
	"pointpost/rewards"
)

// invitation serves GET and HEAD of /i/{token} and /a/{token}: the earning invitation as a
// web page, written from the same message entry as the e-mail (claim 12), with its Submit
// button. It records nothing: mail scanners and link previews fetch these URLs.
func (s *server) invitation(w http.ResponseWriter, r *http.Request) {
	token := chi.URLParam(r, "token")
	if s.testToken(token) {
		s.render(w, r, http.StatusOK, testLinkPage("shows the invitation with its Submit button"))
		return
	}
	if !s.deliveryToken(token) {
		s.invalidLink(w, r)
		return
	}
	inv, err := s.PostOffice.Invitation(r.Context(), token)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, invitationPage(inv, strings.HasPrefix(r.URL.Path, "/a/")))
}

// acknowledge serves POST /i/{token} and /a/{token}: the Submit button (FIG. 9). The
// thank-you page is shown only once Acknowledge has committed; a database that could not
// commit gets "please try again", never thanks.
func (s *server) acknowledge(w http.ResponseWriter, r *http.Request) {
	token := chi.URLParam(r, "token")
	if s.testToken(token) {
		s.render(w, r, http.StatusOK, testLinkPage("collects the invitation's points"))
		return
	}
	if !s.deliveryToken(token) {
		s.invalidLink(w, r)
		return
	}
	res, err := s.PostOffice.Acknowledge(r.Context(), token, postoffice.ChannelClick, "http "+s.TrustedProxies.ClientIP(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, thanksPage(thanksFor(res, s.PostOffice.AccountToken(res.ConsumerID))))
}

// deliveryToken reports whether token verifies and names a delivery: account tokens (job
// 0) and enrollment tokens name no invitation.
func (s *server) deliveryToken(token string) bool {
	job, _, err := s.PostOffice.Tokens().Decode(token)
	return err == nil && job != 0 && job != EnrollmentJobKey
}

// testToken reports whether token is a test message's: job 0 and consumer 0, which no
// delivery and no account has (see mailer.TestSends and the toolbox's preview).
func (s *server) testToken(token string) bool {
	job, consumer, err := s.PostOffice.Tokens().Decode(token)
	return err == nil && job == 0 && consumer == 0
}

// thanks is what the thank-you page shows.
type thanks struct {
	Points int64
	// Declined are the rules that awarded nothing, each with its reason.
	Declined []rewards.Decision
	// NoRules is set when the invitation has no rule for a click at all.
	NoRules bool
	JobName string
	// NextURL is the rule's success URL, or else its issuer URL; empty when neither is an
	// http(s) URL.
	NextURL      templ.SafeURL
	AccountToken string
}

// thanksFor is the thank-you page of an acknowledgement's result.
func thanksFor(res *postoffice.AckResult, accountToken string) thanks {
	t := thanks{Points: res.Points(), NoRules: len(res.Decisions) == 0, JobName: res.JobName, AccountToken: accountToken}
	for _, d := range res.Decisions {
		if !d.Awarded {
			t.Declined = append(t.Declined, d)
		}
	}
	for _, u := range []string{res.SuccessURL, res.IssuerURL} {
		if httpURL(u) {
			t.NextURL = templ.SafeURL(u)
			break
		}
	}
	return t
}

// httpURL reports whether u is an absolute http or https URL, the only kind a rule may name
// and the only kind worth a link.
func httpURL(u string) bool {
	l := strings.ToLower(u)
	return strings.HasPrefix(l, "https://") || strings.HasPrefix(l, "http://")
}

// invitationDocument is the invitation's HTML for the sandboxed frame. Its links open in a
// new tab, since a sandboxed frame may not navigate the page around it.
func invitationDocument(body string) templ.Component {
	return templ.Raw(`<base target="_blank">` + body)
}
