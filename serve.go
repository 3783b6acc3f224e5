package main

import (
	"fmt"
	"net"
	"os"
	"time"

	"github.com/spf13/cobra"

	"pointpost/toolbox"
)

func serveCommand(e *cli) *cobra.Command {
	cfg := e.config()
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "run the post office, mail servers, web server and SMTP receiver",
		Args:  nArgs(0, 0),
	}
	cfg.serveFlags(cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := cfg.load(cmd.Flags(), e.getenv); err != nil {
			return err
		}
		ctx := cmd.Context()
		log := cfg.logger(os.Stderr)
		// Listening first turns a port 0 into the real one before links are made from it.
		var ls listeners
		var err error
		for _, l := range []struct {
			flag string
			addr *string
			ln   *net.Listener
		}{{"http", &cfg.HTTP, &ls.http}, {"smtp", &cfg.SMTP, &ls.smtp}, {"metrics", &cfg.Metrics, &ls.metrics}} {
			if *l.addr == "" && l.flag == "metrics" {
				continue
			}
			if *l.ln, err = net.Listen("tcp", *l.addr); err != nil {
				return fmt.Errorf("--%s %s: %w", l.flag, *l.addr, err)
			}
			defer (*l.ln).Close()
			*l.addr = (*l.ln).Addr().String()
		}
		a, err := open(ctx, cfg, log, true)
		if err != nil {
			return err
		}
		defer a.close()
		if err := a.store.SetSetting(ctx, settingServedURL, cfg.BaseURL); err != nil {
			return err
		}
		if cfg.Demo {
			if err := a.seedDemo(ctx); err != nil {
				return fmt.Errorf("demo data: %w", err)
			}
		}
		return a.serve(ctx, ls, func() {
			fmt.Fprintf(e.stdout, "pointpost is running: open http://%s/ (replies: smtp://%s)\n", cfg.HTTP, cfg.SMTP)
			if ls.metrics != nil {
				fmt.Fprintf(e.stdout, "metrics: http://%s/metrics\n", cfg.Metrics)
			}
			link, err := toolbox.SetupLink(ctx, a.store, a.store, a.cfg.BaseURL, time.Now())
			if err != nil {
				log.Error("setup link", "err", err)
			} else if link != "" {
				fmt.Fprintf(e.stdout, "No operator yet: open %s to create the first toolbox account (valid 24 hours, once).\n", link)
			}
		})
	}
	return cmd
}
