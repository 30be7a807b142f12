package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/client/clienttest"
	"github.com/qufop/qufop/control/api"
	"github.com/qufop/qufop/ufop"
)

func TestScalePolicyVerb(t *testing.T) {
	srv := clienttest.Start(t)
	cliEnv(t)
	t.Setenv(envAddr, srv.URL)
	t.Setenv(envAccessKey, srv.Creds.AccessKey)
	t.Setenv(envSecretKey, srv.Creds.SecretKey)
	_, _, err := runCLI(t, "reg", "demo-scale")
	require.NoError(t, err)
	_, _, err = runCLI(t, "build", "demo-scale", "-f", writeApp(t, "./app"))
	require.NoError(t, err)
	_, _, err = runCLI(t, "chver", "demo-scale", "-c", "1")
	require.NoError(t, err)

	// Bad values: one line, non-zero exit, nothing set.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "scale-policy needs --min, --max, --target (or --off to return to manual counts)"},
		{[]string{"--min", "1", "--max", "2"}, "scale-policy needs --target (or --off to return to manual counts)"},
		{[]string{"--off", "--min", "1"}, "--off takes no other policy flag (got --min)"},
		{[]string{"--off", "--down-window", "1m"}, "--off takes no other policy flag (got --down-window)"},
		{[]string{"--min", "3", "--max", "2", "--target", "1"}, "--min 3 is over --max 2"},
		{[]string{"--min", "-1", "--max", "2", "--target", "1"}, "--min must not be negative, got -1"},
		{[]string{"--min", "1", "--max", "2", "--target", "0"}, "--target must be a number more than 0 (steps per instance), got 0"},
		{[]string{"--min", "1", "--max", "2", "--target", "-1.5"}, "--target must be a number more than 0 (steps per instance), got -1.5"},
		{[]string{"--min", "1", "--max", "9", "--target", "1"}, "--max 9 is over the limit of 5 instances for this ufop"},
		{[]string{"--min", "1", "--max", "2", "--target", "1", "--interval", "-1s"}, "--interval must be at least 100ms, got -1s"},
		{[]string{"--min", "1", "--max", "2", "--target", "1", "--up-cooldown", "-1s"}, "--up-cooldown must not be negative, got -1s"},
		{[]string{"--min", "1", "--max", "2", "--target", "1", "--down-cooldown", "-5s"}, "--down-cooldown must not be negative, got -5s"},
		{[]string{"--min", "1", "--max", "2", "--target", "1", "--down-window", "-1m"}, "--down-window must not be negative, got -1m0s"},
		{[]string{"--min", "1", "--max", "2", "--target", "lots"}, `invalid argument "lots" for "--target" flag: strconv.ParseFloat: parsing "lots": invalid syntax`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, _, err := runCLI(t, append([]string{"scale-policy", "demo-scale"}, tc.args...)...)
			require.EqualError(t, err, tc.want)
			assert.NotContains(t, err.Error(), "\n")
			assert.Empty(t, out)
		})
	}
	_, _, err = runCLI(t, "scale-policy", "nope-ufop", "--off")
	require.EqualError(t, err, `no such ufop "nope-ufop"`)
	assert.Empty(t, srv.Orch.Calls("demo-scale"))

	// A policy on a UFOP never deployed deploys it at min.
	out, _, err := runCLI(t, "scale-policy", "demo-scale", "--min", "0", "--max", "3", "--target", "2")
	require.NoError(t, err)
	assert.Equal(t, "Ufop demo-scale: scale policy min 0, max 3, target 2, interval 2s, up-cooldown 2s, down-cooldown 15s, down-window 30s.\n"+
		"Deploying version 1 at 0 instance(s), the minimum.\nUfop demo-scale runs no instances.\n", out)
	calls := srv.Orch.Calls("demo-scale")
	require.Len(t, calls, 1)
	assert.Equal(t, 0, calls[0].Workload.Count)
	assert.NotNil(t, calls[0].Workload.Scaling)

	// resize inside the range, then outside it.
	out, _, err = runCLI(t, "resize", "demo-scale", "-n", "2")
	require.NoError(t, err)
	assert.Contains(t, out, "2 instance(s) of demo-scale version 1 healthy.\n")
	_, _, err = runCLI(t, "resize", "demo-scale", "-n", "4")
	require.EqualError(t, err, "instance count 4 is outside the scale policy of \"demo-scale\", [0, 3]: resize within it, or return to manual counts with `qufop scale-policy demo-scale --off`")

	// A narrower range clamps the count; the durations given are kept.
	out, _, err = runCLI(t, "scale-policy", "demo-scale", "--min", "1", "--max", "1", "--target", "0.5", "--interval", "500ms", "--down-window", "1m")
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(out, "Ufop demo-scale: scale policy min 1, max 1, target 0.5, interval 500ms, up-cooldown 2s, down-cooldown 15s, down-window 1m0s.\n"+
		"Instance count 2 -> 1, into [1, 1]; redeploying version 1 to give the orchestrator the range [1, 1].\n"), out)
	assert.Contains(t, out, "1 instance(s) of demo-scale version 1 healthy.\n")

	// What the scaler would record, then info.
	at := time.Date(2026, 12, 1, 20, 0, 0, 0, time.UTC)
	_, err = srv.Keeper.Update(context.Background(), "demo-scale", func(r *ufop.Record) error {
		r.AddScaleEvent(ufop.ScaleEvent{Time: at, From: 1, To: 3, By: ufop.ByScaler, Pending: 5, InFlight: 2.5, Capacity: 2, Reason: "work over target"})
		for range 3 {
			r.AddScaleEvent(ufop.ScaleEvent{Time: at, From: 3, To: 4, By: ufop.ByScaler, Pending: 9, InFlight: 6, Capacity: 6, Skipped: true, Reason: "active deployment"})
		}
		return nil
	})
	require.NoError(t, err)
	out, _, err = runCLI(t, "info", "demo-scale")
	require.NoError(t, err)
	assert.Contains(t, out, "Flavor:\t C1M1\nScale policy:\t min 1, max 1, target 0.5, interval 500ms, up-cooldown 2s, down-cooldown 15s, down-window 1m0s\nScale events (last 4, oldest first):\n")
	local := at.Local().Format("2006-01-02 15:04:05")
	lines := strings.Split(strings.TrimRight(out[strings.Index(out, "Scale events"):], "\n"), "\n")
	require.Len(t, lines, 6, out)
	assert.Regexp(t, `^  TIME\s+COUNT\s+BY\s+PENDING\s+IN-FLIGHT\s+CAPACITY\s+REASON$`, lines[1])
	assert.Regexp(t, `^  20\S+ \S+\s+0→2\s+user alice\s+-\s+-\s+-\s+qufop resize -n 2$`, lines[2])
	assert.Regexp(t, `^  20\S+ \S+\s+2→1\s+user alice\s+-\s+-\s+-\s+qufop scale-policy --min 1 --max 1$`, lines[3])
	assert.Regexp(t, `^  `+local+`\s+1→3\s+scaler\s+5\s+2\.5\s+2\s+work over target$`, lines[4])
	assert.Regexp(t, `^  `+local+`\s+3→4 skipped×3\s+scaler\s+9\s+6\s+6\s+active deployment$`, lines[5])

	out, _, err = runCLI(t, "info", "demo-scale", "--json")
	require.NoError(t, err)
	var rec api.UFOP
	require.NoError(t, json.Unmarshal([]byte(out), &rec))
	assert.Equal(t, &api.ScalePolicy{Min: 1, Max: 1, Target: 0.5, Interval: "500ms", UpCooldown: "2s", DownCooldown: "15s", DownWindow: "1m0s"}, rec.ScalePolicy)
	require.Len(t, rec.ScaleHistory, 4)
	assert.Equal(t, api.ScaleEvent{Time: at, From: 3, To: 4, By: "scaler", Pending: 9, InFlight: 6, Capacity: 6, Reason: "active deployment", Skipped: true, Repeats: 2}, rec.ScaleHistory[3])
	for _, key := range []string{`"scale_policy"`, `"up_cooldown"`, `"down_window"`, `"scale_history"`, `"in_flight"`} {
		assert.Contains(t, out, key)
	}

	// --off: the count stays, resize takes any count again.
	out, _, err = runCLI(t, "scale-policy", "demo-scale", "--off", "--no-wait")
	require.NoError(t, err)
	assert.Equal(t, "Ufop demo-scale: scale policy off.\nManual counts: the instance count stays 1 (qufop resize changes it); redeploying version 1 without a range.\n", out)
	out, _, err = runCLI(t, "state", "demo-scale")
	require.NoError(t, err)
	assert.Contains(t, out, "Last operation:\t scale-policy to 1 instance(s) of version 1")
	require.Eventually(t, func() bool {
		st, err := clientOf(t, srv).State(context.Background(), "demo-scale")
		return err == nil && st.Operation != nil && st.Operation.Done
	}, time.Minute, 10*time.Millisecond)
	out, _, err = runCLI(t, "info", "demo-scale")
	require.NoError(t, err)
	assert.Contains(t, out, "Scale policy:\t off (manual counts: qufop resize)\n")
	out, _, err = runCLI(t, "scale-policy", "demo-scale", "--off")
	require.NoError(t, err)
	assert.Equal(t, "Ufop demo-scale: scale policy off.\nManual counts: the instance count stays 1 (qufop resize changes it).\n", out)
	_, _, err = runCLI(t, "resize", "demo-scale", "-n", "5")
	require.NoError(t, err)
}
