package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"pointpost/rewards"
)

func importCommand(e *cli) *cobra.Command {
	cfg := e.config()
	consumers := &cobra.Command{
		Use:   "consumers FILE.csv",
		Short: "add or update consumers from a CSV file",
		Args:  nArgs(1, 1),
		RunE: e.onStore(cfg, func(cmd *cobra.Command, a *app, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			start := time.Now()
			res, err := a.store.ImportConsumersCSV(cmd.Context(), f, func(re rewards.RowError) {
				fmt.Fprintf(e.stdout, "%s: %v\n", filepath.Base(args[0]), &re)
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "imported %d rows in %.1fs: %d new, %d updated, %d bad\n",
				res.Rows, time.Since(start).Seconds(), res.Inserted, res.Updated, res.Bad)
			return nil
		}),
	}
	cfg.dbFlag(consumers.Flags())
	return group("import", "bring data in", consumers)
}

func consumerCommand(e *cli) *cobra.Command {
	cfg := e.config()
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "consumer EMAIL",
		Short: "a consumer's timeline: deliveries, acknowledgements, points",
		Args:  nArgs(1, 1),
		RunE: e.onStore(cfg, func(cmd *cobra.Command, a *app, args []string) error {
			tl, err := a.store.Timeline(cmd.Context(), args[0])
			if errors.Is(err, rewards.ErrNotFound) {
				return fmt.Errorf("no consumer with e-mail %s", args[0])
			}
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(e.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(tl)
			}
			return tl.WriteText(e.stdout)
		}),
	}
	cfg.dbFlag(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the timeline as JSON")
	return cmd
}
