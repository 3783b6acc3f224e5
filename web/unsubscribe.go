package web

import (
	"net/http"

	"github.com/go-chi/chi/v5"
)

// unsubscribePage serves GET and HEAD /u/{token}: a page with a button. Fetching it
// unsubscribes nobody, since mail scanners fetch links.
func (s *server) unsubscribePage(w http.ResponseWriter, r *http.Request) {
	token := chi.URLParam(r, "token")
	if s.testToken(token) {
		s.render(w, r, http.StatusOK, testLinkPage("stops all invitations to the consumer"))
		return
	}
	id, err := s.consumerOf(token)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	c, err := s.Consumers.ConsumerByID(r.Context(), id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, unsubscribePage(token, c, false))
}

// unsubscribe serves POST /u/{token}: the page's button, and the RFC 8058 one-click POST a
// mail client sends to the List-Unsubscribe URL with the body List-Unsubscribe=One-Click.
// The signed token is all the authority either needs, so the body is not read: the mail
// client has no cookie or form token to send, and a POST is never sent by a link scanner.
// Unsubscribing twice is harmless; a bounced or suppressed consumer stays so.
func (s *server) unsubscribe(w http.ResponseWriter, r *http.Request) {
	token := chi.URLParam(r, "token")
	if s.testToken(token) {
		s.render(w, r, http.StatusOK, testLinkPage("stops all invitations to the consumer"))
		return
	}
	id, err := s.consumerOf(token)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ctx := r.Context()
	if err := s.Consumers.Unsubscribe(ctx, id); err != nil {
		s.fail(w, r, err)
		return
	}
	c, err := s.Consumers.ConsumerByID(ctx, id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, unsubscribePage(token, c, true))
}
