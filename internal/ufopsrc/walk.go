package ufopsrc

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// walk visits the tree at dir, which must have ufop.yaml at its root, as
// Pack packs it and Digest hashes it, so that both take and refuse the
// same trees: fn gets every entry but the root, in path order, with its
// slash-separated name, its info and, for a symlink, its target made
// relative (one leading out of the folder is refused, as is any special
// file). what names the folder in errors ("build folder"), verb the work
// ("pack", "read").
func walk(dir, what, verb string, fn func(p, name string, fi fs.FileInfo, link string) error) error {
	root, err := filepath.Abs(dir)
	if err == nil {
		root, err = filepath.EvalSymlinks(root)
	}
	if err != nil {
		return fmt.Errorf("%s: %v", what, err)
	}
	if fi, err := os.Lstat(filepath.Join(root, "ufop.yaml")); err != nil || !fi.Mode().IsRegular() {
		return fmt.Errorf("folder %s has no ufop.yaml at its root", dir)
	}
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("cannot %s %s: %v", verb, p, err)
		}
		if p == root {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(rel)
		fi, err := d.Info()
		if err != nil {
			return fmt.Errorf("cannot %s %s: %v", verb, name, err)
		}
		link := ""
		switch m := fi.Mode(); {
		case m.IsDir(), m.IsRegular():
		case m&fs.ModeSymlink != 0:
			if link, err = symlinkInside(root, p, name); err != nil {
				return err
			}
		default:
			return fmt.Errorf("cannot pack %s: %s is not a regular file, folder or symlink", dir, name)
		}
		return fn(p, name, fi, link)
	})
}
