package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"pointpost/postoffice"
	"pointpost/rewards"
)

// Routes returns every route, by priority then name, each with its quotas. The URLs carry
// their passwords: for the mail servers, never for a page.
func (s *Store) Routes(ctx context.Context) ([]postoffice.Route, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT name, url, connections, rate, priority, warmup, warmup_start
		FROM routes ORDER BY priority, name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []postoffice.Route
	byName := map[string]int{}
	for rows.Next() {
		var r postoffice.Route
		var warmup string
		var warmupStart int64
		if err := rows.Scan(&r.Name, &r.URL, &r.Connections, &r.Rate, &r.Priority, &warmup, &warmupStart); err != nil {
			return nil, err
		}
		if r.Warmup, err = postoffice.ParseWarmup(warmup); err != nil {
			return nil, fmt.Errorf("route %q: %w", r.Name, err)
		}
		if r.Warmup != nil {
			r.Warmup.Start = fromMS(warmupStart)
		}
		byName[r.Name] = len(out)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	qrows, err := s.read.QueryContext(ctx, s.either(`SELECT route, lim, window_ms FROM route_quotas ORDER BY rowid`, `SELECT route, lim, window_ms FROM route_quotas ORDER BY id`))
	if err != nil {
		return nil, err
	}
	defer qrows.Close()
	for qrows.Next() {
		var name string
		var q postoffice.Quota
		var window int64
		if err := qrows.Scan(&name, &q.Limit, &window); err != nil {
			return nil, err
		}
		q.Window = time.Duration(window) * time.Millisecond
		if i, ok := byName[name]; ok {
			out[i].Quotas = append(out[i].Quotas, q)
		}
	}
	return out, qrows.Err()
}

// Route returns one route. Returns rewards.ErrNotFound if there is none by that name.
func (s *Store) Route(ctx context.Context, name string) (*postoffice.Route, error) {
	routes, err := s.Routes(ctx)
	if err != nil {
		return nil, err
	}
	for i := range routes {
		if routes[i].Name == name {
			return &routes[i], nil
		}
	}
	return nil, fmt.Errorf("route %q: %w", name, rewards.ErrNotFound)
}

// SaveRoute adds a route, or replaces the settings and quotas of the one by its name. The
// caller checks the settings (postoffice.ValidateRoute). A warm-up without a start starts
// now, or keeps the start of the one saved.
func (s *Store) SaveRoute(ctx context.Context, r postoffice.Route) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		warmup, warmupStart := "", int64(0)
		if w := r.Warmup; w != nil {
			warmup, warmupStart = w.String(), ms(w.Start)
			if w.Start.IsZero() {
				warmupStart = ms(s.Now())
				var saved int64
				err := tx.QueryRowContext(ctx, `SELECT warmup_start FROM routes WHERE name = ? AND warmup != ''`, r.Name).Scan(&saved)
				if err == nil && saved > 0 {
					warmupStart = saved
				} else if err != nil && !errors.Is(err, sql.ErrNoRows) {
					return err
				}
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO routes (name, url, connections, rate, priority, warmup, warmup_start, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET url = excluded.url, connections = excluded.connections,
				rate = excluded.rate, priority = excluded.priority, warmup = excluded.warmup,
				warmup_start = excluded.warmup_start, updated_at = excluded.updated_at`,
			r.Name, r.URL, r.Connections, r.Rate, r.Priority, warmup, warmupStart, ms(s.Now())); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM route_quotas WHERE route = ?`, r.Name); err != nil {
			return err
		}
		for _, q := range r.Quotas {
			if _, err := tx.ExecContext(ctx, `INSERT INTO route_quotas (route, lim, window_ms) VALUES (?, ?, ?)`,
				r.Name, q.Limit, q.Window.Milliseconds()); err != nil {
				return err
			}
		}
		return nil
	})
}

// RemoveRoute removes a route and what it sent. Returns rewards.ErrNotFound if there is none by
// that name, and rewards.ErrConflict, naming the job, while a job not done is pinned to it (also a
// *postoffice.RouteError on the field name).
func (s *Store) RemoveRoute(ctx context.Context, name string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		var key int64
		err := tx.QueryRowContext(ctx, `SELECT key FROM jobs WHERE route = ? AND state != ? ORDER BY key LIMIT 1`,
			name, postoffice.JobDone).Scan(&key)
		if err == nil {
			return fmt.Errorf("%w: %w", &postoffice.RouteError{Route: name, Field: "name",
				Problem: fmt.Sprintf("job %d is pinned to it", key)}, rewards.ErrConflict)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM routes WHERE name = ?`, name)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			if err == nil {
				err = fmt.Errorf("route %q: %w", name, rewards.ErrNotFound)
			}
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM route_sends WHERE route = ?`, name)
		return err
	})
}

// PinJobRoute pins a job to a route ("" unpins it). Returns rewards.ErrNotFound if either is missing.
func (s *Store) PinJobRoute(ctx context.Context, jobKey int64, route string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if route != "" {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM routes WHERE name = ?`, route).Scan(&n); err != nil {
				return err
			}
			if n == 0 {
				return fmt.Errorf("route %q: %w", route, rewards.ErrNotFound)
			}
		}
		res, err := tx.ExecContext(ctx, `UPDATE jobs SET route = ? WHERE key = ?`, route, jobKey)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			if err == nil {
				err = fmt.Errorf("job %d: %w", jobKey, rewards.ErrNotFound)
			}
			return err
		}
		return nil
	})
}

// RouteSends returns a route's sends since a time, counted by the second (unix time).
func (s *Store) RouteSends(ctx context.Context, route string, since time.Time) (map[int64]int, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT at, n FROM route_sends WHERE route = ? AND at >= ?`,
		route, since.Unix())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[int64]int{}
	for rows.Next() {
		var at int64
		var n int
		if err := rows.Scan(&at, &n); err != nil {
			return nil, err
		}
		out[at] = n
	}
	return out, rows.Err()
}

// routeSendsKept is how long route_sends keeps a second: longer than any quota's window
// a route is likely to have.
const routeSendsKept = 8 * 24 * time.Hour

// countRouteSends adds the sent outcomes to their routes' counts by the second, in tx, and
// forgets seconds older than routeSendsKept.
func countRouteSends(ctx context.Context, tx *sql.Tx, outcomes []postoffice.Outcome) error {
	type key struct {
		route string
		at    int64
	}
	counts := map[key]int{}
	for _, o := range outcomes {
		if o.Kind == postoffice.OutcomeSent && o.Route != "" {
			counts[key{o.Route, o.At.Unix()}]++
		}
	}
	var oldest int64
	for k, n := range counts {
		if _, err := tx.ExecContext(ctx, `INSERT INTO route_sends (route, at, n) VALUES (?, ?, ?)
			ON CONFLICT (route, at) DO UPDATE SET n = route_sends.n + excluded.n`, k.route, k.at, n); err != nil {
			return err
		}
		oldest = max(oldest, k.at)
	}
	if len(counts) > 0 && oldest%600 == 0 { // now and then, not each batch
		_, err := tx.ExecContext(ctx, `DELETE FROM route_sends WHERE at < ?`, oldest-int64(routeSendsKept/time.Second))
		return err
	}
	return nil
}
