package main

import (
	"context"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"pointpost/rewards"
)

func issuerCommand(e *cli) *cobra.Command {
	cfg := e.config()
	budget := &cobra.Command{
		Use:   "budget SLUG POINTS",
		Short: "cap the points an issuer's rules may award in all (0: no cap)",
		Args:  nArgs(2, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			points, err := strconv.ParseInt(args[1], 10, 64)
			if err != nil || points < 0 {
				return fmt.Errorf("points %q: must be a whole number, 0 or more", args[1])
			}
			a, err := e.openStore(cmd, cfg)
			if err != nil {
				return err
			}
			defer a.close()
			iss, err := a.issuer(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if err := a.store.SetIssuerBudget(cmd.Context(), iss.ID, points); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "%s may award %d points in all\n", iss.Slug, points)
			return nil
		},
	}
	cfg.dbFlag(budget.Flags())
	return group("issuer", "the issuers who run campaigns", budget)
}

// issuer returns the issuer with slug.
func (a *app) issuer(ctx context.Context, slug string) (rewards.Issuer, error) {
	issuers, err := a.store.Issuers(ctx)
	if err != nil {
		return rewards.Issuer{}, err
	}
	for _, iss := range issuers {
		if iss.Slug == slug {
			return iss, nil
		}
	}
	return rewards.Issuer{}, fmt.Errorf("no issuer %q", slug)
}

func catalogCommand(e *cli) *cobra.Command {
	listCfg := e.config()
	list := &cobra.Command{
		Use:   "list",
		Short: "the rewards on offer",
		Args:  nArgs(0, 0),
		RunE: e.onStore(listCfg, func(cmd *cobra.Command, a *app, _ []string) error {
			items, err := a.store.Catalog(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "%-4s %-30s %8s %7s\n", "ID", "NAME", "COST", "STOCK")
			for _, it := range items {
				fmt.Fprintf(e.stdout, "%-4d %-30.30s %8d %7d\n", it.ID, it.Name, it.Cost, it.Stock)
			}
			return nil
		}),
	}
	listCfg.dbFlag(list.Flags())
	addCfg := e.config()
	add := &cobra.Command{
		Use:   "add NAME COST STOCK [DESCRIPTION]",
		Short: "a reward consumers may redeem points for; prints its id",
		Args:  nArgs(3, 4),
		RunE: func(cmd *cobra.Command, args []string) error {
			item := rewards.CatalogItem{Name: args[0]}
			if len(args) == 4 {
				item.Description = args[3]
			}
			var err error
			if item.Cost, err = strconv.ParseInt(args[1], 10, 64); err != nil {
				return fmt.Errorf("cost %q: must be a whole number of points", args[1])
			}
			if item.Stock, err = strconv.ParseInt(args[2], 10, 64); err != nil {
				return fmt.Errorf("stock %q: must be a whole number", args[2])
			}
			a, err := e.openStore(cmd, addCfg)
			if err != nil {
				return err
			}
			defer a.close()
			if err := a.store.AddCatalogItem(cmd.Context(), &item); err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, item.ID)
			return nil
		},
	}
	addCfg.dbFlag(add.Flags())
	return group("catalog", "the rewards consumers redeem points for", list, add)
}

func settleCommand(e *cli) *cobra.Command {
	cfg := e.config()
	cmd := &cobra.Command{
		Use:   "settle",
		Short: "post pending points into consumer accounts now",
		Args:  nArgs(0, 0),
		RunE: e.onStore(cfg, func(cmd *cobra.Command, a *app, _ []string) error {
			n, err := (&rewards.Settler{Store: a.store}).SettleNow(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "posted %d accruals\n", n)
			return nil
		}),
	}
	cfg.dbFlag(cmd.Flags())
	return cmd
}
