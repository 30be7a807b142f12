package control

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/control/api"
	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/ufop"
)

// workload renders version v of rec for the orchestrator; with a scale
// policy it carries the policy's range, so that every deployment does.
func (s *Server) workload(rec *ufop.Record, v *ufop.Version, count int) (cluster.Workload, error) {
	flavor, err := ufop.ParseFlavor(v.Spec.Flavor)
	if err != nil {
		return cluster.Workload{}, errs.BadRequest("%v", err)
	}
	return cluster.Workload{
		Name: rec.Name, Owner: rec.Owner, Version: v.N,
		Image: v.Image, Dir: v.Dir, Run: v.Spec.Run, Env: v.Spec.Env,
		Port: s.cfg.Port, HealthPath: v.Spec.Health, Protocol: string(v.Spec.Protocol),
		CPUs: flavor.CPUs, MemoryMB: flavor.MemoryMB,
		Count: count, KillTimeout: v.Spec.KillTimeout, Scaling: scalingOf(rec.Scale),
	}, nil
}

// deployable returns the version to deploy: the current one, built.
func deployable(rec *ufop.Record) (*ufop.Version, error) {
	if rec.Current == 0 {
		return nil, errs.BadRequest("ufop %q has no current version: choose one with `qufop chver %s -c N`", rec.Name, rec.Name)
	}
	v := rec.Version(rec.Current)
	if v == nil || v.State != ufop.BuildSuccess {
		return nil, errs.BadRequest("current version %d of %q is not a successful build", rec.Current, rec.Name)
	}
	return v, nil
}

func (s *Server) resize(c *gin.Context) {
	var req api.ResizeRequest
	if !bindJSON(c, &req) {
		return
	}
	rec := record(c)
	switch {
	case req.Count < 0:
		fail(c, errs.BadRequest("instance count must not be negative, got %d", req.Count))
		return
	case req.Count > rec.MaxInstances:
		fail(c, errs.BadRequest("instance count %d is over the limit of %d for %q", req.Count, rec.MaxInstances, rec.Name))
		return
	}
	if err := checkPolicyRange(rec, req.Count); err != nil {
		fail(c, err)
		return
	}
	from := rec.Desired
	var run func(ctx context.Context) error
	op := &ufop.Operation{Kind: "resize", Count: req.Count}
	if rec.Deployed == 0 {
		// Without a policy there is nothing to run at 0; with one, a
		// deployment at 0 is what the scaler scales from.
		if req.Count == 0 && rec.Scale == nil {
			c.JSON(http.StatusOK, api.Resized{Name: rec.Name, From: from, To: 0})
			return
		}
		v, err := deployable(rec)
		if err != nil && req.Count == 0 {
			c.JSON(http.StatusOK, api.Resized{Name: rec.Name, From: from, To: 0})
			return
		}
		if err != nil {
			fail(c, err)
			return
		}
		w, err := s.workload(rec, v, req.Count)
		if err != nil {
			fail(c, err)
			return
		}
		op.Version = v.N
		run = func(ctx context.Context) error { return s.orch.Deploy(ctx, w) }
	} else {
		op.Version = rec.Deployed
		reason := fmt.Sprintf("qufop resize %s -n %d by %s", rec.Name, req.Count, c.GetString(ctxUser))
		var w *cluster.Workload
		if v := rec.Version(rec.Deployed); v != nil && v.Spec != nil {
			if wl, err := s.workload(rec, v, req.Count); err == nil {
				w = &wl
			}
		}
		run = func(ctx context.Context) error {
			err := s.orch.Scale(ctx, rec.Name, req.Count, reason, nil)
			// The workload is gone from the orchestrator (a failed first
			// deployment purged, a cluster rebuilt): deploy it again.
			// With a policy, at 0 too: the scaler scales what is deployed.
			if errors.Is(err, cluster.ErrNotFound) && w != nil && (req.Count > 0 || rec.Scale != nil) {
				// Unless it is gone because the UFOP is (an unreg took
				// this operation over): deploying would undo the purge.
				if _, err := s.holdOp(ctx, rec.Name, op.ID); err != nil {
					return err
				}
				return s.orch.Deploy(ctx, *w)
			}
			return err
		}
	}
	user := c.GetString(ctxUser)
	if _, err := s.keeper.Update(c.Request.Context(), rec.Name, func(r *ufop.Record) error {
		// The policy may have changed since the record was read.
		if err := checkPolicyRange(r, req.Count); err != nil {
			return err
		}
		// In the same write: no other operation runs, this one does.
		if err := s.takeOp(r, op); err != nil {
			return err
		}
		from = r.Desired
		r.Desired = req.Count
		if r.Deployed == 0 {
			r.Deployed = op.Version
		}
		r.AddScaleEvent(ufop.ScaleEvent{
			Time: s.now().UTC(), From: from, To: req.Count, By: ufop.ByUser, User: user,
			Reason: fmt.Sprintf("qufop resize -n %d", req.Count),
		})
		return nil
	}); err != nil {
		fail(c, err)
		return
	}
	s.runOp(rec.Name, op, run)
	c.JSON(http.StatusAccepted, api.Resized{Name: rec.Name, From: from, To: req.Count, Version: op.Version})
}

// upgrade deploys the current version in place of the running one.
func (s *Server) upgrade(c *gin.Context) {
	rec := record(c)
	v, err := deployable(rec)
	if err != nil {
		fail(c, err)
		return
	}
	// With a policy, a UFOP at 0 instances is deployed all the same: the
	// scaler starts the new version when steps come.
	if rec.Desired == 0 && (rec.Scale == nil || rec.Deployed == 0) {
		fail(c, errs.BadRequest("ufop %q runs no instances: start some with `qufop resize %s -n N`", rec.Name, rec.Name))
		return
	}
	if rec.Deployed == v.N {
		c.JSON(http.StatusOK, api.Upgraded{Name: rec.Name, From: rec.Deployed, To: v.N, Version: v.N, Message: "already running the current version"})
		return
	}
	w, err := s.workload(rec, v, rec.Desired)
	if err != nil {
		fail(c, err)
		return
	}
	op := &ufop.Operation{Kind: "upgrade", Version: v.N, Count: rec.Desired}
	if _, err := s.keeper.Update(c.Request.Context(), rec.Name, func(r *ufop.Record) error {
		return s.takeOp(r, op)
	}); err != nil {
		fail(c, err)
		return
	}
	s.runOp(rec.Name, op, func(ctx context.Context) error {
		if err := s.orch.Deploy(ctx, w); err != nil {
			return err
		}
		_, err := s.keeper.Update(ctx, rec.Name, func(r *ufop.Record) error {
			r.Deployed = v.N
			return nil
		})
		return err
	})
	c.JSON(http.StatusAccepted, api.Upgraded{Name: rec.Name, From: rec.Deployed, To: v.N, Version: v.N})
}

func (s *Server) state(c *gin.Context) {
	rec := record(c)
	inst, err := s.orch.Instances(c.Request.Context(), rec.Name)
	if err != nil && !errors.Is(err, cluster.ErrNotFound) {
		fail(c, errs.Failed(err, "reading the instances of %q failed", rec.Name))
		return
	}
	views := make([]api.Instance, 0, len(inst))
	for _, in := range inst {
		views = append(views, instanceView(in))
	}
	c.JSON(http.StatusOK, api.State{
		Name: rec.Name, Desired: rec.Desired, Deployed: rec.Deployed, Current: rec.Current,
		Instances: views, Operation: opView(rec.Op, s.now()),
	})
}

func (s *Server) instanceLog(c *gin.Context) {
	rec := record(c)
	// Instances are numbered from 1 in the API, as on the command line.
	n, err := strconv.Atoi(c.Param("index"))
	if err != nil || n < 1 {
		fail(c, errs.BadRequest("bad instance index %q: instances are numbered from 1", c.Param("index")))
		return
	}
	idx := n - 1
	follow := c.Query("follow") == "1" || c.Query("follow") == "true"
	// Check the instance exists before the 200 goes out.
	inst, err := s.orch.Instances(c.Request.Context(), rec.Name)
	if err != nil && !errors.Is(err, cluster.ErrNotFound) {
		fail(c, errs.Failed(err, "reading the instances of %q failed", rec.Name))
		return
	}
	found := false
	for _, in := range inst {
		found = found || in.Index == idx
	}
	if !found {
		fail(c, errs.NotFound("ufop %q has no instance %d", rec.Name, n))
		return
	}
	c.Header("Content-Type", "text/plain; charset=utf-8")
	c.Header("Cache-Control", "no-store")
	c.Status(http.StatusOK)
	if err := s.orch.Logs(c.Request.Context(), rec.Name, idx, follow, flushWriter{c.Writer}); err != nil && c.Request.Context().Err() == nil {
		fmt.Fprintf(c.Writer, "\nqufop: log unavailable: %v\n", err)
	}
}
