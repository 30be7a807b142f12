package cli

import (
	"fmt"
	"slices"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

// The style verbs of `qufop bucket`: Qiniu's `qrsctl style` and
// `qrsctl separator`, over /v1/buckets/NAME/styles and /separator.

func newBucketStyleCmd() *cobra.Command {
	var rm bool
	cmd := &cobra.Command{
		Use:   "style BUCKET NAME CHAIN | style BUCKET NAME --rm",
		Short: "Name a processing chain of BUCKET: /BUCKET/KEY-NAME then answers /BUCKET/KEY?CHAIN (gateways pick it up within a second)",
		Args:  cobra.RangeArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			bucket, name := args[0], args[1]
			switch {
			case rm && len(args) == 3:
				return fmt.Errorf("qufop bucket style %s %s: --rm takes no chain", bucket, name)
			case !rm && len(args) == 2:
				return fmt.Errorf("qufop bucket style %s %s: say the chain (e.g. 'imageView2/2/w/200'), or --rm", bucket, name)
			}
			c, err := newAPIClient()
			if err != nil {
				return err
			}
			if rm {
				if _, err := c.RemoveBucketStyle(cmd.Context(), bucket, name); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "Bucket %s: style %s removed.\n", bucket, name)
				return nil
			}
			st, err := c.SetBucketStyle(cmd.Context(), bucket, name, args[2])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Bucket %s: style %s = %s (URLs /%s/KEY%s%s).\n", bucket, name, args[2], bucket, st.Separator[:1], name)
			return nil
		},
	}
	cmd.Flags().BoolVar(&rm, "rm", false, "remove the style")
	return cmd
}

func newBucketStylesCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "styles BUCKET [--json]",
		Short: "List the styles of BUCKET and its style separator",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newAPIClient()
			if err != nil {
				return err
			}
			st, err := c.BucketStyles(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), st)
			}
			w := cmd.OutOrStdout()
			if len(st.Styles) == 0 {
				fmt.Fprintf(w, "Bucket %s has no styles: add one with qufop bucket style %s NAME CHAIN.\n", st.Bucket, st.Bucket)
				return nil
			}
			fmt.Fprintf(w, "Separator %s: URLs /%s/KEY%sSTYLE.\n", separatorList(st.Separator), st.Bucket, st.Separator[:1])
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "STYLE\tCHAIN")
			names := make([]string, 0, len(st.Styles))
			for n := range st.Styles {
				names = append(names, n)
			}
			slices.Sort(names)
			for _, n := range names {
				fmt.Fprintf(tw, "%s\t%s\n", n, st.Styles[n])
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON")
	return cmd
}

func newBucketSeparatorCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "separator BUCKET SEP",
		Short: "Set the characters that join a key to a style name in BUCKET's URLs (any one of SEP; default -)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newAPIClient()
			if err != nil {
				return err
			}
			st, err := c.SetBucketSeparator(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Bucket %s: style separator %s (URLs /%s/KEY%sSTYLE).\n", st.Bucket, separatorList(st.Separator), st.Bucket, st.Separator[:1])
			return nil
		},
	}
	// Separators often start with '-' ("-", "-!"): after BUCKET nothing
	// is a flag.
	cmd.Flags().SetInterspersed(false)
	return cmd
}

// separatorList names the characters of a separator: "-", or any of "-!".
func separatorList(sep string) string {
	if len(sep) == 1 {
		return fmt.Sprintf("%q", sep)
	}
	return fmt.Sprintf("any of %q", sep)
}
