package main

import (
	"errors"
	"fmt"
)

// Refusal codes. Every error the contract returns on purpose begins with one of these and ": ",
// so that clients choose their error type by the code, never by the wording (which may change).
// Errors of the peer itself (state database, history) carry no code.
const (
	CodeInvalid          = "INVALID"           // a record, event or argument of the wrong form, a bad signature or time
	CodeNotFound         = "NOT_FOUND"         // no record with this id (or no such parent)
	CodeExists           = "EXISTS"            // a record with this id is already registered
	CodeDuplicateContent = "DUPLICATE_CONTENT" // its file or pixels are registered as another record
	CodeForbidden        = "FORBIDDEN"         // the signer may not do this (not the current owner)
)

// refusal is an error the contract returns on purpose: a code and a message for people.
type refusal struct {
	code, text string
}

func (r *refusal) Error() string { return r.code + ": " + r.text }

func refuse(code, format string, args ...interface{}) error {
	return &refusal{code, fmt.Sprintf(format, args...)}
}

// invalid marks an error found while checking a record's or event's form as CodeInvalid; an
// error that already has a code keeps it.
func invalid(err error) error {
	var r *refusal
	if err == nil || errors.As(err, &r) {
		return err
	}
	return refuse(CodeInvalid, "%v", err)
}
