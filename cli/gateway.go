package cli

import (
	"errors"
	"fmt"
	"net"
	"os"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/spf13/cobra"

	"github.com/qufop/qufop/cluster/consul"
	"github.com/qufop/qufop/dispatch"
	"github.com/qufop/qufop/gateway"
	"github.com/qufop/qufop/storage"
	"github.com/qufop/qufop/ufop"
)

func newGatewayCmd() *cobra.Command {
	var (
		f          *gatewayFlags
		consulAddr string
		advertise  string
		owner      string
	)
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Run the data plane: processing URLs over the given buckets",
		Long: `gateway serves processing URLs over the given buckets. With Consul
(--consul-addr or CONSUL_HTTP_ADDR, token in CONSUL_HTTP_TOKEN) it also runs
UFOP steps: records come from Consul KV under qufop/, healthy instances from
Consul's health endpoint (service ufop-<name>), and instances fetch /uop
inputs from --advertise-addr.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			set := &storage.Set{}
			if err := f.parseBucketFlags(set); err != nil {
				return err
			}
			if len(set.Names()) == 0 {
				return errors.New("no bucket to serve: give --bucket NAME=DIR")
			}
			ln, err := f.listen()
			if err != nil {
				return err
			}
			var opts []gateway.Option
			if consulAddr != "" || os.Getenv(consulapi.HTTPAddrEnvName) != "" {
				ccfg := consulapi.DefaultConfig() // reads CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, ...
				if consulAddr != "" {
					ccfg.Address = consulAddr
				}
				client, err := consulapi.NewClient(ccfg)
				if err != nil {
					return fmt.Errorf("consul: %w", err)
				}
				catalog := consul.NewCatalog(client, consul.CatalogOptions{})
				defer catalog.Close()
				d := dispatch.New(dispatch.NewDefaultConfig(), ufop.NewKeeper(consul.NewKV(client, consul.DefaultPrefix)), catalog, &ufop.Caller{})
				if advertise == "" {
					advertise = ln.Addr().String()
				}
				if _, _, err := net.SplitHostPort(advertise); err != nil {
					return fmt.Errorf("--advertise-addr %q: want host:port", advertise)
				}
				d.SetBlobBase("http://" + advertise)
				opts = append(opts,
					gateway.WithUFOPs(d, func(string) string { return owner }),
					gateway.WithBlobs(dispatch.BlobPath+":token", d.Blobs().Handler))
			}
			srv, err := f.newServer(set, os.Stderr, opts...)
			if err != nil {
				ln.Close()
				return err
			}
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			fmt.Fprintf(cmd.OutOrStdout(), "qufop gateway listening on http://%s\n", ln.Addr())
			return srv.Serve(ctx, ln)
		},
	}
	f = newGatewayFlags(cmd.Flags())
	cmd.Flags().StringVar(&consulAddr, "consul-addr", "", "Consul HTTP address (default $"+consulapi.HTTPAddrEnvName+"; none: no UFOPs)")
	cmd.Flags().StringVar(&advertise, "advertise-addr", "", "host:port at which UFOP instances reach this gateway (default: the listen address)")
	cmd.Flags().StringVar(&owner, "owner", "admin", "user who owns the buckets served (a private UFOP serves only its owner)")
	return cmd
}
