package toolbox

import "github.com/go-chi/chi/v5"

// CampaignStore is what the campaign editor and the award-rule pages read and change.
type CampaignStore interface{}

// TestSender sends a job's message, rendered for a sample consumer, to one address.
type TestSender interface{}

func (d Deps) campaignRoutes(r chi.Router) {}

func (d Deps) ruleRoutes(r chi.Router) {}
