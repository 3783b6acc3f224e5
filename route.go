package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"pointpost/mailer"
	"pointpost/postoffice"
)

const routeUsage = `usage: pointpost route list
       pointpost route add NAME --url URL [--rate N] [--quota N/DURATION]... [--max-connections N] [--priority N]
       pointpost route set NAME [--url URL] [--rate N] [--quota N/DURATION]... [--max-connections N] [--priority N]
       pointpost route remove NAME`

// routeCommand manages the outbound routes kept in the database. A route's password is
// never printed.
func routeCommand(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New(routeUsage)
	}
	verb, args := args[0], args[1:]
	name := ""
	if verb != "list" {
		if len(args) == 0 || strings.HasPrefix(args[0], "-") {
			return errors.New(routeUsage)
		}
		name, args = args[0], args[1:]
	}
	var cfg Config
	fs := flag.NewFlagSet("pointpost route "+verb, flag.ContinueOnError)
	cfg.flags(fs, getenv)
	var edit postoffice.Route
	set := map[string]bool{}
	if verb == "add" || verb == "set" {
		fs.StringVar(&edit.URL, "url", "", "relay URL, smtp://user:pass@host:port (STARTTLS when offered) or smtps://…")
		fs.Func("rate", "messages a second, across every mail server (default: none)", func(v string) error {
			r, err := strconv.ParseFloat(v, 64)
			if err != nil || !(r > 0) || math.IsInf(r, 0) {
				return errors.New("must be a number of messages a second, more than 0")
			}
			edit.Rate = r
			return nil
		})
		fs.Func("quota", "at most N messages in any DURATION, as 50000/24h; repeatable", func(v string) error {
			q, err := mailer.ParseQuota(v)
			edit.Quotas = append(edit.Quotas, q)
			return err
		})
		fs.IntVar(&edit.Connections, "max-connections", 0, "most connections open at once; 0: no limit")
		fs.IntVar(&edit.Priority, "priority", 0, "lower goes first")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return errors.New(routeUsage)
	}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	a, err := open(ctx, &cfg, cfg.logger(io.Discard), false)
	if err != nil {
		return err
	}
	defer a.close()
	switch verb {
	case "list":
		routes, err := a.store.Routes(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%-16s %-8s %-8s %-11s %-24s %s\n", "NAME", "PRIORITY", "RATE", "CONNECTIONS", "QUOTAS", "RELAY")
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
			fmt.Fprintf(stdout, "%-16s %-8d %-8s %-11s %-24s %s\n", r.Name, r.Priority, rate, conns, quotas, mailer.RedactURL(r.URL))
		}
		return nil
	case "add", "set":
		r := edit
		r.Name = name
		if verb == "add" {
			if _, err := a.store.Route(ctx, name); err == nil {
				return fmt.Errorf("route %q exists: use route set", name)
			}
			if !set["url"] {
				return fmt.Errorf("route %q: url: required", name)
			}
		} else {
			old, err := a.store.Route(ctx, name)
			if err != nil {
				return err
			}
			r = *old // only what is given changes
			if set["url"] {
				r.URL = edit.URL
			}
			if set["rate"] {
				r.Rate = edit.Rate
			}
			if set["quota"] {
				r.Quotas = edit.Quotas
			}
			if set["max-connections"] {
				r.Connections = edit.Connections
			}
			if set["priority"] {
				r.Priority = edit.Priority
			}
		}
		if err := mailer.ValidateRoute(r); err != nil {
			return err
		}
		if err := a.store.SaveRoute(ctx, r); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "route %s: %s; restart serve for the mail servers to use it\n", r.Name, mailer.RedactURL(r.URL))
		return nil
	case "remove":
		return a.store.RemoveRoute(ctx, name)
	}
	return errors.New(routeUsage)
}
