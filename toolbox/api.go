package toolbox

import "github.com/go-chi/chi/v5"

// APIStore is what the JSON API reads and changes beyond the other areas' stores.
type APIStore interface{}

// apiRoutes serve the JSON API, authenticated by API key.
func (d Deps) apiRoutes(r chi.Router) {}
