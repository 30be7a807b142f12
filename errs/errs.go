// Package errs gives every error that can reach a client an HTTP status and a
// public message, so handlers never decide ad hoc what a failure looks like.
//
// The internal cause stays wrapped for logs; only Public is shown to users
// (in Qiniu's {"code":N,"error":"..."} body).
package errs

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Qiniu status codes that net/http has no name for.
const (
	// StatusProcessingFailed is Qiniu's "server operation failed".
	StatusProcessingFailed = 599
	// StatusTooFrequent is Qiniu's "request rate too high".
	StatusTooFrequent = 573
)

// Error is a failure with a status and a message safe to show clients.
type Error struct {
	Status int    // HTTP status sent to the client
	Msg    string // public message
	Err    error  // internal cause, may be nil
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// New returns an Error with a formatted public message.
func New(status int, format string, args ...any) *Error {
	return &Error{Status: status, Msg: fmt.Sprintf(format, args...)}
}

// Wrap attaches a status and public message to an internal cause.
func Wrap(status int, err error, format string, args ...any) *Error {
	return &Error{Status: status, Msg: fmt.Sprintf(format, args...), Err: err}
}

// BadRequest is a 400 with a formatted message.
func BadRequest(format string, args ...any) *Error {
	return New(http.StatusBadRequest, format, args...)
}

// NotFound is a 404 with a formatted message.
func NotFound(format string, args ...any) *Error {
	return New(http.StatusNotFound, format, args...)
}

// Failed is a 599 (processing failed) wrapping its cause.
func Failed(err error, format string, args ...any) *Error {
	return Wrap(StatusProcessingFailed, err, format, args...)
}

// Status returns the HTTP status of err: that of the outermost *Error in its
// chain, 599 for any other error, 200 for nil.
func Status(err error) int {
	if err == nil {
		return http.StatusOK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	var c Carrier
	if errors.As(err, &c) {
		return c.HTTPStatus()
	}
	return StatusProcessingFailed
}

// Carrier is implemented by errors of other packages that know their status
// and that are safe to show as they are (fop.ParseError), so those packages
// need not import this one.
type Carrier interface {
	error
	HTTPStatus() int
}

// Public returns the message of err that a client may see. Errors without a
// public message are reported generically: their text may hold paths.
func Public(err error) string {
	if msg, ok := public(err); ok {
		return msg
	}
	return "processing failed"
}

// public is the public message of err, if it has one.
func public(err error) (string, bool) {
	// errors.Join of public errors (every problem of a ufop.yaml at once):
	// all of them, not only the first errors.As would find.
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var msgs []string
		for _, m := range j.Unwrap() {
			if msg, ok := public(m); ok {
				msgs = append(msgs, msg)
			}
		}
		if len(msgs) > 0 {
			return strings.Join(msgs, "; "), true
		}
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Msg, true
	}
	var c Carrier
	if errors.As(err, &c) {
		return c.Error(), true
	}
	return "", false
}
