package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/docker/docker/client"
	"github.com/gin-gonic/gin"
	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"
	"github.com/spf13/cobra"

	"github.com/qufop/qufop/auth"
	"github.com/qufop/qufop/builder"
	"github.com/qufop/qufop/cluster/consul"
	"github.com/qufop/qufop/cluster/nomad"
	"github.com/qufop/qufop/control"
	"github.com/qufop/qufop/internal/serve"
	"github.com/qufop/qufop/jobspecs"
	"github.com/qufop/qufop/ufop"
)

// newBuilderCmd is the control plane at scale: the management API, the
// builder on this node's Docker daemon, the Keeper in Consul KV, and UFOPs
// run as Nomad jobs.
func newBuilderCmd() *cobra.Command {
	var (
		listen, data, registry     string
		nomadAddr, consulAddr      string
		creds                      auth.Credentials
		buildTimeout, deadlineWait time.Duration
		quiet                      bool
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
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			level := slog.LevelInfo
			if quiet {
				level = slog.LevelWarn
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			if err := os.MkdirAll(data, 0o755); err != nil {
				return err
			}
			admin, generated, err := loadAdmin(data, creds)
			if err != nil {
				return err
			}
			if generated {
				fmt.Fprintf(cmd.OutOrStdout(), "qufop builder: admin keys generated (kept in %s):\n  access key %s\n  secret key %s\n",
					filepath.Join(data, "admin.json"), admin.AccessKey, admin.SecretKey)
			}

			ccfg := consulapi.DefaultConfig() // CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, ...
			if consulAddr != "" {
				ccfg.Address = consulAddr
			}
			cc, err := consulapi.NewClient(ccfg)
			if err != nil {
				return fmt.Errorf("consul: %w", err)
			}
			ncfg := nomadapi.DefaultConfig() // NOMAD_ADDR, NOMAD_TOKEN, NOMAD_NAMESPACE, ...
			if nomadAddr != "" {
				ncfg.Address = nomadAddr
			}
			nc, err := nomadapi.NewClient(ncfg)
			if err != nil {
				return fmt.Errorf("nomad: %w", err)
			}
			orch := nomad.New(nc, jobspecs.DefaultOptions())

			dc, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
			if err != nil {
				return err
			}
			defer dc.Close()
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err = dc.Ping(pctx)
			cancel()
			if err != nil {
				return fmt.Errorf("no Docker daemon answers (%v): the builder builds images with it", err)
			}
			bcfg := builder.NewDefaultConfig()
			bcfg.Dir = filepath.Join(data, "builder")
			bcfg.Registry = registry
			bcfg.Timeout = buildTimeout
			b, err := builder.New(bcfg, builder.NewDocker(bcfg, dc))
			if err != nil {
				return err
			}

			users := &auth.Users{}
			users.Add(adminUser, admin)
			conf := control.NewDefaultConfig()
			conf.WorkDir = filepath.Join(data, "uploads")
			conf.MaxUploadBytes = bcfg.MaxUploadBytes
			conf.DeployTimeout = deadlineWait
			keeper := ufop.NewKeeper(consul.NewKV(cc, consul.DefaultPrefix))
			ctl := control.New(conf, keeper, buildAdapter{b: b, lim: bcfg.Limits()}, b.Logs(), orch, users.Lookup, log)
			defer ctl.Close()

			gin.SetMode(gin.ReleaseMode)
			e := gin.New()
			e.Use(gin.Recovery())
			e.GET("/health", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
			ctl.Mount(e)
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("cannot listen on %s: %w", listen, err)
			}
			srv := &http.Server{Handler: e, ReadHeaderTimeout: 10 * time.Second}
			fmt.Fprintf(cmd.OutOrStdout(), "qufop builder listening on http://%s (nomad %s, consul %s, registry %s)\n",
				ln.Addr(), ncfg.Address, ccfg.Address, registry)
			return serve.Serve(ctx, srv, ln, 20*time.Second)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&listen, "listen", "127.0.0.1:8081", "address of the management API")
	fs.StringVar(&data, "data", "./qufop-builder", "folder for uploads, build logs and the generated admin keys")
	fs.StringVar(&registry, "registry", builder.DefaultRegistry, "registry images are pushed to (Nomad clients pull from it)")
	fs.StringVar(&nomadAddr, "nomad-addr", "", "Nomad HTTP address (default $NOMAD_ADDR or http://127.0.0.1:4646)")
	fs.StringVar(&consulAddr, "consul-addr", "", "Consul HTTP address (default $CONSUL_HTTP_ADDR or 127.0.0.1:8500)")
	fs.StringVar(&creds.AccessKey, "access-key", "", "access key of the admin user (default: generated once and kept in <data>/admin.json)")
	fs.StringVar(&creds.SecretKey, "secret-key", "", "secret key of the admin user")
	fs.DurationVar(&buildTimeout, "build-timeout", builder.DefaultTimeout, "deadline of one UFOP build")
	fs.DurationVar(&deadlineWait, "deploy-timeout", control.NewDefaultConfig().DeployTimeout, "how long resize and upgrade wait for a healthy deployment")
	fs.BoolVar(&quiet, "quiet", false, "log only warnings and errors")
	return cmd
}
