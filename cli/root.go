// Package cli holds the cobra commands of the one qufop binary: the platform
// roles (dev, gateway, builder), whose wiring is package platform, and the
// user verbs compatible with qufopctl, on package client.
package cli

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// Version is set at build time (-ldflags "-X github.com/qufop/qufop/cli.Version=...").
var Version = "dev"

// NewRoot returns the qufop command tree.
func NewRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "qufop",
		Short:         "qufop: Qiniu-style data processing (fop, UFOP) on Nomad and Consul",
		Version:       Version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(append([]*cobra.Command{newDevCmd(), newGatewayCmd(), newBuilderCmd(), newScalerCmd(), newLoginCmd()}, newUfopCmds()...)...)
	root.AddCommand(newUserCmd(), newClassCmd())
	root.AddCommand(newBucketCmd())
	return root
}

// Main runs the command line and exits non-zero with a one-line message on
// failure.
func Main() {
	root := NewRoot()
	root.SetArgs(NormalizeArgs(os.Args[1:]))
	if err := root.Execute(); err != nil {
		// One line: joined validation errors are listed with "; ".
		fmt.Fprintln(os.Stderr, "qufop:", strings.ReplaceAll(err.Error(), "\n", "; "))
		os.Exit(1)
	}
}
