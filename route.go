package main

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"pointpost/mailer"
	"pointpost/postoffice"
)

// routeCommand manages the outbound routes kept in the database. A route's password is
// never printed.
func routeCommand(e *cli) *cobra.Command {
	listCfg := e.config()
	list := &cobra.Command{
		Use:   "list",
		Short: "the saved routes with their limits (passwords hidden)",
		Args:  nArgs(0, 0),
		RunE: e.onStore(listCfg, func(cmd *cobra.Command, a *app, _ []string) error {
			routes, err := a.store.Routes(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "%-16s %-8s %-8s %-11s %-24s %s\n", "NAME", "PRIORITY", "RATE", "CONNECTIONS", "QUOTAS", "RELAY")
			for _, r := range routes {
				rate, conns, quotas := "-", "-", "-"
				if r.Rate > 0 {
					rate = strconv.FormatFloat(r.Rate, 'g', -1, 64)
				}
				if r.Connections > 0 {
					conns = strconv.Itoa(r.Connections)
				}
				if len(r.Quotas) > 0 {
					var qs []string
					for _, q := range r.Quotas {
						qs = append(qs, q.String())
					}
					quotas = strings.Join(qs, ",")
				}
				fmt.Fprintf(e.stdout, "%-16s %-8d %-8s %-11s %-24s %s\n", r.Name, r.Priority, rate, conns, quotas, mailer.RedactURL(r.URL))
				if w := r.Warmup; w != nil {
					fmt.Fprintf(e.stdout, "%-16s warm-up %s since %s: %d today\n", "", w, w.Start.Format("2006-01-02"), w.Cap(time.Now()))
				}
			}
			return nil
		}),
	}
	listCfg.dbFlag(list.Flags())
	removeCfg := e.config()
	remove := &cobra.Command{
		Use:   "remove NAME",
		Short: "remove a saved route (refused while a job is pinned to it)",
		Args:  nArgs(1, 1),
		RunE: e.onStore(removeCfg, func(cmd *cobra.Command, a *app, args []string) error {
			return a.store.RemoveRoute(cmd.Context(), args[0])
		}),
	}
	removeCfg.dbFlag(remove.Flags())
	return group("route", "outbound routes: relays with their rate, quotas and connections",
		list, routeEdit(e, "add"), routeEdit(e, "set"), remove)
}

// routeEdit is `route add` (every setting from its flags) or `route set` (only the flags given
// change).
func routeEdit(e *cli, verb string) *cobra.Command {
	cfg := e.config()
	var edit postoffice.Route
	var quotas []string
	var warmup string
	short := "save a new route"
	if verb == "set" {
		short = "change a saved route: only the flags given change"
	}
	cmd := &cobra.Command{
		Use:   verb + " NAME --url URL [--rate N] [--quota N/DURATION]... [--max-connections N] [--priority N] [--warmup SCHEDULE]",
		Short: short,
		Args:  nArgs(1, 1),
	}
	fs := cmd.Flags()
	fs.StringVar(&edit.URL, "url", "", "relay URL, smtp://user:pass@host:port (STARTTLS when offered) or smtps://…")
	fs.Float64Var(&edit.Rate, "rate", 0, "messages a second, across every mail server (default: none)")
	fs.StringArrayVar(&quotas, "quota", nil, "at most N messages in any DURATION, as 50000/24h; repeatable")
	fs.IntVar(&edit.Connections, "max-connections", 0, "most connections open at once; 0: no limit")
	fs.IntVar(&edit.Priority, "priority", 0, "lower goes first")
	fs.StringVar(&warmup, "warmup", "", `a daily cap that grows, as "500/day doubling every 2 days up to 50000"; "" for none`)
	cfg.dbFlag(fs)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if fs.Changed("rate") && !(edit.Rate > 0 && !math.IsInf(edit.Rate, 0)) {
			return fmt.Errorf("--rate %v: must be a number of messages a second, more than 0", edit.Rate)
		}
		edit.Quotas = nil
		for _, q := range quotas {
			quota, err := postoffice.ParseQuota(q)
			if err != nil {
				return fmt.Errorf("--quota %q: %w", q, err)
			}
			edit.Quotas = append(edit.Quotas, quota)
		}
		var err error
		if edit.Warmup, err = postoffice.ParseWarmup(warmup); err != nil {
			return fmt.Errorf("--warmup: %w", err)
		}
		a, err := e.openStore(cmd, cfg)
		if err != nil {
			return err
		}
		defer a.close()
		ctx := cmd.Context()
		r, err := editedRoute(ctx, a, verb, args[0], edit, fs)
		if err != nil {
			return err
		}
		if err := postoffice.ValidateRoute(r); err != nil {
			return err
		}
		if err := a.store.SaveRoute(ctx, r); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "route %s: %s; restart serve for the mail servers to use it\n", r.Name, mailer.RedactURL(r.URL))
		return nil
	}
	return cmd
}

// editedRoute is the route NAME as `route add` or `route set` leaves it.
func editedRoute(ctx context.Context, a *app, verb, name string, edit postoffice.Route, fs *pflag.FlagSet) (postoffice.Route, error) {
	if verb == "add" {
		if _, err := a.store.Route(ctx, name); err == nil {
			return postoffice.Route{}, fmt.Errorf("route %q exists: use route set", name)
		}
		if !fs.Changed("url") {
			return postoffice.Route{}, fmt.Errorf("route %q: url: required", name)
		}
		edit.Name = name
		return edit, nil
	}
	old, err := a.store.Route(ctx, name)
	if err != nil {
		return postoffice.Route{}, err
	}
	r := *old
	if fs.Changed("url") {
		r.URL = edit.URL
	}
	if fs.Changed("rate") {
		r.Rate = edit.Rate
	}
	if fs.Changed("quota") {
		r.Quotas = edit.Quotas
	}
	if fs.Changed("max-connections") {
		r.Connections = edit.Connections
	}
	if fs.Changed("priority") {
		r.Priority = edit.Priority
	}
	if fs.Changed("warmup") {
		r.Warmup = edit.Warmup
	}
	return r, nil
}

// routeDesk manages the routes for the toolbox: saved in the store, and put to work in
// this process's Router, when it has one, as soon as they change.
type routeDesk struct {
	a *app
}

func (d routeDesk) Routes(ctx context.Context) ([]postoffice.Route, error) {
	return d.a.store.Routes(ctx)
}

func (d routeDesk) SaveRoute(ctx context.Context, r postoffice.Route) error {
	if err := postoffice.ValidateRoute(r); err != nil {
		return err
	}
	if err := d.a.store.SaveRoute(ctx, r); err != nil {
		return err
	}
	return d.reload(ctx)
}

func (d routeDesk) RemoveRoute(ctx context.Context, name string) error {
	if err := d.a.store.RemoveRoute(ctx, name); err != nil {
		return err
	}
	return d.reload(ctx)
}

func (d routeDesk) RouteStatus(context.Context) []postoffice.RouteState {
	if d.a.router == nil {
		return nil
	}
	return d.a.router.Status()
}

// reload puts the saved routes (and the flags' route) to work in the Router.
func (d routeDesk) reload(ctx context.Context) error {
	if d.a.router == nil {
		return nil
	}
	routes, err := d.a.cfg.routes(ctx, d.a.store)
	if err != nil {
		return err
	}
	return d.a.router.Reload(ctx, routes)
}
