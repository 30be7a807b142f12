package cli

import (
	"fmt"
	"os"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/spf13/cobra"

	"github.com/qufop/qufop/platform"
)

func newGatewayCmd() *cobra.Command {
	var (
		gf  *gatewayFlags
		cfg platform.GatewayRoleConfig
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
			c := cfg
			var err error
			if c.GatewayConfig, err = gf.config(os.Stderr); err != nil {
				return err
			}
			c.Consul = c.ConsulAddr != "" || os.Getenv(consulapi.HTTPAddrEnvName) != ""
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			g, err := platform.NewGateway(ctx, c)
			if err != nil {
				return err
			}
			defer g.Close()
			fmt.Fprintf(cmd.OutOrStdout(), "qufop gateway listening on http://%s\n", g.Addr())
			return g.Serve(ctx)
		},
	}
	gf = newGatewayFlags(cmd.Flags())
	cmd.Flags().StringVar(&cfg.ConsulAddr, "consul-addr", "", "Consul HTTP address (default $"+consulapi.HTTPAddrEnvName+"; none: no UFOPs)")
	cmd.Flags().StringVar(&cfg.Advertise, "advertise-addr", "", "host:port at which UFOP instances reach this gateway (default: the listen address)")
	cmd.Flags().StringVar(&cfg.Owner, "owner", platform.AdminUser, "user who owns the buckets served (a private UFOP serves only its owner)")
	return cmd
}
