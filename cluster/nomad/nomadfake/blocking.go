package nomadfake

import (
	"errors"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/nomad/api"
)

// Blocking queries (transcript 06b): a read with ?index=N waits until the
// index of the state table behind the endpoint passes N, or until ?wait=
// (default 5m, at most 10m, plus a jitter of up to wait/16) has elapsed,
// and always answers with X-Nomad-Index set to that table's index.

// Nomad's bounds of ?wait= (structs.DefaultBlockingRPCQueryTime and
// MaxBlockingRPCQueryTime).
const (
	defaultWait = 5 * time.Minute
	maxWait     = 10 * time.Minute
)

// table is a part of the state with an index of its own, as in Nomad's
// state store: endpoints over different tables report different indexes at
// the same moment, and a write to one table does not release a query
// blocked on another.
type table int

const (
	tableJobs table = iota + 1
	tableAllocs
	tableDeployments
	tableEvals
	tableNodes
)

// readTable names the table a GET of path p (without /v1/) reads, if p is
// an endpoint that supports blocking queries.
func readTable(p string) (table, bool) {
	switch {
	case p == "jobs":
		return tableJobs, true
	case strings.HasPrefix(p, "job/"):
		_, sub, _ := strings.Cut(strings.TrimPrefix(p, "job/"), "/")
		switch sub {
		case "", "versions", "scale":
			return tableJobs, true
		case "allocations":
			return tableAllocs, true
		case "deployment", "deployments":
			return tableDeployments, true
		case "evaluations":
			return tableEvals, true
		}
	case strings.HasPrefix(p, "allocation/"):
		return tableAllocs, true
	case strings.HasPrefix(p, "deployment/"):
		return tableDeployments, true
	case strings.HasPrefix(p, "evaluation/"):
		return tableEvals, true
	case strings.HasPrefix(p, "node/"):
		return tableNodes, true
	}
	return 0, false
}

// tableIndex is the highest modify index of the objects in t, or of a
// deletion from it (a purge), never below 1 (Nomad answers 1 for an empty
// table so that a client's next blocking query blocks).
func (s *Server) tableIndex(t table) uint64 {
	ix := max(s.deleted[t], 1)
	switch t {
	case tableJobs:
		for _, j := range s.jobs {
			if !j.purged {
				ix = max(ix, *j.latest().ModifyIndex)
			}
		}
	case tableAllocs:
		for _, j := range s.jobs {
			for _, a := range j.allocs {
				ix = max(ix, a.stub.ModifyIndex)
			}
		}
	case tableDeployments:
		for _, j := range s.jobs {
			for _, d := range j.deployments {
				ix = max(ix, d.ModifyIndex)
			}
		}
	case tableEvals:
		for _, e := range s.evals {
			ix = max(ix, e.ev.ModifyIndex)
		}
	case tableNodes:
		ix = max(ix, s.nodeIndex)
	}
	return ix
}

var (
	errBadIndex = errors.New("Invalid index")
	errBadWait  = errors.New("Invalid wait time")
)

// blockingParams parses ?index= and ?wait= as Nomad does (400 "Invalid
// index" / "Invalid wait time" on a bad value).
func blockingParams(q url.Values) (index uint64, wait time.Duration, err error) {
	if v := q.Get("index"); v != "" {
		if index, err = strconv.ParseUint(v, 10, 64); err != nil {
			return 0, 0, errBadIndex
		}
	}
	wait = defaultWait
	if v := q.Get("wait"); v != "" {
		if wait, err = time.ParseDuration(v); err != nil {
			return 0, 0, errBadWait
		}
	}
	wait = min(wait, maxWait)
	return index, wait + rand.N(wait/16+1), nil
}

// block holds a read until table t's index passes the request's ?index=,
// the wait elapses or the client goes away. It is called, and returns,
// with s.mu held; it releases the lock while it waits. Time-driven changes
// (an allocation becoming healthy, an evaluation completing) are applied
// when they are due, so that they release waiting queries as a write does.
func (s *Server) block(r *http.Request, t table) error {
	index, wait, err := blockingParams(r.URL.Query())
	if err != nil || index == 0 {
		return err
	}
	deadline := time.Now().Add(wait)
	for s.tableIndex(t) <= index {
		left := time.Until(deadline)
		if left <= 0 || r.Context().Err() != nil {
			return nil
		}
		if due, ok := s.nextDue(); ok {
			left = min(left, max(time.Until(due), time.Millisecond))
		}
		changed := s.changed
		s.mu.Unlock()
		timer := time.NewTimer(left)
		select {
		case <-changed:
		case <-timer.C:
		case <-r.Context().Done():
		}
		timer.Stop()
		s.mu.Lock()
		s.advance()
	}
	return nil
}

// nextDue is the earliest time a pending allocation or evaluation changes
// by itself.
func (s *Server) nextDue() (time.Time, bool) {
	var due time.Time
	earlier := func(t time.Time) {
		if due.IsZero() || t.Before(due) {
			due = t
		}
	}
	for _, j := range s.jobs {
		for _, a := range j.allocs {
			if a.stub.ClientStatus == api.AllocClientStatusPending && a.stub.DesiredStatus == api.AllocDesiredStatusRun {
				earlier(a.readyAt)
			}
		}
	}
	for _, e := range s.evals {
		if e.ev.Status == api.EvalStatusPending {
			earlier(e.doneAt)
		}
	}
	return due, !due.IsZero()
}

// wake releases every blocked query and log follower so that they look at
// the state again: called on every index bump and log append.
func (s *Server) wake() {
	close(s.changed)
	s.changed = make(chan struct{})
}
