package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/qufop/qufop/builder"
	"github.com/qufop/qufop/platform"
)

func newDevCmd() *cobra.Command {
	var (
		gf *gatewayFlags
		cf *controlFlags
	)
	dcfg := platform.NewDefaultDevConfig()
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the whole platform in one process on embedded defaults",
		Long: `dev runs the platform on one machine: the gateway with local storage (every
folder under <data>/buckets is a bucket, and --bucket NAME=DIR serves any other
folder), the management API on the same listener, the builder, and UFOP
instances as Docker containers (plain processes where no Docker daemon
answers). On first start it creates the bucket "demo" holding sample.jpg.
One dev at a time may use a data folder.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := dcfg
			var err error
			if cfg.GatewayConfig, err = gf.config(cmd.ErrOrStderr()); err != nil {
				return err
			}
			if cfg.Control, err = cf.config(); err != nil {
				return err
			}
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			d, err := platform.NewDev(ctx, cfg)
			if err != nil {
				return err
			}
			defer d.Close()
			out := cmd.OutOrStdout()
			printGeneratedKeys(out, "qufop dev", d.Keys())
			for _, n := range d.Notices() {
				fmt.Fprintf(out, "qufop dev: %s\n", n)
			}
			printWelcome(out, d.Addr(), cfg.Data, d.Buckets())
			printPlatform(out, d)
			if err := d.Serve(ctx); err != nil {
				return err
			}
			fmt.Fprintln(out, "qufop dev stopped")
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&dcfg.Data, "data", dcfg.Data, "folder holding the platform's state")
	gf = newGatewayFlags(fs)
	cf = newControlFlags(fs, "auto", `registry UFOP images are pushed to ("auto": `+builder.DefaultRegistry+` if it answers, else none: images stay in the local daemon)`)
	fs.BoolVar(&dcfg.NoDocker, "no-docker", false, "run UFOPs as plain processes even if a Docker daemon answers (isolates nothing)")
	fs.StringVar(&dcfg.Busybox, "busybox", dcfg.Busybox, "busybox-static binary that local/busybox:1 is made from when missing")
	return cmd
}

func printPlatform(w io.Writer, d *platform.Dev) {
	fmt.Fprintf(w, "UFOPs: %s runtime", d.Mode())
	if warn := d.Warning(); warn != "" {
		fmt.Fprintf(w, " (%s)", warn)
	}
	if d.Mode() == "docker" && d.Registry() != "" {
		fmt.Fprintf(w, ", images pushed to %s", d.Registry())
	} else if d.Mode() == "docker" {
		fmt.Fprint(w, ", images kept in the local Docker daemon (no registry answers)")
	}
	fmt.Fprintf(w, ", platform id %s\n", d.ID())
	// The whole export line, secret included: this is the operator's own
	// machine, and the keys are in a file of theirs anyway.
	fmt.Fprintf(w, "Manage them with the CLI (admin keys %s):\n", keysText(d.Keys()))
	fmt.Fprintf(w, "  export QUFOP_ADDR=http://%s QUFOP_ACCESS_KEY=%s QUFOP_SECRET_KEY=%s\n", d.Addr(), d.Keys().AccessKey, d.Keys().SecretKey)
	fmt.Fprintf(w, "  qufop reg my-demo -m 2 -d demo && qufop build my-demo -f examples/ufop-demo/build/ufop-demo.tar\n")
}

func printWelcome(w io.Writer, addr, data string, buckets []string) {
	base := "http://" + addr
	fmt.Fprintf(w, "qufop dev: gateway on %s, state in %s, buckets: %v\n", base, data, buckets)
	fmt.Fprintf(w, "Try:\n")
	for _, q := range []string{
		"?imageView2/2/w/200",
		"?imageView2/1/w/200/h/200/format/webp",
		"?imageMogr2/auto-orient/thumbnail/!50p/rotate/90",
		"?imageMogr2/rotate/90|imageView2/2/w/200",
	} {
		fmt.Fprintf(w, "  curl -o out '%s/%s/sample.jpg%s'\n", base, platform.DemoBucket, q)
	}
	for _, q := range []string{"?imageInfo", "?exif", "?imageAve"} {
		fmt.Fprintf(w, "  curl '%s/%s/sample.jpg%s'\n", base, platform.DemoBucket, q)
	}
	fmt.Fprintf(w, "Metrics: %s/metrics   Health: %s/health   Stop: Ctrl-C\n", base, base)
}
