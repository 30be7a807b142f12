package cli

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/qufop/qufop/client"
	"github.com/qufop/qufop/control/api"
)

// scalePolicyFlags are the flags of a policy, which --off takes none of.
var scalePolicyFlags = []string{"min", "max", "target", "interval", "up-cooldown", "down-cooldown", "down-window"}

func newScalePolicyCmd() *cobra.Command {
	var (
		minN, maxN                       int
		target                           float64
		interval, upCool, downCool, down time.Duration
		off, noWait                      bool
		timeout                          time.Duration
	)
	cmd := ufopCmd(&cobra.Command{
		Use:   "scale-policy <ufop> --min N --max N --target X [--interval D] [--up-cooldown D] [--down-cooldown D] [--down-window D] | --off",
		Short: "Let the scaler size a UFOP from its queue; --off returns it to manual counts",
		Long: `scale-policy sets how the scaler sizes a UFOP: it keeps
ceil((steps waiting + steps in flight) / target) instances, within [min, max].
The instance count is clamped into the range at once; a UFOP never deployed
is deployed at min (0 too: the first step waiting starts an instance).
resize still works inside the range. --off removes the policy: the count
stays where it is, and changes only with resize.`,
	}, func(cmd *cobra.Command, c *client.Client, name string) error {
		f := cmd.Flags()
		var (
			res *client.ScalePolicyResult
			err error
		)
		if off {
			for _, fl := range scalePolicyFlags {
				if f.Changed(fl) {
					return fmt.Errorf("--off takes no other policy flag (got --%s)", fl)
				}
			}
			res, err = c.ScalePolicyOff(cmd.Context(), name)
		} else {
			var missing []string
			for _, fl := range []string{"min", "max", "target"} {
				if !f.Changed(fl) {
					missing = append(missing, "--"+fl)
				}
			}
			if len(missing) > 0 {
				return fmt.Errorf("scale-policy needs %s (or --off to return to manual counts)", strings.Join(missing, ", "))
			}
			dur := func(flag string, d time.Duration) string {
				if !f.Changed(flag) {
					return "" // the server's default
				}
				return d.String()
			}
			res, err = c.SetScalePolicy(cmd.Context(), name, api.ScalePolicy{
				Min: minN, Max: maxN, Target: target,
				Interval: dur("interval", interval), UpCooldown: dur("up-cooldown", upCool),
				DownCooldown: dur("down-cooldown", downCool), DownWindow: dur("down-window", down),
			})
		}
		if err != nil {
			return err
		}
		w := cmd.OutOrStdout()
		if res.Policy == nil {
			fmt.Fprintf(w, "Ufop %s: scale policy off.\n", res.Name)
		} else {
			fmt.Fprintf(w, "Ufop %s: scale policy %s.\n", res.Name, policyLine(res.Policy))
		}
		if res.Message != "" {
			fmt.Fprintf(w, "%s.\n", strings.ToUpper(res.Message[:1])+res.Message[1:])
		}
		if !res.Started || noWait {
			return nil
		}
		ctx, stop := interruptContext(cmd.Context())
		defer stop()
		return waitDeploy(ctx, w, c, name, deployGoal{kind: "scale-policy", count: anyCount, op: true}, timeout)
	})
	f := cmd.Flags()
	f.IntVar(&minN, "min", 0, "fewest instances (0: none while no step comes)")
	f.IntVar(&maxN, "max", 0, "most instances (at most the UFOP's limit)")
	f.Float64Var(&target, "target", 0, "steps waiting plus in flight that one healthy instance should carry")
	f.DurationVar(&interval, "interval", 0, "how often the scaler evaluates the UFOP (default 2s)")
	f.DurationVar(&upCool, "up-cooldown", 0, "quiet time after a change before the next step up (default 2s)")
	f.DurationVar(&downCool, "down-cooldown", 0, "quiet time after a change before the next step down (default 15s)")
	f.DurationVar(&down, "down-window", 0, "scale down only to the highest count wanted during this window (default 30s)")
	f.BoolVar(&off, "off", false, "remove the policy: back to manual counts (qufop resize)")
	f.DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait for a deployment the policy starts")
	f.BoolVar(&noWait, "no-wait", false, "return at once; follow with qufop state")
	return cmd
}

// policyLine is a policy on one line, in the flags' words.
func policyLine(p *api.ScalePolicy) string {
	return fmt.Sprintf("min %d, max %d, target %s, interval %s, up-cooldown %s, down-cooldown %s, down-window %s",
		p.Min, p.Max, figure(p.Target), p.Interval, p.UpCooldown, p.DownCooldown, p.DownWindow)
}

func figure(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// printScale writes the policy of `qufop info` and its last changes of
// count, oldest first.
func printScale(w io.Writer, rec *api.UFOP) error {
	if rec.ScalePolicy == nil {
		fmt.Fprintf(w, "Scale policy:\t off (manual counts: qufop resize)\n")
	} else {
		fmt.Fprintf(w, "Scale policy:\t %s\n", policyLine(rec.ScalePolicy))
	}
	if len(rec.ScaleHistory) == 0 {
		return nil
	}
	fmt.Fprintf(w, "Scale events (last %d, oldest first):\n", len(rec.ScaleHistory))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  TIME\tCOUNT\tBY\tPENDING\tIN-FLIGHT\tCAPACITY\tREASON")
	for _, e := range rec.ScaleHistory {
		count := fmt.Sprintf("%d→%d", e.From, e.To)
		if e.Skipped {
			count += " skipped"
			if e.Repeats > 0 {
				count += fmt.Sprintf("×%d", e.Repeats+1)
			}
		}
		by := e.By
		if e.User != "" {
			by += " " + e.User
		}
		pending, inFlight, capacity := "-", "-", "-"
		if e.By == api.ByScaler {
			pending, inFlight, capacity = figure(e.Pending), figure(e.InFlight), figure(e.Capacity)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Time.Local().Format("2006-01-02 15:04:05"),
			count, by, pending, inFlight, capacity, orDash(e.Reason))
	}
	return tw.Flush()
}
