package web

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var staticFiles embed.FS

// staticHandler serves the embedded assets under /static/. They change only with the
// binary, so browsers may keep them for a day.
func staticHandler() http.HandlerFunc {
	sub, err := fs.Sub(staticFiles, "static")
	if err != nil {
		panic(err) // the directory is embedded above; it cannot be missing
	}
	files := http.StripPrefix("/static/", http.FileServerFS(FilesOnly(sub)))
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=86400")
		files.ServeHTTP(w, r)
	}
}

// favicon serves the icon browsers ask every site for at /favicon.ico.
func favicon(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=86400")
	http.ServeFileFS(w, r, staticFiles, "static/favicon.ico")
}

// FilesOnly is fsys with its directories hidden: opening one fails with fs.ErrNotExist, so
// an http.FileServer over it answers 404 for a directory instead of listing it.
func FilesOnly(fsys fs.FS) fs.FS { return filesOnly{fsys} }

type filesOnly struct{ fs.FS }

func (f filesOnly) Open(name string) (fs.File, error) {
	file, err := f.FS.Open(name)
	if err != nil {
		return nil, err
	}
	info, err := file.Stat()
	if err == nil && info.IsDir() {
		err = &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	if err != nil {
		file.Close()
		return nil, err
	}
	return file, nil
}
