package main

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is this release's name, set when building a release with
// -ldflags "-X main.version=v1.2.3"; empty takes the main module's version from the build.
var version string

// buildInfo says which pointpost this is: its version and the commit it was built from.
type buildInfo struct {
	Version string
	Commit  string
	// Date is the commit's time, as the build recorded it.
	Date string
	// Modified: built from a work tree with uncommitted changes.
	Modified bool
}

func readBuildInfo() buildInfo {
	b := buildInfo{Version: version}
	if info, ok := debug.ReadBuildInfo(); ok {
		if b.Version == "" {
			b.Version = info.Main.Version
		}
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Commit = s.Value
			case "vcs.time":
				b.Date = s.Value
			case "vcs.modified":
				b.Modified = s.Value == "true"
			}
		}
	}
	if b.Version == "" {
		b.Version = "(devel)"
	}
	return b
}

// Short is the version with the commit's first 12 characters, as the toolbox's footer and
// the database record it.
func (b buildInfo) Short() string {
	s := b.Version
	if b.Commit != "" {
		s += " " + b.Commit[:min(12, len(b.Commit))]
		if b.Modified {
			s += "+dirty"
		}
	}
	return s
}

// String is everything known, for `pointpost version`: what the build did not record is left
// out.
func (b buildInfo) String() string {
	s := b.Version
	if b.Commit != "" {
		s += ", commit " + b.Commit
		if b.Modified {
			s += " (modified)"
		}
	}
	if b.Date != "" {
		s += " of " + b.Date
	}
	return s
}

func versionCommand(e *cli, b buildInfo) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print the version, the commit and its date",
		Args:  nArgs(0, 0),
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprintf(e.stdout, "pointpost %s\n", b)
			return err
		},
	}
}
