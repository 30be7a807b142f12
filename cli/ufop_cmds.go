package cli

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/qufop/qufop/client"
	"github.com/qufop/qufop/control/api"
	"github.com/qufop/qufop/ufop"
)

// newUfopCmds returns the user verbs, compatible with qufopctl.
func newUfopCmds() []*cobra.Command {
	return []*cobra.Command{
		newRegCmd(), newUnregCmd(), newListCmd(), newInfoCmd(),
		newBuildCmd(), newVersionCmd(), newChverCmd(),
		newResizeCmd(), newUpgradeCmd(), newStateCmd(), newLogsCmd(), newScalePolicyCmd(),
	}
}

// ufopCmd is a verb on one UFOP: it gets the client and the name.
func ufopCmd(cmd *cobra.Command, run func(cmd *cobra.Command, c *client.Client, name string) error) *cobra.Command {
	cmd.Args = cobra.ExactArgs(1)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := newAPIClient()
		if err != nil {
			return err
		}
		return run(cmd, c, args[0])
	}
	return cmd
}

func newRegCmd() *cobra.Command {
	var mode, desc string
	cmd := ufopCmd(&cobra.Command{
		Use:   "reg <ufop> [-m 1|2|public|private] [-d <description>]",
		Short: "Register a UFOP (names are global: use a prefix); cannot be undone",
	}, func(cmd *cobra.Command, c *client.Client, name string) error {
		m, err := ufop.ParseMode(mode)
		if err != nil {
			return fmt.Errorf("bad -m: %v", err)
		}
		if err := ufop.CheckName(name); err != nil {
			return err
		}
		rec, err := c.Register(cmd.Context(), name, string(m), desc)
		if err != nil {
			return err
		}
		w := cmd.OutOrStdout()
		fmt.Fprintf(w, "Ufop name:\t %s\n", rec.Name)
		fmt.Fprintf(w, "Access mode:\t %s\n", modeName(string(rec.Mode)))
		fmt.Fprintf(w, "Description:\t %s\n", rec.Description)
		return nil
	})
	cmd.Flags().StringVarP(&mode, "mode", "m", "2", "access mode: 2 or private (owner only), 1 or public (anyone)")
	cmd.Flags().StringVarP(&desc, "desc", "d", "", "description")
	return cmd
}

func newUnregCmd() *cobra.Command {
	return ufopCmd(&cobra.Command{
		Use:   "unreg <ufop>",
		Short: "Stop every instance of a UFOP and delete it, versions included; cannot be undone",
	}, func(cmd *cobra.Command, c *client.Client, name string) error {
		res, err := c.Unregister(cmd.Context(), name)
		if err != nil {
			return err
		}
		printUnregistered(cmd.OutOrStdout(), cmd.ErrOrStderr(), res)
		return nil
	})
}

func newListCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List your UFOPs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newAPIClient()
			if err != nil {
				return err
			}
			recs, err := c.List(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				if recs == nil {
					recs = []api.UFOP{}
				}
				return printJSON(cmd.OutOrStdout(), recs)
			}
			if len(recs) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "No ufops: register one with qufop reg <ufop>.")
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tMODE\tVERSION\tINSTANCES\tDESCRIPTION")
			for _, r := range recs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", r.Name, modeName(string(r.Mode)), versionLabel(r.Current), r.Desired, r.Description)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON")
	return cmd
}

// printUnregistered says what unreg removed and kept.
func printUnregistered(w, warn io.Writer, res *api.Unregistered) {
	fmt.Fprintf(w, "Ufop %s unregistered.\n", res.Name)
	for _, r := range res.Removed {
		fmt.Fprintf(w, "removed %s\n", r)
	}
	for _, k := range res.Kept {
		fmt.Fprintf(w, "kept %s: %s\n", k.Artifact, k.Reason)
	}
	for _, m := range res.Warnings {
		fmt.Fprintf(warn, "qufop: warning: %s\n", m)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// versionLabel shows version 0 (none chosen) as "-".
func versionLabel(v int) string {
	if v == 0 {
		return "-"
	}
	return strconv.Itoa(v)
}

func newInfoCmd() *cobra.Command {
	var asJSON bool
	cmd := ufopCmd(&cobra.Command{
		Use:   "info <ufop>",
		Short: "Show a UFOP: owner, current version, access mode, instances, scale policy and its last changes of count",
	}, func(cmd *cobra.Command, c *client.Client, name string) error {
		rec, err := c.Info(cmd.Context(), name)
		if err != nil {
			return err
		}
		w := cmd.OutOrStdout()
		if asJSON {
			return printJSON(w, rec)
		}
		fmt.Fprintf(w, "Ufop name:\t %s\n", rec.Name)
		if rec.Owner == "" {
			// Another user's public UFOP: the API tells only this much.
			fmt.Fprintf(w, "Access mode:\t %s\n", modeName(string(rec.Mode)))
			fmt.Fprintf(w, "Description:\t %s\n", rec.Description)
			return nil
		}
		fmt.Fprintf(w, "Owner:\t %s\n", rec.Owner)
		fmt.Fprintf(w, "Version:\t %d\n", rec.Current)
		fmt.Fprintf(w, "Access mode:\t %s\n", modeName(string(rec.Mode)))
		fmt.Fprintf(w, "Description:\t %s\n", rec.Description)
		fmt.Fprintf(w, "Create time:\t %s\n", qufopctlTime(rec.CreatedAt))
		fmt.Fprintf(w, "Instance num:\t %d\n", rec.Desired)
		fmt.Fprintf(w, "Max instanceNum:\t %d\n", rec.MaxInstances)
		fmt.Fprintf(w, "Flavor:\t %s\n", orDash(rec.Flavor))
		return printScale(w, rec)
	})
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON")
	return cmd
}

func newVersionCmd() *cobra.Command {
	var (
		asJSON bool
		only   int
	)
	cmd := ufopCmd(&cobra.Command{
		Use:     "version <ufop> [-v N]",
		Aliases: []string{"imageinfo"},
		Short:   "Show the versions (builds) of a UFOP and their state",
	}, func(cmd *cobra.Command, c *client.Client, name string) error {
		var vs []api.Version
		if cmd.Flags().Changed("ver") {
			v, err := c.Version(cmd.Context(), name, only)
			if err != nil {
				return err
			}
			vs = []api.Version{*v}
		} else {
			var err error
			if vs, err = c.Versions(cmd.Context(), name); err != nil {
				return err
			}
		}
		w := cmd.OutOrStdout()
		if asJSON {
			if vs == nil {
				vs = []api.Version{}
			}
			return printJSON(w, vs)
		}
		fmt.Fprintf(w, "*********%s*********\n", name)
		if len(vs) == 0 {
			fmt.Fprintf(w, "no versions: upload one with qufop build %s -f <folder or tarball>\n", name)
		}
		for i, v := range vs {
			if i > 0 {
				fmt.Fprintln(w)
			}
			fmt.Fprintf(w, "version: %d\n", v.Version)
			fmt.Fprintf(w, "state: %s\n", v.State)
			fmt.Fprintf(w, "description: %s\n", v.Description)
			fmt.Fprintf(w, "createAt: %s\n", qufopctlTime(v.CreatedAt))
			if v.Error != "" {
				fmt.Fprintf(w, "error: %s\n", v.Error)
			}
		}
		return nil
	})
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON")
	cmd.Flags().IntVarP(&only, "ver", "v", 0, "show only this version")
	return cmd
}

func newChverCmd() *cobra.Command {
	var n int
	cmd := ufopCmd(&cobra.Command{
		Use:     "chver <ufop> -c N",
		Aliases: []string{"ufopver"},
		Short:   "Choose the current version (running instances change with upgrade)",
	}, func(cmd *cobra.Command, c *client.Client, name string) error {
		if n <= 0 {
			return fmt.Errorf("chver needs -c N, the version to choose (N >= 1)")
		}
		rec, err := c.Chver(cmd.Context(), name, n)
		if err != nil {
			return err
		}
		w := cmd.OutOrStdout()
		fmt.Fprintf(w, "Ufop %s: current version is %d.\n", rec.Name, rec.Current)
		switch {
		case rec.Desired == 0:
			fmt.Fprintf(w, "Start instances with: qufop resize %s -n N\n", rec.Name)
		case rec.Deployed != rec.Current:
			fmt.Fprintf(w, "Instances run version %d: switch them with qufop upgrade %s\n", rec.Deployed, rec.Name)
		}
		return nil
	})
	cmd.Flags().IntVarP(&n, "ver", "c", 0, "version to make current")
	return cmd
}
