package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/qufop/qufop/jobspecs"
	"github.com/qufop/qufop/platform"
)

// newScalerCmd is the scaler at scale: figures from Prometheus or the
// gateways, counts set on Nomad jobs, one active scaler of several by a
// Consul lock.
func newScalerCmd() *cobra.Command {
	var (
		cfg   = platform.NewDefaultScalerConfig()
		quiet bool
	)
	cmd := &cobra.Command{
		Use:   "scaler",
		Short: "Run the scaler: every UFOP with a scale policy follows its queue",
		Long: `scaler sizes every UFOP that has a scale policy (qufop scale-policy) from the
steps waiting for it and running at it, as the gateways count them: from
Prometheus (--prometheus URL) or, without it, from every gateway's /metrics
(the Consul service qufop-gateway). It sets the count of the UFOP's Nomad
job (--nomad-addr or NOMAD_ADDR, NOMAD_TOKEN) and records every change in
the UFOP's record in Consul KV (--consul-addr or CONSUL_HTTP_ADDR,
CONSUL_HTTP_TOKEN). Run several: a Consul lock (--lock-key) lets one decide,
and another takes over when it dies. /health and /metrics are served on
--listen.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c := cfg
			c.Log = newLogger(cmd.ErrOrStderr(), quiet)
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			s, err := platform.NewScaler(ctx, c)
			if err != nil {
				return err
			}
			defer s.Close()
			nomad, consul, source := s.Endpoints()
			fmt.Fprintf(cmd.OutOrStdout(), "qufop scaler on http://%s (nomad %s, consul %s, lock %s; figures from %s)\n",
				s.Addr(), nomad, consul, c.LockKey, source)
			return s.Serve(ctx)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "address of /health and /metrics")
	fs.StringVar(&cfg.NomadAddr, "nomad-addr", "", "Nomad HTTP address (default $NOMAD_ADDR or http://127.0.0.1:4646)")
	fs.StringVar(&cfg.ConsulAddr, "consul-addr", "", "Consul HTTP address (default $CONSUL_HTTP_ADDR or 127.0.0.1:8500)")
	fs.StringVar(&cfg.Prometheus, "prometheus", "", "URL of the Prometheus that scrapes the gateways (default: scrape every gateway directly)")
	fs.StringVar(&cfg.PromMatcher, "prometheus-match", "", "label matchers that select the gateways' series in Prometheus, e.g. 'job=\"qufop-gateway\"'")
	fs.StringVar(&cfg.LockKey, "lock-key", cfg.LockKey, "Consul KV key of the lock that lets one scaler of several decide")
	fs.DurationVar(&cfg.LockTTL, "lock-ttl", cfg.LockTTL, "how soon a dead scaler is replaced (2s to 24h): its lock's Consul check runs out after half of this, then a lock delay of 2/5; the token needs service:write on qufop-lock for that check")
	fs.StringVar(&cfg.UFOPNetwork, "ufop-network", "", "Docker network of the UFOP jobs, as the builder's --ufop-network (default $"+jobspecs.EnvNetwork+")")
	fs.BoolVar(&quiet, "quiet", false, "log only warnings and errors")
	return cmd
}
