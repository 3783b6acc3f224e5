package rewards

import (
	"errors"
	"fmt"
)

// The codes of Error: what a failure means to whoever asked, whatever layer found it. Each
// maps to one HTTP status (web.Status).
const (
	ECONFLICT     = "conflict"     // the row exists already, or changed meanwhile
	EFORBIDDEN    = "forbidden"    // the caller is known but may not do this
	EINTERNAL     = "internal"     // a failure the caller cannot act on
	EINVALID      = "invalid"      // the request is malformed
	ENOTFOUND     = "not_found"    // the row named does not exist
	ETOOMANY      = "too_many"     // too much at once: try again later
	EUNAUTHORIZED = "unauthorized" // the caller is not who it claims
	EUNAVAILABLE  = "unavailable"  // the database is busy, locked or full: try again later
)

// Error is a failure with a code from the list above and a message fit for the user. Err,
// if set, is the cause, kept for the log and for errors.Is and errors.As.
type Error struct {
	Code    string
	Message string
	Err     error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an Error with code and the formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// The errors the store returns, wrapped, for a missing or repeated row; test for them with
// errors.Is, or for their code with ErrorCode.
var (
	// ErrNotFound: the row a call names does not exist.
	ErrNotFound = &Error{Code: ENOTFOUND, Message: "not found"}
	// ErrExists: a row would repeat one that must be unique, such as a second user with the
	// same e-mail address.
	ErrExists = &Error{Code: ECONFLICT, Message: "already exists"}
	// ErrConflict: a change was made against a state that has moved on meanwhile, such as
	// rewriting a draft job that has since been scheduled.
	ErrConflict = &Error{Code: ECONFLICT, Message: "changed meanwhile"}
)

// ErrorCode returns the code of the first Error in err's chain, "" for a nil err and
// EINTERNAL for an error that carries no code.
func ErrorCode(err error) string {
	var e *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e):
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the message of the first Error in err's chain, "" for a nil err and
// "internal error" for an error that carries no code: its text is for the log alone.
func ErrorMessage(err error) string {
	var e *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e):
		return e.Message
	}
	return "internal error"
}
