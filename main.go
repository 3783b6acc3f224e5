// Command pointpost runs an incentive e-mail program: a post office that selects consumers
// and schedules campaigns onto in-process mail servers, which write every message on the fly
// and send it over SMTP. See README.md.
//
// This package only reads the command line and wires the other packages together: one file
// per command group, config.go for the flags and their environment variables, app.go for
// opening, wiring and serving.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "pointpost:", err)
		os.Exit(1)
	}
}

// run is the whole program, so tests can run it with their own arguments and environment.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	root := rootCommand(&cli{getenv: getenv, stdout: stdout})
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}

// cli is what every command reads besides its arguments: the environment and where to print.
type cli struct {
	getenv func(string) string
	stdout io.Writer
	// version names this binary, in the toolbox and in the databases it opens.
	version string
}

// config is a command's configuration before its flags are read.
func (e *cli) config() *Config { return &Config{Version: e.version} }

// openStore reads a command's flags and opens its database without mail servers.
func (e *cli) openStore(cmd *cobra.Command, cfg *Config) (*app, error) {
	if err := cfg.load(cmd.Flags(), e.getenv); err != nil {
		return nil, err
	}
	return open(cmd.Context(), cfg, nil, false)
}

// onStore is a command's RunE that opens the database with cfg, runs run, and closes it.
func (e *cli) onStore(cfg *Config, run func(cmd *cobra.Command, a *app, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		a, err := e.openStore(cmd, cfg)
		if err != nil {
			return err
		}
		defer a.close()
		return run(cmd, a, args)
	}
}

// rootCommand is the command tree. Cobra (with pflag) gives each command its own flags and
// help, flags after the arguments and `pointpost help COMMAND`.
func rootCommand(e *cli) *cobra.Command {
	build := readBuildInfo()
	e.version = build.Short()
	root := &cobra.Command{
		Use:   "pointpost",
		Short: "an incentive e-mail program: campaigns, mail servers, replies and points",
		// Without a command, the usage is an error, so scripts notice.
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return usageError(cmd, args)
		},
		Version:           build.String(),
		SilenceErrors:     true,
		SilenceUsage:      true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
	}
	root.SetVersionTemplate("pointpost {{.Version}}\n")
	root.SetOut(e.stdout)
	root.SetErr(e.stdout)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return fmt.Errorf("%w (see '%s -h')", err, cmd.CommandPath())
	})
	root.AddCommand(
		serveCommand(e),
		importCommand(e),
		campaignCommand(e),
		jobCommand(e),
		consumerCommand(e),
		settleCommand(e),
		backupCommand(e),
		migrateCommand(e),
		issuerCommand(e),
		catalogCommand(e),
		userCommand(e),
		apikeyCommand(e),
		routeCommand(e),
		benchCommand(e),
		versionCommand(e, build),
		installServiceCommand(e),
	)
	return root
}

// group is a command that only holds others, such as `job`.
func group(use, short string, subs ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{Use: use, Short: short, Args: cobra.ArbitraryArgs, RunE: usageError}
	cmd.AddCommand(subs...)
	return cmd
}

// usageError answers a command given without one of its subcommands, or an unknown one.
func usageError(cmd *cobra.Command, args []string) error {
	what := "a command"
	if len(args) > 0 {
		what = fmt.Sprintf("a command, not %q", args[0])
	}
	return fmt.Errorf("%s needs %s\n\n%s", cmd.CommandPath(), what, cmd.UsageString())
}

// nArgs accepts from min to max arguments and otherwise answers with the command's usage.
func nArgs(min, max int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < min || len(args) > max {
			return errors.New("usage: " + cmd.UseLine())
		}
		return nil
	}
}
