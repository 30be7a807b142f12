package ufopsrc

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// Digest is the SHA-256 (hex) of a version's source: of the file's bytes
// for a tarball; for a folder, of its canonical listing (each entry's
// path, kind, permission bits and content or link target, in path order),
// modification times and owners left out, so that the same tree checked
// out again has the same digest although the tar Pack makes of it would
// differ. It refuses what Pack refuses (no ufop.yaml, a symlink leading
// out, a special file).
func Digest(src string) (string, error) {
	fi, err := os.Stat(src)
	if err != nil {
		return "", fmt.Errorf("source: %v", err)
	}
	if !fi.IsDir() {
		if !IsTarballName(src) {
			return "", fmt.Errorf("source %s: want a folder with ufop.yaml at its root, or a .tar, .tar.gz or .tgz file", src)
		}
		f, err := os.Open(src)
		if err != nil {
			return "", fmt.Errorf("source: %v", err)
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			return "", fmt.Errorf("reading %s: %v", src, err)
		}
		return hex.EncodeToString(h.Sum(nil)), nil
	}
	return folderDigest(src)
}

func folderDigest(dir string) (string, error) {
	h := sha256.New()
	err := walk(dir, "source folder", "read", func(p, name string, fi fs.FileInfo, link string) error {
		// Each record is NUL-separated and NUL-ended: no name holds a NUL.
		switch m := fi.Mode(); {
		case m.IsDir():
			fmt.Fprintf(h, "d\x00%s\x00%o\x00", name, m.Perm())
		case m&fs.ModeSymlink != 0:
			fmt.Fprintf(h, "l\x00%s\x00%s\x00", name, link)
		case m.IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return fmt.Errorf("cannot read %s: %v", name, err)
			}
			defer f.Close()
			c := sha256.New()
			if _, err := io.Copy(c, f); err != nil {
				return fmt.Errorf("cannot read %s: %v", name, err)
			}
			fmt.Fprintf(h, "f\x00%s\x00%o\x00%x\x00", name, m.Perm(), c.Sum(nil))
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Tarball returns the path of a tarball of src to upload: src itself, or
// a tar of the folder src made by Pack in a temporary file, which done
// removes.
func Tarball(src string) (path string, done func(), err error) {
	fi, err := os.Stat(src)
	if err != nil {
		return "", nil, fmt.Errorf("source: %v", err)
	}
	if !fi.IsDir() {
		if !IsTarballName(src) {
			return "", nil, fmt.Errorf("source %s: want a folder with ufop.yaml at its root, or a .tar, .tar.gz or .tgz file", src)
		}
		return src, func() {}, nil
	}
	f, err := os.CreateTemp("", "qufop-build-*.tar")
	if err != nil {
		return "", nil, fmt.Errorf("making the tarball: %v", err)
	}
	done = func() { os.Remove(f.Name()) }
	err = Pack(src, f)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("making the tarball: %v", cerr)
	}
	if err != nil {
		done()
		return "", nil, err
	}
	return f.Name(), done, nil
}
