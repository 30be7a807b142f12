package ufop

import "time"

// Operation is the last resize, upgrade, change of scale policy or unreg of
// a UFOP, kept in its record so that every control process sharing the KV
// sees it and at most one runs at a time: it is taken with the record's
// check-and-set (Keeper.Update), in the same write as the change it makes.
//
// A running operation holds the UFOP until Expires, its lease, which the
// process running it (Owner) renews while it runs. A running operation
// whose lease has passed was abandoned (its process died, or lost the KV
// for a whole lease): the next operation takes its place, and the process
// that lost it, if it still runs, finds another ID in the record and stops
// before it changes anything more.
type Operation struct {
	// ID tells one operation from the next, so that its owner can see
	// whether it still holds the record.
	ID      string `json:"id"`
	Kind    string `json:"kind"` // "resize", "upgrade", "scale-policy" or "unreg"
	Version int    `json:"version"`
	Count   int    `json:"count"`
	// Owner names the control process running it (host/pid/random).
	Owner   string    `json:"owner"`
	Started time.Time `json:"started"`
	// Expires is the lease: the operation holds the UFOP until then.
	Expires  time.Time `json:"expires"`
	Done     bool      `json:"done"`
	Error    string    `json:"error,omitempty"`
	Finished time.Time `json:"finished,omitzero"`
}

// Running reports whether o holds its UFOP at now: not done, lease not
// passed.
func (o *Operation) Running(now time.Time) bool {
	return o != nil && !o.Done && now.Before(o.Expires)
}

// Abandoned reports whether o never ended and its lease has passed.
func (o *Operation) Abandoned(now time.Time) bool {
	return o != nil && !o.Done && !now.Before(o.Expires)
}
