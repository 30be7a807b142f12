package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/qufop/qufop/builder"
	"github.com/qufop/qufop/control"
	"github.com/qufop/qufop/jobspecs"
	"github.com/qufop/qufop/platform"
)

// newBuilderCmd is the control plane at scale: the management API, the
// builder on this node's Docker daemon, the Keeper in Consul KV, and UFOPs
// run as Nomad jobs.
func newBuilderCmd() *cobra.Command {
	var (
		cf    *controlFlags
		cfg   = platform.BuilderConfig{Listen: "127.0.0.1:8081", Data: "./qufop-builder"}
		quiet bool
	)
	cmd := &cobra.Command{
		Use:   "builder",
		Short: "Run the control plane: management API, builds, UFOPs as Nomad jobs",
		Long: `builder serves the management API (/v1/, the CLI's peer) and builds UFOP
images on this node's Docker daemon, pushing them to --registry. Records live
in Consul KV under qufop/ (--consul-addr or CONSUL_HTTP_ADDR, token in
CONSUL_HTTP_TOKEN); UFOPs run as Nomad jobs ufop-<name> (--nomad-addr or
NOMAD_ADDR, NOMAD_TOKEN, NOMAD_NAMESPACE).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c := cfg
			var err error
			if c.Control, err = cf.config(); err != nil {
				return err
			}
			c.Control.DeployTimeout = cfg.Control.DeployTimeout
			c.Log = newLogger(cmd.ErrOrStderr(), quiet)
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			b, err := platform.NewBuilder(ctx, c)
			if err != nil {
				return err
			}
			defer b.Close()
			out := cmd.OutOrStdout()
			printGeneratedKeys(out, "qufop builder", b.Keys())
			nomad, consul, registry := b.Endpoints()
			fmt.Fprintf(out, "qufop builder listening on http://%s (nomad %s, consul %s, registry %s)\n", b.Addr(), nomad, consul, registry)
			return b.Serve(ctx)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "address of the management API")
	fs.StringVar(&cfg.Data, "data", cfg.Data, "folder for uploads, build logs and the generated admin keys")
	cf = newControlFlags(fs, builder.DefaultRegistry, "registry images are pushed to (Nomad clients pull from it)")
	fs.StringVar(&cfg.NomadAddr, "nomad-addr", "", "Nomad HTTP address (default $NOMAD_ADDR or http://127.0.0.1:4646)")
	fs.StringVar(&cfg.ConsulAddr, "consul-addr", "", "Consul HTTP address (default $CONSUL_HTTP_ADDR or 127.0.0.1:8500)")
	fs.DurationVar(&cfg.Control.DeployTimeout, "deploy-timeout", control.NewDefaultConfig().DeployTimeout, "how long resize and upgrade wait for a healthy deployment")
	fs.StringVar(&cfg.UFOPNetwork, "ufop-network", "", "Docker network the UFOP jobs run on, made by the operator on every client (see Isolation in jobspecs/README.md; default $"+jobspecs.EnvNetwork+", or Docker's default bridge, which does not isolate)")
	fs.BoolVar(&quiet, "quiet", false, "log only warnings and errors")
	return cmd
}
