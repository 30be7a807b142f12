package cli

import (
	"fmt"
	"path/filepath"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/qufop/qufop/control/api"
)

// newBucketCmd is `qufop bucket ...`: the admin's verbs on bucket records.
func newBucketCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bucket",
		Short: "Manage the buckets the gateways serve: their directory, owner, access mode and styles (admin only)",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newBucketAddCmd(), newBucketListCmd(), newBucketRmCmd(),
		newBucketStyleCmd(), newBucketStylesCmd(), newBucketSeparatorCmd())
	return cmd
}

func mode(private bool) string {
	if private {
		return "private"
	}
	return "public"
}

func newBucketAddCmd() *cobra.Command {
	var dir, owner string
	var private bool
	cmd := &cobra.Command{
		Use:   "add NAME --dir DIR [--owner USER] [--private]",
		Short: "Serve the directory DIR of the node as bucket NAME (gateways pick it up within a second)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if dir == "" {
				return fmt.Errorf("qufop bucket add %s: say --dir DIR (the directory to serve)", args[0])
			}
			// The node opens the path as given: a relative one is the
			// caller's, made absolute here (qufop dev runs on this machine).
			abs, err := filepath.Abs(dir)
			if err != nil {
				return err
			}
			c, err := newAPIClient()
			if err != nil {
				return err
			}
			b, err := c.AddBucket(cmd.Context(), api.NewBucketRequest{Name: args[0], Dir: abs, Owner: owner, Private: private})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Bucket %s added: %s, %s, owner %s.\n", b.Name, b.Dir, mode(b.Private), b.Owner)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory served (must exist on the node)")
	cmd.Flags().StringVar(&owner, "owner", "", "user who owns the bucket (default: the admin)")
	cmd.Flags().BoolVar(&private, "private", false, "serve only URLs signed with a download token of the owner (or the admin)")
	return cmd
}

func newBucketListCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list [--json]",
		Short: "List the bucket records (not the --bucket flags of dev and gateway)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newAPIClient()
			if err != nil {
				return err
			}
			list, err := c.Buckets(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				if list == nil {
					list = []api.Bucket{}
				}
				return printJSON(cmd.OutOrStdout(), list)
			}
			if len(list) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "No buckets: add one with qufop bucket add NAME --dir DIR.")
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tMODE\tOWNER\tDIR\tCREATED")
			for _, b := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", b.Name, mode(b.Private), b.Owner, b.Dir, qufopctlTime(b.CreatedAt))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON")
	return cmd
}

func newBucketRmCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rm NAME",
		Short: "Stop serving a bucket: remove its record (its files stay)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newAPIClient()
			if err != nil {
				return err
			}
			if err := c.DeleteBucket(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Bucket %s removed (its files stay).\n", args[0])
			return nil
		},
	}
}
