package store

import "errors"

// ErrNotFound is returned, wrapped, when the row a call names does not exist; test for it
// with errors.Is.
var ErrNotFound = errors.New("not found")

// ErrExists is returned, wrapped, when a row would repeat one that must be unique, such as a
// second user with the same e-mail address.
var ErrExists = errors.New("already exists")
