package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	sqlite3 "github.com/mattn/go-sqlite3"
)

// ErrBackupExists is returned, wrapped with the file, by Backup when its target exists: a
// backup never overwrites a file, least of all the database itself.
var ErrBackupExists = errors.New("the backup file already exists")

// Backup writes a consistent copy of the database to file while the store stays in use,
// with SQLite's online backup API, and returns the pages it copied. The copy is one read
// transaction of the source, so it is the database as of one moment; in WAL mode writers go
// on meanwhile. It is written beside file under a temporary name and linked into place only
// when complete, so file is either the whole copy or absent. Returns ErrBackupExists if file
// exists, and an error for a PostgreSQL store.
func (s *Store) Backup(ctx context.Context, file string) (pages int, err error) {
	if s.engine == enginePostgres {
		return 0, errors.New("backup: a PostgreSQL database is backed up by the server's means (pg_dump, continuous archiving), not by pointpost")
	}
	if _, err := os.Lstat(file); err == nil {
		return 0, fmt.Errorf("%s: %w", file, ErrBackupExists)
	} else if !errors.Is(err, os.ErrNotExist) {
		return 0, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".partial-*")
	if err != nil {
		return 0, err
	}
	tmpName := tmp.Name()
	tmp.Close()
	defer os.Remove(tmpName)

	if pages, err = s.backupInto(ctx, tmpName); err != nil {
		return 0, err
	}
	// A link, unlike a rename, fails rather than replace a file made meanwhile.
	if err := os.Link(tmpName, file); err != nil {
		if errors.Is(err, os.ErrExist) {
			return 0, fmt.Errorf("%s: %w", file, ErrBackupExists)
		}
		return 0, err
	}
	if dir, err := os.Open(filepath.Dir(file)); err == nil {
		_ = dir.Sync() // the new name survives a crash, where the file system allows
		dir.Close()
	}
	return pages, nil
}

// backupInto copies the database into the empty SQLite file dst in one step.
func (s *Store) backupInto(ctx context.Context, dst string) (int, error) {
	dstDB, err := sql.Open("sqlite3", "file:"+dst)
	if err != nil {
		return 0, err
	}
	defer dstDB.Close()
	dstConn, err := dstDB.Conn(ctx)
	if err != nil {
		return 0, fmt.Errorf("backup target %s: %w", dst, err)
	}
	defer dstConn.Close()
	srcConn, err := s.read.Conn(ctx)
	if err != nil {
		return 0, err
	}
	defer srcConn.Close()
	var pages int
	err = srcConn.Raw(func(src any) error {
		return dstConn.Raw(func(dst any) error {
			b, err := dst.(*sqlite3.SQLiteConn).Backup("main", src.(*sqlite3.SQLiteConn), "main")
			if err != nil {
				return err
			}
			// -1 copies every page in one step, under one read transaction of the source.
			done, err := b.Step(-1)
			pages = b.PageCount()
			if ferr := b.Finish(); err == nil {
				err = ferr
			}
			if err == nil && !done {
				err = errors.New("the backup stopped before the last page")
			}
			return err
		})
	})
	if err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	if err := dstConn.Close(); err != nil {
		return 0, err
	}
	return pages, dstDB.Close()
}
