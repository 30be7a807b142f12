package cli

import (
	_ "embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/qufop/qufop/storage"
	"github.com/qufop/qufop/storage/local"
)

//go:embed sample/sample.jpg
var sampleJPEG []byte

// demoBucket is created with a real photograph on first start, so that the
// example URLs printed at start work at once.
const demoBucket = "demo"

func newDevCmd() *cobra.Command {
	var (
		f    *gatewayFlags
		pf   *platformFlags
		data string
	)
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the whole platform in one process on embedded defaults",
		Long: `dev runs the gateway on one machine with local storage: every folder under
<data>/buckets is a bucket, and --bucket NAME=DIR serves any other folder.
On first start it creates the bucket "demo" holding sample.jpg.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			set := &storage.Set{}
			if err := openDataBuckets(set, data, cmd.ErrOrStderr(), f.bucketOptions()...); err != nil {
				return err
			}
			if err := f.parseBucketFlags(set); err != nil {
				return err
			}
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			out := cmd.OutOrStdout()
			plat, err := newPlatform(ctx, pf, data, out, f.logger(cmd.ErrOrStderr()))
			if err != nil {
				return err
			}
			defer plat.Close()
			srv, err := f.newServer(set, cmd.ErrOrStderr(), plat.options()...)
			if err != nil {
				return err
			}
			plat.control.Mount(srv.Engine())
			ln, err := f.listen()
			if err != nil {
				return err
			}
			go plat.serveBlobs(ctx)
			printWelcome(out, ln.Addr().String(), data, set.Names())
			printPlatform(out, ln.Addr().String(), plat)
			if err := srv.Serve(ctx, ln); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "qufop dev stopped")
			return nil
		},
	}
	cmd.Flags().StringVar(&data, "data", "./qufop-data", "folder holding the platform's state")
	f = newGatewayFlags(cmd.Flags())
	pf = newPlatformFlags(cmd.Flags())
	return cmd
}

// openDataBuckets creates <data>/buckets (and the demo bucket the first
// time) and adds every sub-folder as a bucket.
func printPlatform(w io.Writer, addr string, p *platform) {
	fmt.Fprintf(w, "UFOPs: %s runtime", p.mode)
	if warn := p.runtime.Warning(); warn != "" {
		fmt.Fprintf(w, " (%s)", warn)
	}
	if p.mode == "docker" && p.registry != "" {
		fmt.Fprintf(w, ", images pushed to %s", p.registry)
	} else if p.mode == "docker" {
		fmt.Fprint(w, ", images kept in the local Docker daemon (no registry answers)")
	}
	fmt.Fprintf(w, "\nManage them with the CLI (admin keys %s):\n", p.keysFrom)
	fmt.Fprintf(w, "  export QUFOP_ADDR=http://%s QUFOP_ACCESS_KEY=%s QUFOP_SECRET_KEY=<secret key>\n", addr, p.creds.AccessKey)
	fmt.Fprintf(w, "  qufop reg my-demo -m 2 -d demo && qufop build my-demo -f examples/ufop-demo/build/ufop-demo.tar\n")
}

func openDataBuckets(set *storage.Set, data string, warn io.Writer, opts ...local.Option) error {
	root := filepath.Join(data, "buckets")
	_, err := os.Stat(root)
	first := errors.Is(err, fs.ErrNotExist)
	if err != nil && !first {
		return fmt.Errorf("data folder: %w", err)
	}
	if first {
		demo := filepath.Join(root, demoBucket)
		if err := os.MkdirAll(demo, 0o755); err != nil {
			return fmt.Errorf("creating the demo bucket: %w", err)
		}
		if err := os.WriteFile(filepath.Join(demo, "sample.jpg"), sampleJPEG, 0o644); err != nil {
			return fmt.Errorf("creating the demo bucket: %w", err)
		}
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		return fmt.Errorf("data folder: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if !storage.ValidBucketName(e.Name()) {
			fmt.Fprintf(warn, "qufop: skipping %s: not a valid bucket name\n", filepath.Join(root, e.Name()))
			continue
		}
		b, err := local.New(e.Name(), filepath.Join(root, e.Name()), opts...)
		if err != nil {
			return err
		}
		if err := set.Add(b); err != nil {
			return err
		}
	}
	return nil
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
		fmt.Fprintf(w, "  curl -o out '%s/%s/sample.jpg%s'\n", base, demoBucket, q)
	}
	for _, q := range []string{"?imageInfo", "?exif", "?imageAve"} {
		fmt.Fprintf(w, "  curl '%s/%s/sample.jpg%s'\n", base, demoBucket, q)
	}
	fmt.Fprintf(w, "Metrics: %s/metrics   Health: %s/health   Stop: Ctrl-C\n", base, base)
}
