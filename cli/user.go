package cli

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/qufop/qufop/control/api"
)

// newUserCmd is `qufop user ...`: the admin's verbs on users.
func newUserCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "user",
		Short: "Manage the platform's users, their keys and limits (admin only)",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newUserAddCmd(), newUserListCmd(), newUserRmCmd(), newUserKeysCmd(), newUserLimitsCmd())
	return cmd
}

// newClassCmd is `qufop class limits ...`.
func newClassCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "class",
		Short: "Manage the limits of the classes of service, free and paid (admin only)",
		Args:  cobra.NoArgs,
	}
	var lf limitFlags
	limits := &cobra.Command{
		Use:   "limits free|paid [--rps R --burst B] [--command NAME=N ...] [--clear]",
		Short: "Set the limits of a class (replacing them); a user's own limits override them",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := lf.limits(cmd)
			if err != nil {
				return err
			}
			c, err := newAPIClient()
			if err != nil {
				return err
			}
			res, err := c.SetClassLimits(cmd.Context(), args[0], l)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Class %s: %s\n", res.Class, limitsText(res.Limits, "no limits"))
			return nil
		},
	}
	lf.register(limits)
	cmd.AddCommand(limits)
	return cmd
}

// keysJSON is what --json prints of a new key pair.
type keysJSON struct {
	Name      string `json:"name"`
	AccessKey string `json:"access_key"`
	SecretKey string `json:"secret_key"`
}

func printKeys(w io.Writer, k *api.Keys, asJSON bool, what string) error {
	if asJSON {
		return printJSON(w, keysJSON{Name: k.Name, AccessKey: k.AccessKey, SecretKey: k.SecretKey})
	}
	fmt.Fprintln(w, what)
	fmt.Fprintf(w, "Access key:\t %s\n", k.AccessKey)
	fmt.Fprintf(w, "Secret key:\t %s\n", k.SecretKey)
	fmt.Fprintf(w, "The secret key is shown only now. The user logs in with: qufop login -u %s -p <secret key>\n", k.AccessKey)
	return nil
}

func newUserAddCmd() *cobra.Command {
	var class string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "add NAME [--class free|paid] [--json]",
		Short: "Add a user and print its keys, once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newAPIClient()
			if err != nil {
				return err
			}
			k, err := c.AddUser(cmd.Context(), args[0], class)
			if err != nil {
				return err
			}
			return printKeys(cmd.OutOrStdout(), k, asJSON, fmt.Sprintf("User %s added (class %s).", k.Name, k.Class))
		},
	}
	cmd.Flags().StringVar(&class, "class", "free", "class of service: free or paid")
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"name":..,"access_key":..,"secret_key":..}`)
	return cmd
}

func newUserListCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list [--json]",
		Short: "List the users (without their secret keys)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newAPIClient()
			if err != nil {
				return err
			}
			list, err := c.Users(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				if list == nil {
					list = []api.User{}
				}
				return printJSON(cmd.OutOrStdout(), list)
			}
			if len(list) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "No users: add one with qufop user add NAME.")
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tCLASS\tACCESS KEY\tLIMITS\tCREATED")
			for _, u := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", u.Name, u.Class, u.AccessKey, limitsText(u.Limits, "the class's"), qufopctlTime(u.CreatedAt))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON")
	return cmd
}

func newUserRmCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rm NAME",
		Short: "Remove a user and its keys (refused while it owns UFOPs)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newAPIClient()
			if err != nil {
				return err
			}
			if err := c.DeleteUser(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "User %s removed.\n", args[0])
			return nil
		},
	}
}

func newUserKeysCmd() *cobra.Command {
	var rotate, asJSON bool
	cmd := &cobra.Command{
		Use:   "keys NAME --rotate [--json]",
		Short: "Replace a user's keys with new ones, printed once (the old ones stop working within a second)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !rotate {
				return fmt.Errorf("qufop user keys %s: say --rotate (a secret key is shown only when it is made; qufop user list shows the access keys)", args[0])
			}
			c, err := newAPIClient()
			if err != nil {
				return err
			}
			k, err := c.RotateKeys(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printKeys(cmd.OutOrStdout(), k, asJSON, fmt.Sprintf("New keys of %s (the old ones no longer work):", k.Name))
		},
	}
	cmd.Flags().BoolVar(&rotate, "rotate", false, "make a new key pair in place of the current one")
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"name":..,"access_key":..,"secret_key":..}`)
	return cmd
}

func newUserLimitsCmd() *cobra.Command {
	var lf limitFlags
	cmd := &cobra.Command{
		Use:   "limits NAME [--rps R --burst B] [--command NAME=N ...] [--clear]",
		Short: "Set a user's own limits (replacing them); what is not set is its class's",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := lf.limits(cmd)
			if err != nil {
				return err
			}
			c, err := newAPIClient()
			if err != nil {
				return err
			}
			u, err := c.SetUserLimits(cmd.Context(), args[0], l)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "User %s (class %s): %s\n", u.Name, u.Class, limitsText(u.Limits, "the class's limits"))
			return nil
		},
	}
	lf.register(cmd)
	return cmd
}

// limitFlags are the flags of `user limits` and `class limits`.
type limitFlags struct {
	rps      float64
	burst    int
	commands []string
	clear    bool
}

func (f *limitFlags) register(cmd *cobra.Command) {
	cmd.Flags().Float64Var(&f.rps, "rps", 0, "requests per second on each gateway (0: not set)")
	cmd.Flags().IntVar(&f.burst, "burst", 0, "token bucket size: requests at once above the rate (at least 1 with --rps)")
	cmd.Flags().StringArrayVar(&f.commands, "command", nil, "steps of a command at once on each gateway, NAME=N (repeatable)")
	cmd.Flags().BoolVar(&f.clear, "clear", false, "remove every limit")
}

// limits returns the limits the flags give; no flag at all is refused, so
// that a bare command does not clear limits by mistake.
func (f *limitFlags) limits(cmd *cobra.Command) (api.Limits, error) {
	set := cmd.Flags().Changed("rps") || cmd.Flags().Changed("burst") || len(f.commands) > 0
	switch {
	case f.clear && set:
		return api.Limits{}, fmt.Errorf("--clear removes every limit: give it alone")
	case f.clear:
		return api.Limits{}, nil
	case !set:
		return api.Limits{}, fmt.Errorf("give --rps R --burst B and/or --command NAME=N (or --clear)")
	}
	l := api.Limits{RPS: f.rps, Burst: f.burst}
	for _, c := range f.commands {
		name, n, ok := strings.Cut(c, "=")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			return api.Limits{}, fmt.Errorf("bad --command %q: want NAME=N, such as imageMogr2=2", c)
		}
		v, err := strconv.Atoi(strings.TrimSpace(n))
		if err != nil || v < 1 {
			return api.Limits{}, fmt.Errorf("bad --command %q: want NAME=N with N at least 1", c)
		}
		if l.Commands == nil {
			l.Commands = map[string]int{}
		}
		l.Commands[name] = v
	}
	return l, nil
}

// limitsText is limits on one line ("rps 5, burst 10, imageMogr2 2"),
// none when nothing is set.
func limitsText(l api.Limits, none string) string {
	var parts []string
	if l.RPS != 0 {
		parts = append(parts, "rps "+strconv.FormatFloat(l.RPS, 'g', -1, 64))
	}
	if l.Burst != 0 {
		parts = append(parts, "burst "+strconv.Itoa(l.Burst))
	}
	names := make([]string, 0, len(l.Commands))
	for n := range l.Commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s %d", n, l.Commands[n]))
	}
	if len(parts) == 0 {
		return none
	}
	return strings.Join(parts, ", ")
}
