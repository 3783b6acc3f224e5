package toolbox

import (
	"context"

	"github.com/go-chi/chi/v5"
)

// SettingsStore keeps the operators' settings.
type SettingsStore interface {
	Setting(ctx context.Context, name string) (string, error)
}

// authRoutes are the pages reached without a session: login, logout, setting a password
// from a one-time link.
func (d Deps) authRoutes(r chi.Router) {}

// profileRoutes are the signed-in user's own pages: profile, password, API keys.
func (d Deps) profileRoutes(r chi.Router) {}

// adminRoutes are the operators' pages for issuers, users and settings.
func (d Deps) adminRoutes(r chi.Router) {}
