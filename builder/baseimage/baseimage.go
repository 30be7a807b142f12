// Package baseimage makes the base images that cannot be pulled here: a busybox
// root file system imported into the local Docker daemon.
package baseimage

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
)

// BusyboxRef is the base image that `qufop dev` and the tests make locally
// from Debian's busybox-static: no image can be pulled on the machines this
// project runs on. ufop.yaml may name it (image: local/busybox:1).
const BusyboxRef = "local/busybox:1"

// busyboxApplets are linked in the imported root file system.
var busyboxApplets = []string{
	"sh", "ls", "cat", "echo", "cp", "mv", "rm", "mkdir", "chmod", "chown", "id", "env",
	"sleep", "wget", "nc", "httpd", "tr", "wc", "md5sum", "sha256sum", "head", "tail",
	"grep", "sed", "awk", "printf", "test", "[", "true", "false", "adduser", "addgroup",
	"tar", "gzip", "date", "kill", "ps", "touch", "stat", "dd", "cut", "sort", "uniq",
	"xargs", "find", "rev", "expr", "basename", "dirname", "seq", "base64",
}

// Option changes how ImportBusybox makes the image.
type Option func(*options)

type options struct{ labels map[string]string }

// WithLabels puts labels on the image ImportBusybox makes (tests mark theirs
// qufop.test=1, so that an image made by a test is told from one made by
// qufop dev). An image that exists already is left as it is.
func WithLabels(labels map[string]string) Option {
	return func(o *options) {
		if o.labels == nil {
			o.labels = map[string]string{}
		}
		for k, v := range labels {
			o.labels[k] = v
		}
	}
}

// ImportBusybox makes ref from the busybox binary at path (docker import of
// a root file system holding it and its applets), unless the daemon has ref.
func ImportBusybox(ctx context.Context, c *client.Client, ref, path string, opts ...Option) error {
	if _, err := c.ImageInspect(ctx, ref); err == nil {
		return nil
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	var changes []string
	for _, k := range slices.Sorted(maps.Keys(o.labels)) {
		if k == "" || strings.ContainsAny(k, "= \t\r\n\"") {
			return fmt.Errorf("making %s: bad label %q", ref, k)
		}
		v := o.labels[k]
		if strings.ContainsAny(v, "\r\n") {
			return fmt.Errorf("making %s: label %s: values may not hold line breaks", ref, k)
		}
		// A LABEL instruction of docker import's changes: a double-quoted
		// value, with \ " and $ (variable expansion) escaped.
		changes = append(changes, "LABEL "+k+"=\""+strings.NewReplacer(`\`, `\\`, `"`, `\"`, `$`, `\$`).Replace(v)+"\"")
	}
	bin, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("making %s: %w (apt-get install busybox-static)", ref, err)
	}
	rootfs, err := BusyboxRootFS(bin)
	if err != nil {
		return err
	}
	rc, err := c.ImageImport(ctx, image.ImportSource{Source: bytes.NewReader(rootfs), SourceName: "-"}, ref, image.ImportOptions{Changes: changes})
	if err != nil {
		return fmt.Errorf("making %s: docker import: %w", ref, err)
	}
	_, _ = io.Copy(io.Discard, rc)
	rc.Close()
	if _, err := c.ImageInspect(ctx, ref); err != nil {
		return fmt.Errorf("making %s: docker import left no image: %w", ref, err)
	}
	return nil
}

// BusyboxRootFS returns a tar of a minimal root file system: the busybox
// binary, its applets as symlinks, /tmp and /etc/passwd.
func BusyboxRootFS(busybox []byte) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Now()
	dirs := []string{"bin/", "tmp/", "etc/", "home/", "root/", "usr/", "usr/bin/", "usr/local/", "usr/local/bin/"}
	for _, d := range dirs {
		mode := int64(0o755)
		if d == "tmp/" {
			mode = 0o1777
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: mode, ModTime: now}); err != nil {
			return nil, err
		}
	}
	files := []struct {
		name string
		mode int64
		data []byte
	}{
		{"bin/busybox", 0o755, busybox},
		{"etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n")},
		{"etc/group", 0o644, []byte("root:x:0:\nnogroup:x:65534:\n")},
	}
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: now}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	for _, a := range busyboxApplets {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", ModTime: now}); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
