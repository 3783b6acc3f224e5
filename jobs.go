package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"pointpost/postoffice"
	"pointpost/toolbox"
)

func campaignCommand(e *cli) *cobra.Command {
	cfg := e.config()
	var overBudget bool
	create := &cobra.Command{
		Use:   "create FILE.json",
		Short: "define a job from a campaign file; prints its job key",
		Long: "Define a job from a campaign file and print its job key. A campaign that is not a draft is\n" +
			"scheduled as `job schedule` schedules it: over its issuer's budget it is kept as a draft\n" +
			"unless --over-budget is given.",
		Args: nArgs(1, 1),
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
			// A job to be scheduled is checked as a draft first, then scheduled as `job
			// schedule` schedules it, against its issuer's budget.
			schedule := !c.Draft
			if schedule {
				if err := c.Validate(); err != nil {
					return fmt.Errorf("%s: %w", args[0], err)
				}
				c.Draft = true
			}
			job, _, err := a.po.CreateJob(cmd.Context(), c)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			fmt.Fprintln(e.stdout, job.Key)
			if !schedule {
				return nil
			}
			return e.schedule(cmd.Context(), a, job.Key, overBudget)
		}),
	}
	cfg.dbFlag(create.Flags())
	overBudgetFlag(create.Flags(), &overBudget)
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
		jobSchedule(e),
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

// jobSchedule moves a draft to scheduled, as an operator: over its issuer's budget only with
// --over-budget.
func jobSchedule(e *cli) *cobra.Command {
	var overBudget bool
	cmd := jobVerb(e, "schedule", "move a draft job to scheduled: it starts at its start date", func(ctx context.Context, a *app, key int64) error {
		return e.schedule(ctx, a, key, overBudget)
	})
	cmd.Long = "Move a draft job to scheduled: it starts at its start date. A job whose worst case exceeds\n" +
		"what is left of its issuer's budget is refused unless --over-budget is given; the job then\n" +
		"records who scheduled it so (the operating system's user) and when."
	overBudgetFlag(cmd.Flags(), &overBudget)
	return cmd
}

func overBudgetFlag(fs *pflag.FlagSet, v *bool) {
	fs.BoolVar(v, "over-budget", false, "schedule even if the job may award more than its issuer's budget left (the override is recorded with your user name)")
}

// schedule schedules the draft job key as an operator in the toolbox does: a job whose worst
// case exceeds what is left of its issuer's budget is refused, with the figures, unless
// overBudget is set, and the job then records the user who ran the command.
func (e *cli) schedule(ctx context.Context, a *app, key int64, overBudget bool) error {
	job, err := a.store.Job(ctx, key)
	if err != nil {
		return err
	}
	if job.State != postoffice.JobDraft {
		return a.po.Schedule(ctx, key) // refused in the post office's words
	}
	by := ""
	if overBudget {
		by = "command line user " + e.osUser()
	}
	err = toolbox.ScheduleAsOperator(ctx, a.store, a.po, job, overBudget, by)
	var over *toolbox.OverBudgetError
	if errors.As(err, &over) {
		return fmt.Errorf("job %d may award up to %d points, %d more than the %d left of issuer %s's budget: it is kept as a draft. "+
			"Lower its client count or its rules' points, raise the budget (`pointpost issuer budget %s POINTS`), "+
			"or schedule it anyway with `pointpost job schedule %d --over-budget` (the override is recorded with your user name)",
			key, over.Most, over.Most-over.Left, over.Left, job.IssuerSlug, job.IssuerSlug, key)
	}
	if err != nil {
		return err
	}
	if got, err := a.store.Job(ctx, key); err == nil && got.BudgetOverride.By != "" {
		fmt.Fprintf(e.stdout, "job %d scheduled over issuer %s's budget; recorded: by %s at %s\n",
			key, job.IssuerSlug, got.BudgetOverride.By, got.BudgetOverride.At.UTC().Format(time.RFC3339))
	}
	return nil
}

// osUser names who runs the command for the records: the operating system's account, which
// opened the database, and under sudo the account that ran sudo.
func (e *cli) osUser() string {
	name := fmt.Sprintf("uid %d", os.Getuid())
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	// SUDO_USER is sudo's word only when sudo made us root; anyone can set it otherwise.
	if sudo := e.getenv("SUDO_USER"); sudo != "" && sudo != name && os.Geteuid() == 0 {
		name = sudo + " (via sudo as " + name + ")"
	}
	return name
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
