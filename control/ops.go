package control

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/qufop/qufop/control/api"
	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/ufop"
)

// An operation (ufop.Operation) is the last resize, upgrade, change of
// scale policy or unreg of a UFOP. Orchestration runs in the background
// (deployments take as long as instances take to become healthy), so the
// API answers at once and `qufop resize`/`upgrade` poll the state.
//
// The operation lives in the UFOP's record in the KV, not in this process:
// several control processes share one KV (Consul, at scale), and each of
// them must see and respect an operation another one runs. It is taken
// with the record's check-and-set, in the same write as the change it
// makes (Desired, the policy), so two processes can never both start one;
// it holds the UFOP for a lease (Config.OpLease) that the process renews
// while it runs, so that one that died frees the UFOP when the lease runs
// out. The process re-reads the record before it touches the orchestrator
// (and on each renewal): if the record is gone (an unreg that took a stale
// operation over) or holds another operation, it stops without deploying,
// so a purge that won the race is not undone.
//
// Leases compare the writer's clock with the reader's: control processes'
// clocks must agree to well within a lease (NTP does). What is left open:
// the orchestrator takes no fencing token, so a process that stalls for a
// whole lease between its last check and its call to the orchestrator (or,
// in unreg, the deletion of the record) acts once on a UFOP it no longer
// holds; the heartbeat cancels its context as soon as it learns of it.

// DefaultOpLease is how long an operation holds its UFOP without renewal.
const DefaultOpLease = 30 * time.Second

// errOpLost is the cause of an operation's end when its process no longer
// holds the record.
var errOpLost = errors.New("operation lost")

func (s *Server) opLease() time.Duration {
	if s.cfg.OpLease > 0 {
		return s.cfg.OpLease
	}
	return DefaultOpLease
}

// processID names this control process in the operations it runs.
func processID() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), randomHex(4))
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// article is "a" or "an" before an operation's kind.
func article(kind string) string {
	if kind != "" && strings.ContainsRune("aeiou", rune(kind[0])) {
		return "an"
	}
	return "a"
}

// busy is the 409 for a change while op runs.
func busy(name string, op *ufop.Operation) error {
	return errs.New(http.StatusConflict, "ufop %q: %s %s is in progress; wait for it (qufop state %s)",
		name, article(op.Kind), op.Kind, name)
}

// takeOp makes op the operation of r, in a Keeper.Update: it refuses while
// another operation holds r, and takes an abandoned one over. op gets its
// ID, owner and lease; it may be called again when the update retries.
func (s *Server) takeOp(r *ufop.Record, op *ufop.Operation) error {
	now := s.now().UTC()
	if r.Op.Running(now) {
		return busy(r.Name, r.Op)
	}
	if r.Op.Abandoned(now) {
		s.log.Warn("taking over an abandoned operation", "ufop", r.Name, "kind", r.Op.Kind,
			"owner", r.Op.Owner, "expired", r.Op.Expires)
	}
	op.ID, op.Owner = randomHex(8), s.id
	op.Started, op.Expires = now, now.Add(s.opLease())
	op.Done, op.Error, op.Finished = false, "", time.Time{}
	cp := *op
	r.Op = &cp
	return nil
}

// holdOp renews the lease of operation id on name and so checks that it
// still holds the record: an error wrapping errOpLost when the record is
// gone or holds another operation.
func (s *Server) holdOp(ctx context.Context, name, id string) (time.Time, error) {
	var until time.Time
	_, err := s.keeper.Update(ctx, name, func(r *ufop.Record) error {
		if r.Op == nil || r.Op.ID != id || r.Op.Done {
			return fmt.Errorf("ufop %q: another operation took this one over: %w", name, errOpLost)
		}
		until = s.now().UTC().Add(s.opLease())
		r.Op.Expires = until
		return nil
	})
	if errors.Is(err, ufop.ErrNoSuchUFOP) {
		return until, fmt.Errorf("ufop %q is gone (unregistered meanwhile): %w", name, errOpLost)
	}
	return until, err
}

// heartbeat renews the lease of operation id every third of a lease until
// stop is called. When the record is lost, or the lease ran out before a
// renewal went through (the KV unreachable), it cancels ctx with the
// cause: another process may own the UFOP by then.
func (s *Server) heartbeat(ctx context.Context, cancel context.CancelCauseFunc, name, id string, until time.Time) (stop func()) {
	hctx, hcancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(max(s.opLease()/3, time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-hctx.Done():
				return
			case <-t.C:
			}
			next, err := s.holdOp(hctx, name, id)
			switch {
			case err == nil:
				until = next
			case errors.Is(err, errOpLost):
				cancel(err)
				return
			case hctx.Err() != nil:
				return
			case !s.now().Before(until):
				cancel(fmt.Errorf("ufop %q: the lease ran out, the KV unreachable (%v): %w", name, err, errOpLost))
				return
			default:
				s.log.Warn("renewing an operation's lease failed; retrying", "ufop", name, "err", err)
			}
		}
	}()
	return func() {
		hcancel()
		<-done
	}
}

// runOp runs an orchestration for op, taken with takeOp, in the
// background, bounded by DeployTimeout and by the lease.
func (s *Server) runOp(name string, op *ufop.Operation, run func(ctx context.Context) error) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		tctx, tcancel := context.WithTimeout(s.ctx, s.cfg.DeployTimeout)
		defer tcancel()
		ctx, cancel := context.WithCancelCause(tctx)
		defer cancel(nil)
		// The record was read when the request came; check it still is
		// ours before the orchestrator hears of it.
		until, err := s.holdOp(ctx, name, op.ID)
		if err == nil {
			stop := s.heartbeat(ctx, cancel, name, op.ID, until)
			err = run(ctx)
			stop()
			if cause := context.Cause(ctx); errors.Is(cause, errOpLost) {
				err = cause
			}
		}
		s.endOp(name, op, err)
	}()
}

// endOp records the end of op in the record, unless another operation
// took its place or the record is gone.
func (s *Server) endOp(name string, op *ufop.Operation, err error) {
	s.log.Info(op.Kind+" ended", "ufop", name, "version", op.Version, "count", op.Count, "err", err)
	// The server may be closing: the end is written all the same.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), 30*time.Second)
	defer cancel()
	_, uerr := s.keeper.Update(ctx, name, func(r *ufop.Record) error {
		if r.Op == nil || r.Op.ID != op.ID {
			return errOpLost
		}
		r.Op.Done, r.Op.Finished = true, s.now().UTC()
		if err != nil {
			// Orchestrator errors carry no public message of their own;
			// the owner asking for the state is the one to see them whole.
			var pub *errs.Error
			if errors.As(err, &pub) {
				r.Op.Error = pub.Msg
			} else {
				r.Op.Error = err.Error()
			}
		}
		return nil
	})
	if uerr != nil && !errors.Is(uerr, errOpLost) && !errors.Is(uerr, ufop.ErrNoSuchUFOP) {
		s.log.Warn("recording the end of an operation failed", "ufop", name, "kind", op.Kind, "err", uerr)
	}
}

// opRunning returns the operation holding rec, or nil.
func (s *Server) opRunning(rec *ufop.Record) *ufop.Operation {
	if rec.Op.Running(s.now()) {
		return rec.Op
	}
	return nil
}

// opView is the operation of a record as the API shows it; an abandoned
// one is over, with why.
func opView(o *ufop.Operation, now time.Time) *api.Operation {
	if o == nil {
		return nil
	}
	v := &api.Operation{Kind: o.Kind, Version: o.Version, Count: o.Count, Started: o.Started,
		Done: o.Done, Error: o.Error, Finished: o.Finished}
	if o.Abandoned(now) {
		v.Done, v.Finished = true, o.Expires
		v.Error = fmt.Sprintf("abandoned: the control process running it (%s) stopped renewing it; its lease ran out at %s",
			o.Owner, o.Expires.UTC().Format(time.RFC3339))
	}
	return v
}
