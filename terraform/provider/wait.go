package provider

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/qufop/qufop/client"
	"github.com/qufop/qufop/control/api"
)

// pollInterval is how often the provider polls the API while it waits, as
// the CLI does (cli/ufop_build.go).
var pollInterval = 500 * time.Millisecond

// anyCount: every instance present is healthy, however many there are
// (the scaler owns the count).
const anyCount = -1

// goal is what waitDeploy waits for, as the CLI's resize, upgrade and
// scale-policy wait: count healthy instances of version (0: the deployed
// one) and no others, and the last operation done without error.
type goal struct {
	kind    string
	count   int
	version int
}

// waitDeploy polls the UFOP's state until g is reached, ctx ends or the
// last operation fails.
func waitDeploy(ctx context.Context, c *client.Client, name string, g goal) error {
	var last string
	for {
		st, err := c.State(ctx, name)
		if err != nil && ctx.Err() == nil {
			return err
		}
		if err == nil {
			version := g.version
			if version == 0 {
				version = st.Deployed
			}
			present, healthy := 0, 0
			for _, in := range st.Instances {
				if in.State == "exited" {
					continue
				}
				present++
				if in.Version == version && in.Healthy {
					healthy++
				}
			}
			last = describeInstances(st)
			tflog.Debug(ctx, "waiting for "+g.kind, map[string]any{"ufop": name, "instances": last})
			op := st.Operation
			if op != nil && op.Done && op.Error != "" {
				return fmt.Errorf("%s of %s failed: %s", g.kind, name, op.Error)
			}
			want := g.count
			if want == anyCount {
				want = present
			}
			if (op == nil || op.Done) && healthy == want && present == want {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("%s of %s not done in time (instances: %s); it goes on: see qufop state %s, or raise wait_timeout", g.kind, name, last, name)
			}
			return fmt.Errorf("interrupted; the %s of %s goes on: see qufop state %s", g.kind, name, name)
		case <-time.After(pollInterval):
		}
	}
}

// describeInstances is the instances on one line, for messages.
func describeInstances(st *api.State) string {
	if len(st.Instances) == 0 {
		return "none"
	}
	in := append([]api.Instance(nil), st.Instances...)
	sort.Slice(in, func(i, j int) bool { return in[i].Index < in[j].Index })
	parts := make([]string, 0, len(in))
	for _, i := range in {
		s := fmt.Sprintf("%d: %s v%d", i.Index, i.State, i.Version)
		if i.State == "running" && !i.Healthy {
			s += " unhealthy"
		}
		if i.Message != "" {
			s += " (" + i.Message + ")"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

// whenIdle runs call, and when the API answers that another operation is
// in progress (409), waits for it to end and calls again: another client
// (the scaler, a CLI user) may hold the UFOP for a moment.
func whenIdle(ctx context.Context, c *client.Client, name string, call func() error) error {
	for {
		err := call()
		if !client.IsStatus(err, http.StatusConflict) || !strings.Contains(err.Error(), "in progress") {
			return err
		}
		tflog.Info(ctx, "waiting for another operation to end", map[string]any{"ufop": name, "error": err.Error()})
		for {
			st, serr := c.State(ctx, name)
			if serr == nil && (st.Operation == nil || st.Operation.Done) {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%v (gave up waiting: %v)", err, ctx.Err())
			case <-time.After(pollInterval):
			}
		}
	}
}
