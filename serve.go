package main

import (
	"fmt"
	"net"
	"os"
	"time"

	"github.com/spf13/cobra"

	"pointpost/rewards"
)

func serveCommand(e *cli) *cobra.Command {
	cfg := e.config()
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "run the post office, mail servers, web server and SMTP receiver, or one of them (--role)",
		Args:  nArgs(0, 0),
	}
	cfg.serveFlags(cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := cfg.load(cmd.Flags(), e.getenv); err != nil {
			return err
		}
		ctx := cmd.Context()
		log := cfg.logger(os.Stderr)
		var ls listeners
		var err error
		if cfg.httpsOn() {
			if !cfg.given["http"] {
				cfg.HTTP = ":80" // where ACME's HTTP-01 and browsers typing the name arrive
			}
			if ls.tls, err = cfg.newTLS(log); err != nil {
				return err
			}
		}
		// Listening first turns a port 0 into the real one before links are made from it.
		for _, l := range []struct {
			flag string
			addr *string
			ln   *net.Listener
		}{{"http", &cfg.HTTP, &ls.http}, {"smtp", &cfg.SMTP, &ls.smtp}, {"metrics", &cfg.Metrics, &ls.metrics},
			{"https-addr", &cfg.HTTPSAddr, &ls.https}} {
			if (*l.addr == "" && l.flag == "metrics") || (l.flag == "https-addr" && !cfg.httpsOn()) ||
				(l.flag == "smtp" && !cfg.runs(roleReceiver)) {
				continue
			}
			if *l.ln, err = net.Listen("tcp", *l.addr); err != nil {
				return fmt.Errorf("--%s %s: %w", l.flag, *l.addr, err)
			}
			defer (*l.ln).Close()
			*l.addr = (*l.ln).Addr().String()
		}
		if cfg.httpsOn() && !cfg.given["base-url"] && ls.tls.name != "" {
			cfg.BaseURL = "https://" + ls.tls.name
			if _, port, _ := net.SplitHostPort(cfg.HTTPSAddr); port != "443" {
				cfg.BaseURL = "https://" + net.JoinHostPort(ls.tls.name, port)
			}
			cfg.given["base-url"] = true // over the URL the database remembers
		}
		a, err := open(ctx, cfg, log, true)
		if err != nil {
			return err
		}
		defer a.close()
		ls.tls.keepIn(a.store) // before the servers take a handshake
		stopBackups, err := a.startBackups(ctx)
		if err != nil {
			return err
		}
		defer stopBackups()
		if !cfg.runs(roleWeb) {
			return a.serve(ctx, ls, func() {
				replies := ""
				if cfg.runs(roleReceiver) {
					replies = " (replies: smtp://" + cfg.SMTP + ")"
				}
				fmt.Fprintf(e.stdout, "pointpost is running as %s (%s): health http://%s/healthz%s\n", cfg.Role, cfg.Name, cfg.HTTP, replies)
				if ls.metrics != nil {
					fmt.Fprintf(e.stdout, "metrics: http://%s/metrics\n", cfg.Metrics)
				}
			})
		}
		if err := a.store.SetSetting(ctx, settingServedURL, cfg.BaseURL); err != nil {
			return err
		}
		if cfg.Demo {
			if err := a.seedDemo(ctx); err != nil {
				return fmt.Errorf("demo data: %w", err)
			}
		}
		return a.serve(ctx, ls, func() {
			replies := "replies: smtp://" + cfg.SMTP
			if !cfg.runs(roleReceiver) {
				replies = "role web, " + cfg.Name
			}
			if ls.https != nil {
				fmt.Fprintf(e.stdout, "pointpost is running: open %s/ (HTTPS on %s, http://%s/ redirects; %s)\n",
					cfg.BaseURL, cfg.HTTPSAddr, cfg.HTTP, replies)
			} else {
				fmt.Fprintf(e.stdout, "pointpost is running: open http://%s/ (%s)\n", cfg.HTTP, replies)
			}
			if ls.metrics != nil {
				fmt.Fprintf(e.stdout, "metrics: http://%s/metrics\n", cfg.Metrics)
			}
			link, err := rewards.SetupLink(ctx, a.store, a.cfg.BaseURL, time.Now())
			if err != nil {
				log.Error("setup link", "err", err)
			} else if link != "" {
				fmt.Fprintf(e.stdout, "No operator yet: open %s to create the first toolbox account (valid 24 hours, once).\n", link)
			}
		})
	}
	return cmd
}
