package control

import (
	"context"
	"errors"
	"fmt"

	"github.com/qufop/qufop/cluster"
)

// ScaleTarget is the scaler's target through the control plane, for the
// scaler that runs beside it (qufop dev). It scales with the orchestrator
// and, when the orchestrator knows no workload of the UFOP (qufop dev
// restarted while the UFOP ran no instance, so there was nothing to adopt),
// deploys the version the record says is deployed, at the count asked: a
// waiting step of a UFOP at min 0 starts it again instead of timing out.
type ScaleTarget struct{ s *Server }

// ScaleTarget returns the scaler's target.
func (s *Server) ScaleTarget() ScaleTarget { return ScaleTarget{s} }

// Scale implements the scaler's Target.
func (t ScaleTarget) Scale(ctx context.Context, name string, count int, reason string, meta map[string]string) error {
	err := t.s.orch.Scale(ctx, name, count, reason, meta)
	if !errors.Is(err, cluster.ErrNotFound) || count == 0 {
		return err
	}
	rec, gerr := t.s.keeper.Get(ctx, name)
	if gerr != nil {
		return errors.Join(err, gerr)
	}
	if op := t.s.opRunning(rec); op != nil {
		return fmt.Errorf("scale %s: %s %s is in progress: %w", name, article(op.Kind), op.Kind, cluster.ErrSkipped)
	}
	v := rec.Version(rec.Deployed)
	if v == nil || v.Spec == nil {
		return err
	}
	w, werr := t.s.workload(rec, v, count)
	if werr != nil {
		return errors.Join(err, werr)
	}
	t.s.log.Info("scaler: deploying again: the orchestrator had lost it", "ufop", name, "version", v.N, "count", count)
	return t.s.orch.Deploy(ctx, w)
}
