package store

import "errors"

// ErrNotFound is returned, wrapped, when the row a call names does not exist; test for it
// with errors.Is.
var ErrNotFound = errors.New("not found")

// ErrExists is returned, wrapped, when a row would repeat one that must be unique, such as a
// second user with the same e-mail address.
var ErrExists = errors.New("already exists")

// ErrConflict is returned, wrapped, when a change was made against a state that has moved
// on meanwhile, such as rewriting a draft job that has since been scheduled.
var ErrConflict = errors.New("changed meanwhile")
