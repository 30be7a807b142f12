package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/qufop/qufop/client"
	"github.com/qufop/qufop/control/api"
)

// Instances are numbered from 1 on the command line and in the API, as in
// qufopctl.

func newResizeCmd() *cobra.Command {
	var (
		n       int
		timeout time.Duration
		noWait  bool
	)
	cmd := ufopCmd(&cobra.Command{
		Use:   "resize <ufop> -n N",
		Short: "Run N instances of a UFOP and wait until they are healthy",
		Long: `resize sets the instance count of a UFOP. From zero it deploys the current
version; otherwise it scales the running one. It waits (up to --timeout) until
N instances are healthy, showing their state as it changes.`,
	}, func(cmd *cobra.Command, c *client.Client, name string) error {
		if !cmd.Flags().Changed("num") {
			return errors.New("resize needs -n N, the number of instances")
		}
		if n < 0 {
			return fmt.Errorf("bad -n %d: the instance count must not be negative", n)
		}
		res, err := c.Resize(cmd.Context(), name, n)
		if err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Resize instance num from %d to %d.\n", res.From, res.To)
		if noWait {
			return nil
		}
		ctx, stop := interruptContext(cmd.Context())
		defer stop()
		return waitDeploy(ctx, cmd.OutOrStdout(), c, name, deployGoal{kind: "resize", count: n, op: res.Started}, timeout)
	})
	cmd.Flags().IntVarP(&n, "num", "n", 0, "number of instances")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait for the instances")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "return at once; follow with qufop state")
	return cmd
}

func newUpgradeCmd() *cobra.Command {
	var (
		timeout time.Duration
		noWait  bool
	)
	cmd := ufopCmd(&cobra.Command{
		Use:   "upgrade <ufop>",
		Short: "Replace the running instances with the current version and wait until they are healthy",
	}, func(cmd *cobra.Command, c *client.Client, name string) error {
		res, err := c.Upgrade(cmd.Context(), name)
		if err != nil {
			return err
		}
		w := cmd.OutOrStdout()
		if !res.Started {
			fmt.Fprintf(w, "Ufop %s: %s (version %d).\n", name, res.Message, res.To)
			return nil
		}
		fmt.Fprintf(w, "Upgrade %s from version %d to %d.\n", name, res.From, res.To)
		if noWait {
			return nil
		}
		st, err := c.State(cmd.Context(), name)
		if err != nil {
			return err
		}
		ctx, stop := interruptContext(cmd.Context())
		defer stop()
		return waitDeploy(ctx, w, c, name, deployGoal{kind: "upgrade", count: st.Desired, version: res.To, op: true}, timeout)
	})
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait for the new instances")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "return at once; follow with qufop state")
	return cmd
}

// deployGoal is what waitDeploy waits for: count healthy instances of
// version (0: the deployed one) and no others, and the operation (when
// one was started) done. With count anyCount, every instance present is
// healthy, however many there are (the scaler may change the count).
type deployGoal struct {
	kind    string
	count   int
	version int
	op      bool
}

const anyCount = -1

// waitDeploy polls the state until goal is reached, printing the
// instances whose state changes.
func waitDeploy(ctx context.Context, w io.Writer, c *client.Client, name string, goal deployGoal, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	seen := map[int]string{}
	healthy := 0
	for {
		st, err := c.State(ctx, name)
		if err != nil && ctx.Err() == nil {
			return err
		}
		if err == nil {
			version := goal.version
			if version == 0 {
				version = st.Deployed
			}
			present := 0
			healthy = 0
			for _, in := range sortedInstances(st.Instances) {
				if in.State == "exited" {
					continue
				}
				present++
				if in.Version == version && in.Healthy {
					healthy++
				}
				if line := instanceLine(in); seen[in.Index] != line {
					seen[in.Index] = line
					fmt.Fprintln(w, line)
				}
			}
			op := st.Operation
			if goal.op && op != nil && op.Done && op.Error != "" {
				return fmt.Errorf("%s of %s failed: %s", goal.kind, name, op.Error)
			}
			opDone := !goal.op || op == nil || op.Done
			want := goal.count
			if want == anyCount {
				want = present
			}
			if opDone && healthy == want && present == want {
				if want == 0 {
					fmt.Fprintf(w, "Ufop %s runs no instances.\n", name)
				} else {
					fmt.Fprintf(w, "%d instance(s) of %s version %d healthy.\n", healthy, name, version)
				}
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				of := ""
				if goal.count != anyCount {
					of = fmt.Sprintf(" of %d", goal.count)
				}
				return fmt.Errorf("%s of %s not done after %s (%d%s instances healthy); it goes on: see qufop state %s", goal.kind, name, timeout, healthy, of, name)
			}
			return fmt.Errorf("interrupted; the %s goes on: see qufop state %s", goal.kind, name)
		case <-time.After(ufopPollInterval):
		}
	}
}

func sortedInstances(in []api.Instance) []api.Instance {
	out := append([]api.Instance(nil), in...)
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out
}

// instanceLine is qufopctl's "instance 1\t[state] Running", with the
// version and what else the orchestrator says.
func instanceLine(in api.Instance) string {
	state := in.State
	if state == "" {
		state = "unknown"
	}
	state = strings.ToUpper(state[:1]) + state[1:]
	s := fmt.Sprintf("instance %d\t[state] %s\t[version] %d", in.Index, state, in.Version)
	if in.State == "running" && !in.Healthy {
		s += "\t[health] failing"
	}
	if in.Restarts > 0 {
		s += fmt.Sprintf("\t[restarts] %d", in.Restarts)
	}
	if in.Message != "" {
		s += "\t" + in.Message
	}
	return s
}

// parseRange reads -range START:END (1-based, inclusive).
func parseRange(s string) (int, int, error) {
	a, b, ok := strings.Cut(s, ":")
	start, err1 := strconv.Atoi(strings.TrimSpace(a))
	end, err2 := strconv.Atoi(strings.TrimSpace(b))
	if !ok || err1 != nil || err2 != nil || start < 1 || end < start {
		return 0, 0, fmt.Errorf("bad -range %q: want START:END with 1 <= START <= END, e.g. 1:3", s)
	}
	return start, end, nil
}

func newStateCmd() *cobra.Command {
	var (
		index  int
		rng    string
		asJSON bool
	)
	cmd := ufopCmd(&cobra.Command{
		Use:   "state <ufop> [-index I | -range A:B]",
		Short: "Show the instances of a UFOP (numbered from 1)",
	}, func(cmd *cobra.Command, c *client.Client, name string) error {
		hasIndex, hasRange := cmd.Flags().Changed("index"), cmd.Flags().Changed("range")
		lo, hi := 1, int(^uint(0)>>1)
		switch {
		case hasIndex && hasRange:
			return errors.New("give -index or -range, not both")
		case hasIndex:
			if index < 1 {
				return fmt.Errorf("bad -index %d: instances are numbered from 1", index)
			}
			lo, hi = index, index
		case hasRange:
			var err error
			if lo, hi, err = parseRange(rng); err != nil {
				return err
			}
		}
		st, err := c.State(cmd.Context(), name)
		if err != nil {
			return err
		}
		var sel []api.Instance
		for _, in := range sortedInstances(st.Instances) {
			if in.Index >= lo && in.Index <= hi {
				sel = append(sel, in)
			}
		}
		if hasIndex && len(sel) == 0 {
			return fmt.Errorf("ufop %s has no instance %d (%d running; numbered from 1)", name, index, len(st.Instances))
		}
		w := cmd.OutOrStdout()
		if asJSON {
			out := *st
			out.Instances = sel
			if out.Instances == nil {
				out.Instances = []api.Instance{}
			}
			return printJSON(w, out)
		}
		if !hasIndex && !hasRange {
			printStateSummary(w, st)
		}
		if len(sel) == 0 && !hasIndex && !hasRange {
			fmt.Fprintln(w, "no instances")
		}
		for _, in := range sel {
			fmt.Fprintln(w, instanceLine(in))
		}
		return nil
	})
	cmd.Flags().IntVar(&index, "index", 0, "show instance I only (from 1)")
	cmd.Flags().StringVar(&rng, "range", "", "show instances START:END (from 1, inclusive)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON")
	return cmd
}

func printStateSummary(w io.Writer, st *api.State) {
	fmt.Fprintf(w, "Ufop name:\t %s\n", st.Name)
	fmt.Fprintf(w, "Instance num:\t %d\n", st.Desired)
	fmt.Fprintf(w, "Running version:\t %s\n", versionLabel(st.Deployed))
	fmt.Fprintf(w, "Current version:\t %s\n", versionLabel(st.Current))
	if op := st.Operation; op != nil {
		status := "in progress"
		switch {
		case op.Done && op.Error != "":
			status = "failed: " + op.Error
		case op.Done:
			status = "done"
		}
		fmt.Fprintf(w, "Last operation:\t %s to %d instance(s) of version %d, %s\n", op.Kind, op.Count, op.Version, status)
	}
}

func newLogsCmd() *cobra.Command {
	var (
		index  int
		follow bool
	)
	cmd := ufopCmd(&cobra.Command{
		Use:   "logs <ufop> [-index I] [-f]",
		Short: "Print the output of an instance (numbered from 1); -f follows it until Ctrl-C",
	}, func(cmd *cobra.Command, c *client.Client, name string) error {
		if index < 1 {
			return fmt.Errorf("bad -index %d: instances are numbered from 1", index)
		}
		ctx, stop := interruptContext(cmd.Context())
		defer stop()
		err := c.Logs(ctx, name, index, follow, cmd.OutOrStdout())
		if client.IsStatus(err, 404) && strings.Contains(err.Error(), "no instance") {
			return fmt.Errorf("ufop %s has no instance %d (numbered from 1: see qufop state %s)", name, index, name)
		}
		if err != nil && ctx.Err() != nil {
			return nil // Ctrl-C ends a follow
		}
		return err
	})
	cmd.Flags().IntVar(&index, "index", 1, "instance to show (from 1)")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing until Ctrl-C")
	return cmd
}
