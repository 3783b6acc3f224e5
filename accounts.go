package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"pointpost/rewards"
)

// userCommand adds toolbox accounts and makes one-time links for them: the way in for the
// first operator on a machine whose serve output nobody saw. The links point where --base-url
// or --http say, else where serve last ran.
func userCommand(e *cli) *cobra.Command {
	addCfg := e.config()
	var operator bool
	var slug string
	add := &cobra.Command{
		Use:   "add (--operator | --issuer SLUG) EMAIL",
		Short: "a toolbox account; prints its one-time link to set a password",
		Args:  nArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if operator == (slug != "") {
				return errors.New("user add: give --operator or --issuer SLUG\nusage: " + cmd.UseLine())
			}
			a, err := e.openStore(cmd, addCfg)
			if err != nil {
				return err
			}
			defer a.close()
			ctx := cmd.Context()
			u := &rewards.User{Email: args[0], Role: rewards.RoleOperator}
			if slug != "" {
				iss, err := a.issuer(ctx, slug)
				if err != nil {
					return err
				}
				u.Role, u.IssuerID = rewards.RoleIssuer, iss.ID
			}
			link, err := rewards.AddUser(ctx, a.store, u, a.cfg.BaseURL, time.Now())
			if errors.Is(err, rewards.ErrExists) {
				return fmt.Errorf("%s already has an account: 'pointpost user link %s' makes a new sign-in link", u.Email, u.Email)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "%s added as %s; to set a password, open (valid 7 days, once):\n%s\n", u.Email, u.Role, link)
			return nil
		},
	}
	addCfg.dbFlag(add.Flags())
	addCfg.addressFlags(add.Flags())
	add.Flags().BoolVar(&operator, "operator", false, "an operator, who sees and runs everything")
	add.Flags().StringVar(&slug, "issuer", "", "a user of the issuer with this slug, who sees its campaigns only")

	linkCfg := e.config()
	link := &cobra.Command{
		Use:   "link EMAIL",
		Short: "a new one-time link for a user to set a password",
		Args:  nArgs(1, 1),
		RunE: e.onStore(linkCfg, func(cmd *cobra.Command, a *app, args []string) error {
			u, _, err := a.store.UserByEmail(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			link, err := rewards.NewUserLink(cmd.Context(), a.store, u.ID, a.cfg.BaseURL, time.Now(), 24*time.Hour)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "for %s, open (valid 24 hours, once):\n%s\n", u.Email, link)
			return nil
		}),
	}
	linkCfg.dbFlag(link.Flags())
	linkCfg.addressFlags(link.Flags())
	return group("user", "toolbox accounts", add, link)
}

// apikeyCommand makes a JSON API key and prints its secret, the only time it is shown.
func apikeyCommand(e *cli) *cobra.Command {
	cfg := e.config()
	var operator bool
	var name string
	create := &cobra.Command{
		Use:   "create (--operator | ISSUER)",
		Short: "a key for the JSON API; prints it once",
		Args:  nArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if operator == (len(args) == 1) {
				return errors.New("usage: " + cmd.UseLine())
			}
			a, err := e.openStore(cmd, cfg)
			if err != nil {
				return err
			}
			defer a.close()
			k := &rewards.APIKey{Name: name}
			if !operator {
				iss, err := a.issuer(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				k.IssuerID = iss.ID
			}
			secret, err := rewards.NewAPIKey(cmd.Context(), a.store, k, time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, secret)
			return nil
		},
	}
	cfg.dbFlag(create.Flags())
	create.Flags().BoolVar(&operator, "operator", false, "a key that reaches every issuer")
	create.Flags().StringVar(&name, "name", "", "what the key is for, shown in the toolbox")
	return group("apikey", "keys for the JSON API", create)
}
