// Package ufopsrc reads the source of a UFOP version as `qufop build` and
// the Terraform provider upload it: a folder with ufop.yaml at its root,
// packed into a tar on the fly, or a tarball (.tar, .tar.gz, .tgz).
package ufopsrc

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// IsTarballName reports whether p is named as a tarball the platform takes.
func IsTarballName(p string) bool {
	p = strings.ToLower(p)
	return strings.HasSuffix(p, ".tar") || strings.HasSuffix(p, ".tar.gz") || strings.HasSuffix(p, ".tgz")
}

// Pack writes the tree at dir as a tar to w, ufop.yaml at its root.
// Everything is included with its mode; symlinks are kept when they point
// inside the folder (absolute ones are made relative) and refused
// otherwise; other special files are refused.
func Pack(dir string, w io.Writer) error {
	tw := tar.NewWriter(w)
	err := walk(dir, "build folder", "pack", func(p, name string, fi fs.FileInfo, link string) error {
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return fmt.Errorf("cannot pack %s: %v", name, err)
		}
		hdr.Name = name
		if fi.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("making the tarball: %v", err)
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("cannot pack %s: %v", name, err)
		}
		defer f.Close()
		if n, err := io.Copy(tw, f); err != nil {
			if n != fi.Size() && errors.Is(err, tar.ErrWriteTooLong) {
				return fmt.Errorf("cannot pack %s: it changed while being packed", name)
			}
			return fmt.Errorf("cannot pack %s: %v", name, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("making the tarball: %v", err)
	}
	return nil
}

// symlinkInside returns the target of the symlink at p (name in the
// archive), relative, or an error when it leads out of root.
func symlinkInside(root, p, name string) (string, error) {
	target, err := os.Readlink(p)
	if err != nil {
		return "", fmt.Errorf("cannot pack %s: %v", name, err)
	}
	abs := target
	if !filepath.IsAbs(abs) {
		abs = filepath.Join(filepath.Dir(p), target)
	}
	rel, err := filepath.Rel(root, filepath.Clean(abs))
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("cannot pack the folder: symlink %s points outside it (to %s)", name, target)
	}
	if filepath.IsAbs(target) {
		if target, err = filepath.Rel(filepath.Dir(p), abs); err != nil {
			return "", fmt.Errorf("cannot pack %s: %v", name, err)
		}
	}
	return filepath.ToSlash(target), nil
}
