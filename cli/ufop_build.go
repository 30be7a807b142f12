package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/qufop/qufop/client"
	"github.com/qufop/qufop/control/api"
	"github.com/qufop/qufop/internal/ufopsrc"
)

// ufopPollInterval is how often resize, upgrade and build poll the API.
var ufopPollInterval = 500 * time.Millisecond

func newBuildCmd() *cobra.Command {
	var src, desc string
	cmd := ufopCmd(&cobra.Command{
		Use:   "build <ufop> [-f <folder or tarball>] [-d <description>]",
		Short: "Upload a new version (a folder with ufop.yaml at its root, or a .tar/.tar.gz/.tgz) and build it",
		Long: `build uploads a new version of a UFOP and streams its build log. The source is a
folder (packed into a tar on the fly, everything included, modes kept) or a
tarball (.tar, .tar.gz, .tgz) with ufop.yaml at its root; the current folder by
default. It exits non-zero when the build fails.`,
	}, func(cmd *cobra.Command, c *client.Client, name string) error {
		ctx, stop := interruptContext(cmd.Context())
		defer stop()
		return runBuild(ctx, cmd, c, name, src, desc)
	})
	cmd.Flags().StringVarP(&src, "dir", "f", ".", "folder or tarball (.tar, .tar.gz, .tgz) to build")
	cmd.Flags().StringVarP(&desc, "desc", "d", "", "description of the version")
	return cmd
}

func runBuild(ctx context.Context, cmd *cobra.Command, c *client.Client, name, src, desc string) error {
	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	fi, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("build source: %v", err)
	}
	tarPath := src
	if fi.IsDir() {
		fmt.Fprintln(stderr, "checking files ...")
		fmt.Fprintln(stderr, "making .tar file ...")
		f, err := os.CreateTemp("", "qufop-build-*.tar")
		if err != nil {
			return fmt.Errorf("making the tarball: %v", err)
		}
		tarPath = f.Name()
		defer os.Remove(tarPath)
		err = packFolder(src, f)
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("making the tarball: %v", cerr)
		}
		if err != nil {
			return err
		}
	} else if !isTarballName(src) {
		return fmt.Errorf("build source %s: want a folder or a .tar, .tar.gz or .tgz file", src)
	}
	sum, size, err := fileSHA256(tarPath)
	if err != nil {
		return err
	}
	f, err := os.Open(tarPath)
	if err != nil {
		return err
	}
	defer f.Close()
	var body io.Reader = f
	label := filepath.Base(src)
	if fi.IsDir() {
		label = ".tar file"
	}
	var bar *progressbar.ProgressBar
	if isTerminal(stderr) {
		bar = progressbar.NewOptions64(size,
			progressbar.OptionSetWriter(stderr),
			progressbar.OptionSetDescription("uploading "+label),
			progressbar.OptionShowBytes(true),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(stderr) }),
		)
		r := progressbar.NewReader(f, bar)
		body = &r
	} else {
		fmt.Fprintf(stderr, "uploading %s (%d bytes) ...\n", label, size)
	}
	n, err := c.Upload(ctx, name, desc, body, size, sum)
	if bar != nil {
		_ = bar.Exit()
	}
	if err != nil {
		return fmt.Errorf("upload failed: %w", err)
	}
	if bar == nil {
		fmt.Fprintln(stderr, "uploading ... done")
	}
	fmt.Fprintf(stdout, "upload .tar succeed, version %d\n", n)
	fmt.Fprintf(stdout, "build log of %s version %d:\n", name, n)
	if err := c.BuildLog(ctx, name, n, true, stdout); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted; the build goes on: see qufop version %s", name)
		}
		fmt.Fprintf(stderr, "qufop: build log: %v\n", err)
	}
	v, err := waitBuilt(ctx, c, name, n)
	if err != nil {
		return err
	}
	if v.State == api.StateFailed {
		msg := v.Error
		if msg == "" {
			msg = "see the log above"
		}
		return fmt.Errorf("build of %s version %d failed: %s", name, n, msg)
	}
	fmt.Fprintf(stdout, "build success: %s version %d. Next: qufop chver %s -c %d\n", name, n, name, n)
	return nil
}

// waitBuilt polls version n until its build ended (the log stream ends
// with the build, but may have been cut).
func waitBuilt(ctx context.Context, c *client.Client, name string, n int) (*api.Version, error) {
	for {
		v, err := c.Version(ctx, name, n)
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("interrupted; the build goes on: see qufop version %s", name)
			}
			return nil, err
		}
		if v.State != api.StateBuilding {
			return v, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("interrupted; the build goes on: see qufop version %s", name)
		case <-time.After(ufopPollInterval):
		}
	}
}

func isTarballName(p string) bool { return ufopsrc.IsTarballName(p) }

func fileSHA256(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("reading %s: %v", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// packFolder writes the tree at dir as a tar to w (see ufopsrc.Pack).
func packFolder(dir string, w io.Writer) error { return ufopsrc.Pack(dir, w) }
