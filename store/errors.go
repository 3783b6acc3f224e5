package store

import "errors"

// ErrNotFound is returned, wrapped, when the row a call names does not exist; test for it
// with errors.Is.
var ErrNotFound = errors.New("not found")
