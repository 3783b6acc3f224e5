package toolbox

import "github.com/go-chi/chi/v5"

// apiRoutes serve the JSON API, authenticated by API key.
func (d Deps) apiRoutes(r chi.Router) {}
