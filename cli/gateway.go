package cli

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/qufop/qufop/storage"
)

func newGatewayCmd() *cobra.Command {
	var f *gatewayFlags
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Run the data plane: processing URLs over the given buckets",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			set := &storage.Set{}
			if err := f.parseBucketFlags(set); err != nil {
				return err
			}
			if len(set.Names()) == 0 {
				return errors.New("no bucket to serve: give --bucket NAME=DIR")
			}
			srv, err := f.newServer(set, os.Stderr)
			if err != nil {
				return err
			}
			ln, err := f.listen()
			if err != nil {
				return err
			}
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			fmt.Fprintf(cmd.OutOrStdout(), "qufop gateway listening on http://%s\n", ln.Addr())
			return srv.Serve(ctx, ln)
		},
	}
	f = newGatewayFlags(cmd.Flags())
	return cmd
}
