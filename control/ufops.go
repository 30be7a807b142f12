package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/qufop/qufop/auth"
	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/control/api"
	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/ufop"
)

// bindJSON decodes a JSON body into v, only when the signature covers it:
// the body parsed must be the body signed. That is a JSON type, and either
// exactly application/json (in the signing string) or with a signed
// X-Qiniu-Content-Sha256, which auth.Verify made the body's reader check;
// so the body is read to its end before anything is decoded.
func bindJSON(c *gin.Context, v any) bool {
	r := c.Request
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if ct == "" || err != nil || mt != auth.TypeJSON || !auth.BodyCovered(r) {
		shown := ct
		if shown == "" {
			shown = "none"
		}
		fail(c, errs.New(http.StatusUnsupportedMediaType, "Content-Type %s: send the body as application/json (signed with the request)", shown))
		return false
	}
	if r.Body == nil {
		fail(c, errs.BadRequest("bad JSON body: empty"))
		return false
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, auth.MaxSignedBody+1))
	switch {
	case errors.Is(err, auth.ErrDigestMismatch):
		fail(c, errs.BadRequest("body does not match its %s", auth.HeaderSHA256))
		return false
	case err != nil:
		fail(c, errs.Wrap(http.StatusBadRequest, err, "reading the request body failed"))
		return false
	case len(b) > auth.MaxSignedBody:
		fail(c, errs.New(http.StatusRequestEntityTooLarge, "request body too large: over %d bytes", auth.MaxSignedBody))
		return false
	}
	if err := json.Unmarshal(b, v); err != nil {
		fail(c, errs.BadRequest("bad JSON body: %v", err))
		return false
	}
	return true
}

func (s *Server) register(c *gin.Context) {
	var req api.RegisterRequest
	if !bindJSON(c, &req) {
		return
	}
	if err := ufop.CheckName(req.Name); err != nil {
		fail(c, errs.BadRequest("%v", err))
		return
	}
	mode, err := ufop.ParseMode(req.Mode)
	if err != nil {
		fail(c, errs.BadRequest("%v", err))
		return
	}
	rec := ufop.Record{
		Name:         req.Name,
		Owner:        c.GetString(ctxUser),
		Mode:         mode,
		Desc:         req.Description,
		CreatedAt:    s.now().UTC(),
		Versions:     []ufop.Version{},
		MaxInstances: ufop.DefaultMaxInstances,
	}
	if err := s.keeper.Create(c.Request.Context(), rec); err != nil {
		fail(c, err)
		return
	}
	s.log.Info("ufop registered", "ufop", rec.Name, "owner", rec.Owner, "mode", rec.Mode)
	c.JSON(http.StatusOK, ufopView(&rec))
}

// list returns the caller's UFOPs.
func (s *Server) list(c *gin.Context) {
	all, err := s.keeper.List(c.Request.Context())
	if err != nil {
		fail(c, err)
		return
	}
	user := c.GetString(ctxUser)
	mine := []api.UFOP{}
	for i := range all {
		if all[i].Owner == user {
			mine = append(mine, ufopView(&all[i]))
		}
	}
	c.JSON(http.StatusOK, mine)
}

func (s *Server) info(c *gin.Context) {
	rec := record(c)
	if rec.Owner != c.GetString(ctxUser) {
		// Public UFOPs of others: their existence and mode, nothing more.
		c.JSON(http.StatusOK, publicView(rec))
		return
	}
	c.JSON(http.StatusOK, ufopView(rec))
}

// unregister stops every instance, forgets the workload and deletes the
// record. It cannot be undone (as on Qiniu).
func (s *Server) unregister(c *gin.Context) {
	rec := record(c)
	if s.buildRunning(rec.Name) {
		fail(c, errs.New(http.StatusConflict, "ufop %q has a build running; wait for it to end", rec.Name))
		return
	}
	// unreg is an operation too: it waits for none, it refuses while
	// another runs (on any control process), and none starts while it runs.
	op := &ufop.Operation{Kind: "unreg"}
	if _, err := s.keeper.Update(c.Request.Context(), rec.Name, func(r *ufop.Record) error {
		return s.takeOp(r, op)
	}); err != nil {
		fail(c, err)
		return
	}
	ctx, cancel := context.WithCancelCause(c.Request.Context())
	defer cancel(nil)
	stop := s.heartbeat(ctx, cancel, rec.Name, op.ID, op.Expires)
	defer stop()
	failOp := func(err error) {
		if cause := context.Cause(ctx); errors.Is(cause, errOpLost) {
			err = errs.Wrap(http.StatusConflict, cause, "ufop %q: unreg interrupted: %v", rec.Name, cause)
		}
		s.endOp(rec.Name, op, err)
		fail(c, err)
	}
	if err := s.orch.Stop(ctx, rec.Name, true); err != nil && !errors.Is(err, cluster.ErrNotFound) {
		failOp(errs.Failed(err, "stopping the instances of %q failed", rec.Name))
		return
	}
	res := api.Unregistered{Name: rec.Name, Deleted: true, Removed: []string{}}
	bases, err := s.basesOf(ctx, rec)
	if err != nil {
		failOp(err)
		return
	}
	// The instances are gone: nothing holds the builds any more but other
	// UFOPs' versions built on them, which keep theirs.
	for _, v := range rec.Versions {
		art := v.Image + v.Dir
		switch {
		case art == "":
		case bases[v.N] != "":
			res.Kept = append(res.Kept, api.Kept{Artifact: art, Reason: bases[v.N]})
		default:
			if err := s.build.Remove(ctx, art); err != nil {
				res.Warnings = append(res.Warnings, errs.Public(err))
				s.log.Warn("removing a build of an unregistered ufop", "ufop", rec.Name, "version", v.N, "err", err)
				continue
			}
			res.Removed = append(res.Removed, art)
		}
	}
	// The lease lost meanwhile: another process may run an operation now.
	if err := context.Cause(ctx); err != nil {
		failOp(err)
		return
	}
	if err := s.keeper.Delete(ctx, rec.Name); err != nil {
		failOp(err)
		return
	}
	s.log.Info("ufop unregistered", "ufop", rec.Name, "removed", len(res.Removed), "kept", len(res.Kept))
	c.JSON(http.StatusOK, res)
}

// basesOf says which versions of rec other UFOPs of its owner build on
// (ufop.yaml image: "<name>.v<N>"), and which: those builds must stay.
func (s *Server) basesOf(ctx context.Context, rec *ufop.Record) (map[int]string, error) {
	all, err := s.keeper.List(ctx)
	if err != nil {
		return nil, err
	}
	bases := map[int]string{}
	for _, other := range all {
		if other.Name == rec.Name || other.Owner != rec.Owner {
			continue
		}
		for _, v := range other.Versions {
			if v.Spec == nil {
				continue
			}
			if n, ok := ufop.BaseVersion(v.Spec.Image, rec.Name); ok && bases[n] == "" {
				bases[n] = fmt.Sprintf("the base of %s version %d", other.Name, v.N)
			}
		}
	}
	return bases, nil
}

// chver picks the current version; instances change only on upgrade.
func (s *Server) chver(c *gin.Context) {
	var req api.VersionRequest
	if !bindJSON(c, &req) {
		return
	}
	rec, err := s.keeper.Update(c.Request.Context(), record(c).Name, func(r *ufop.Record) error {
		v := r.Version(req.Version)
		switch {
		case v == nil:
			return errs.NotFound("ufop %q has no version %d", r.Name, req.Version)
		case v.State != ufop.BuildSuccess:
			return errs.BadRequest("version %d of %q is %q: only a successful build can be chosen", v.N, r.Name, v.State)
		}
		r.Current = v.N
		return nil
	})
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, ufopView(rec))
}
