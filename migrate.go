package main

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/spf13/cobra"

	"pointpost/store"
)

// migrateCommand copies the SQLite database into an empty PostgreSQL one (store.Migrate).
func migrateCommand(e *cli) *cobra.Command {
	cfg := e.config()
	var to string
	cmd := &cobra.Command{
		Use:   "migrate --to postgres://…",
		Short: "copy the SQLite database (--db) into an empty PostgreSQL database; counts and ledger sums are checked equal",
		Args:  nArgs(0, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := cfg.load(cmd.Flags(), e.getenv); err != nil {
				return err
			}
			if to == "" {
				return errors.New("migrate: --to is required: the empty PostgreSQL database to copy into, postgres://user:password@host/database")
			}
			report, err := store.Migrate(cmd.Context(), cfg.DB, to, cfg.Version)
			if err != nil {
				return err
			}
			printMigration(e, cfg.DB, to, report)
			return nil
		},
	}
	cfg.dbFlag(cmd.Flags())
	cmd.Flags().StringVar(&to, "to", "", "the empty PostgreSQL database to copy into, postgres://user:password@host/database")
	return cmd
}

// printMigration writes what a migration copied and checked, the target's password hidden.
func printMigration(e *cli, from, to string, r *store.MigrateReport) {
	if u, err := url.Parse(to); err == nil {
		to = u.Redacted()
	}
	ms := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	fmt.Fprintf(e.stdout, "migrated %s to %s in %s: %d tables, %d rows (copy %s, keys and indexes %s, checks %s)\n",
		from, to, ms(r.Took), len(r.Tables), r.Rows, ms(r.Copy), ms(r.Keys), ms(r.Check))
	for _, t := range r.Tables {
		fmt.Fprintf(e.stdout, "  %-20s %10d  %s\n", t.Name, t.Rows, ms(t.Took))
	}
	l := r.Ledger
	fmt.Fprintf(e.stdout, "ledger, equal on both: accrued %d (settled %d, pending %d), redeemed %d, consumers' balances %d, issuers' spent %d, net %d; %d accounts compared one by one\n",
		l.Accrued, l.Settled, l.Accrued-l.Settled, l.Redeemed, l.Balances, l.Spent, l.Net, r.Accounts)
	fmt.Fprintf(e.stdout, "selections: %d compiled again for PostgreSQL, %d raw SQL to look at\n", r.Recompiled, len(r.Selections))
	for _, s := range r.Selections {
		fmt.Fprintf(e.stdout, "  job %d: %s\n", s.JobKey, s.Note)
	}
}
