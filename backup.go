package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"pointpost/store"
)

// backupCommand writes a consistent copy of the database while serve may be running.
func backupCommand(e *cli) *cobra.Command {
	cfg := e.config()
	cmd := &cobra.Command{
		Use:   "backup FILE",
		Short: "write a consistent copy of the database to FILE, also while serve runs",
		Args:  nArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := cfg.load(cmd.Flags(), e.getenv); err != nil {
				return err
			}
			ctx := cmd.Context()
			st, err := store.Open(ctx, cfg.DB)
			if err != nil {
				return err
			}
			defer st.Close()
			start := time.Now()
			pages, err := st.Backup(ctx, args[0])
			if errors.Is(err, store.ErrBackupExists) {
				return fmt.Errorf("backup: %s exists; choose a new file (a backup never overwrites one)", args[0])
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "backed up %s to %s: %d pages in %s\n", cfg.DB, args[0], pages,
				time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	cfg.dbFlag(cmd.Flags())
	return cmd
}

// backupSchedule is serve's --backup-dir: a backup every interval, keeping the newest keep.
type backupSchedule struct {
	store *store.Store
	dir   string
	keep  int
	log   *slog.Logger
	now   func() time.Time
}

// backupPrefix and backupLayout name scheduled backups, so that their names sort by time
// and pruning touches no other file in the directory.
const (
	backupPrefix = "pointpost-"
	backupLayout = "20060102T150405.000Z"
	backupSuffix = ".db"
)

// prepare makes the directory if missing. Returns an error if dir exists and is not a
// directory.
func (b *backupSchedule) prepare() error {
	if fi, err := os.Stat(b.dir); err == nil && !fi.IsDir() {
		return fmt.Errorf("--backup-dir %s: not a directory", b.dir)
	}
	if err := os.MkdirAll(b.dir, 0o750); err != nil {
		return fmt.Errorf("--backup-dir: %w", err)
	}
	return nil
}

// once takes a backup named after the time, then removes all but the newest keep.
func (b *backupSchedule) once(ctx context.Context) (string, error) {
	file := filepath.Join(b.dir, backupPrefix+b.now().UTC().Format(backupLayout)+backupSuffix)
	if _, err := b.store.Backup(ctx, file); err != nil {
		return "", err
	}
	return file, b.prune()
}

// prune removes the scheduled backups older than the newest keep.
func (b *backupSchedule) prune() error {
	entries, err := os.ReadDir(b.dir)
	if err != nil {
		return err
	}
	var ours []string
	for _, e := range entries {
		stamp, ok := strings.CutPrefix(e.Name(), backupPrefix)
		stamp, ok2 := strings.CutSuffix(stamp, backupSuffix)
		if !ok || !ok2 || !e.Type().IsRegular() {
			continue
		}
		if _, err := time.Parse(backupLayout, stamp); err == nil {
			ours = append(ours, e.Name())
		}
	}
	slices.Sort(ours)
	var errs []error
	for len(ours) > b.keep {
		errs = append(errs, os.Remove(filepath.Join(b.dir, ours[0])))
		ours = ours[1:]
	}
	return errors.Join(errs...)
}

// run takes a backup at each tick until ctx ends; a failed one is logged and the next tick
// tries again.
func (b *backupSchedule) run(ctx context.Context, ticks <-chan time.Time) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticks:
			start := time.Now()
			file, err := b.once(ctx)
			if err != nil {
				b.log.Error("scheduled backup", "dir", b.dir, "err", err)
				continue
			}
			b.log.Info("backup", "file", file, "took", time.Since(start).Round(time.Millisecond))
		}
	}
}

// startBackups starts the scheduled backups --backup-dir asks for and returns the function
// that stops them and waits, to call before the store closes.
func (a *app) startBackups(ctx context.Context) (stop func(), err error) {
	if a.cfg.BackupDir == "" {
		return func() {}, nil
	}
	b := &backupSchedule{store: a.store, dir: a.cfg.BackupDir, keep: a.cfg.BackupKeep, log: a.log, now: time.Now}
	if err := b.prepare(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	ticker := time.NewTicker(a.cfg.BackupEvery)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); b.run(ctx, ticker.C) }()
	return func() { cancel(); ticker.Stop(); wg.Wait() }, nil
}
