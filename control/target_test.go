package control_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/client"
	"github.com/qufop/qufop/client/clienttest"
	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/ufop"
)

// The scaler's target through the control plane deploys a UFOP the
// orchestrator lost (qufop dev restarted with none of its instances to
// adopt), at the count asked, instead of failing every round.
func TestScaleTargetDeploysWhatTheOrchestratorLost(t *testing.T) {
	srv := clienttest.Start(t)
	c := client.New(srv.URL, srv.Creds)
	ctx := context.Background()
	built(t, c, "lost", true)
	built(t, c, "never", true)
	// "lost" ran version 1 and was scaled to 0 by the scaler; the
	// orchestrator (a new process) knows nothing of it.
	_, err := srv.Keeper.Update(ctx, "lost", func(r *ufop.Record) error {
		r.Deployed, r.Desired = 1, 0
		r.Scale = &ufop.ScalePolicy{Min: 0, Max: 3, Target: 2}
		return nil
	})
	require.NoError(t, err)
	target := srv.Control.ScaleTarget()

	require.NoError(t, target.Scale(ctx, "lost", 1, "activation", nil))
	calls := srv.Orch.Calls("lost")
	require.Len(t, calls, 2, "%+v", calls)
	assert.Equal(t, "scale", calls[0].Op)
	assert.Equal(t, "deploy", calls[1].Op)
	assert.Equal(t, 1, calls[1].Workload.Count)
	assert.Equal(t, 1, calls[1].Workload.Version)
	assert.Equal(t, &cluster.Scaling{Min: 0, Max: 3}, calls[1].Workload.Scaling)

	// Scaled again: the orchestrator knows it now.
	require.NoError(t, target.Scale(ctx, "lost", 2, "more", nil))
	assert.Len(t, srv.Orch.Calls("lost"), 3)

	// Nothing deployed ever, or a count of 0: the orchestrator's answer.
	err = target.Scale(ctx, "never", 1, "x", nil)
	assert.True(t, errors.Is(err, cluster.ErrNotFound), "%v", err)
	err = target.Scale(ctx, "nope", 0, "x", nil)
	assert.True(t, errors.Is(err, cluster.ErrNotFound), "%v", err)
}
