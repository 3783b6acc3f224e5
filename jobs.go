package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"

	"github.com/spf13/cobra"

	"pointpost/postoffice"
)

func campaignCommand(e *cli) *cobra.Command {
	cfg := e.config()
	create := &cobra.Command{
		Use:   "create FILE.json",
		Short: "define a job from a campaign file; prints its job key",
		Args:  nArgs(1, 1),
		RunE: e.onStore(cfg, func(cmd *cobra.Command, a *app, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			c, err := postoffice.ReadCampaign(f)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			job, _, err := a.po.CreateJob(cmd.Context(), c)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			fmt.Fprintln(e.stdout, job.Key)
			return nil
		}),
	}
	cfg.dbFlag(create.Flags())
	return group("campaign", "define campaigns", create)
}

func jobCommand(e *cli) *cobra.Command {
	list := &cobra.Command{
		Use:   "list",
		Short: "every job with its state and counts",
		Args:  nArgs(0, 0),
	}
	cfg := e.config()
	cfg.dbFlag(list.Flags())
	list.RunE = func(cmd *cobra.Command, _ []string) error {
		a, err := e.openStore(cmd, cfg)
		if err != nil {
			return err
		}
		defer a.close()
		ctx := cmd.Context()
		jobs, err := a.store.Jobs(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%-6s %-10s %-9s %-24s %9s %9s %s\n", "KEY", "ISSUER", "STATE", "NAME", "SELECTED", "SENT", "SERVER")
		for _, j := range jobs {
			counts, err := a.store.JobCounts(ctx, j.Key)
			if err != nil {
				return err
			}
			state := string(j.State)
			if j.Suspended {
				state += "*"
			}
			fmt.Fprintf(e.stdout, "%-6d %-10s %-9s %-24.24s %9d %9d %d\n", j.Key, j.IssuerSlug, state, j.Name, j.Selected, counts.Sent, j.MailServerID)
		}
		return nil
	}
	show := jobVerb(e, "show", "a job and its counts, as JSON", func(ctx context.Context, a *app, key int64) error {
		job, err := a.store.Job(ctx, key)
		if err != nil {
			return err
		}
		counts, err := a.store.JobCounts(ctx, key)
		if err != nil {
			return err
		}
		out := map[string]any{"job": job, "counts": counts}
		// A job held by our own limits says why and until when, as its mail server reported.
		servers, err := a.store.MailServers(ctx)
		if err != nil {
			return err
		}
		for _, ms := range servers {
			if ms.ID == job.MailServerID && ms.Note != "" && job.State == postoffice.JobRunning {
				out["waiting"] = ms.Note
			}
		}
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	})
	return group("job", "list, inspect and steer jobs", list, show,
		jobVerb(e, "suspend", "set a job's suspend flag: its mail server halts within a second", func(ctx context.Context, a *app, key int64) error { return a.po.Suspend(ctx, key) }),
		jobVerb(e, "resume", "clear a job's suspend flag", func(ctx context.Context, a *app, key int64) error { return a.po.Resume(ctx, key) }),
		jobVerb(e, "stop", "end a job now: nothing more is sent for it", func(ctx context.Context, a *app, key int64) error { return a.po.Stop(ctx, key) }),
		jobVerb(e, "schedule", "move a draft job to scheduled: it starts at its start date", func(ctx context.Context, a *app, key int64) error { return a.po.Schedule(ctx, key) }),
		jobPin(e),
	)
}

// jobVerb is a job subcommand that acts on the job KEY.
func jobVerb(e *cli, verb, short string, act func(context.Context, *app, int64) error) *cobra.Command {
	cfg := e.config()
	cmd := &cobra.Command{
		Use:   verb + " KEY",
		Short: short,
		Args:  nArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			key, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil {
				return fmt.Errorf("job key %q is not a number", args[0])
			}
			a, err := e.openStore(cmd, cfg)
			if err != nil {
				return err
			}
			defer a.close()
			return act(cmd.Context(), a, key)
		},
	}
	cfg.dbFlag(cmd.Flags())
	return cmd
}

// jobPin sends a job by one route alone ("" for any): the mail server ID of FIG. 4's control
// table, as routes have made it.
func jobPin(e *cli) *cobra.Command {
	cfg := e.config()
	cmd := &cobra.Command{
		Use:   "pin KEY ROUTE",
		Short: `send a job by that route alone ("" for any)`,
		Args:  nArgs(2, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			key, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil {
				return fmt.Errorf("job key %q is not a number", args[0])
			}
			a, err := e.openStore(cmd, cfg)
			if err != nil {
				return err
			}
			defer a.close()
			return a.store.PinJobRoute(cmd.Context(), key, args[1])
		},
	}
	cfg.dbFlag(cmd.Flags())
	return cmd
}
