package builder

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"

	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/ufop"
)

// SpecFile is the description file at the root of a tarball.
const SpecFile = "ufop.yaml"

// Limits cap what a tarball may hold.
type Limits struct {
	MaxBytes       int64 // unpacked size of all regular files
	MaxUploadBytes int64 // the archive as read (compressed or not); 0: no cap
	MaxFiles       int   // entries of any kind
}

// entryError is a refused tarball entry: a 400 naming the entry and why.
func entryError(name, format string, a ...any) error {
	return errs.BadRequest("tarball entry %q: %s", name, fmt.Sprintf(format, a...))
}

// errUploadTooLarge is returned by capReader past its cap.
var errUploadTooLarge = errors.New("upload too large")

type capReader struct {
	r    io.Reader
	left int64
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		// Tell a stream that ends exactly at the cap from one that goes on.
		var one [1]byte
		if n, _ := c.r.Read(one[:]); n > 0 {
			return 0, errUploadTooLarge
		}
		return 0, io.EOF
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}

// Unpack checks and unpacks a tarball (plain tar or gzip, told apart by its
// magic bytes) into dest, which is created if needed and should be empty,
// and returns its parsed ufop.yaml.
//
// It refuses absolute names, ".." components, symlinks whose target leaves
// the tree, hard links to anything but a regular file of the archive itself,
// devices and fifos, and archives over the limits. Every refusal is a 400
// naming the entry and why. Nothing is written outside dest, and no symlink
// the archive created is followed while unpacking. On error dest may hold
// part of the archive: the caller removes it.
func Unpack(ctx context.Context, r io.Reader, dest string, lim Limits) (*ufop.Spec, error) {
	if lim.MaxUploadBytes > 0 {
		r = &capReader{r: r, left: lim.MaxUploadBytes}
	}
	br := bufio.NewReader(r)
	var src io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, uploadErr(err, lim, "tarball is not valid gzip: %v", err)
		}
		defer zr.Close()
		src = zr
	}
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(dest)
	if err != nil {
		return nil, err
	}
	defer root.Close()

	u := &unpacker{
		root:  root,
		lim:   lim,
		files: map[string]bool{},
		links: map[string]string{},
		dirs:  map[string]bool{},
	}
	tr := tar.NewReader(src)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if u.count == 0 {
				return nil, uploadErr(err, lim, "not a tar archive: %v", err)
			}
			return nil, uploadErr(err, lim, "tarball is damaged after %d entries: %v", u.count, err)
		}
		if err := u.entry(hdr, tr); err != nil {
			return nil, uploadErr(err, lim, "%v", err)
		}
	}
	if u.count == 0 {
		return nil, errs.BadRequest("tarball is empty")
	}
	if err := u.checkLinks(); err != nil {
		return nil, err
	}
	if u.spec == nil {
		msg := "tarball has no " + SpecFile + " at its root"
		if u.nested != "" {
			msg += fmt.Sprintf(" (found %s: make the archive from inside its folder, e.g. tar cf app.tar -C %s .)", u.nested, path.Dir(u.nested))
		}
		return nil, errs.BadRequest("%s", msg)
	}
	spec, err := ufop.ParseSpec(u.spec)
	if err != nil {
		return nil, err // *ufop.SpecError values: line and key, status 400
	}
	return spec, nil
}

// uploadErr reports a read past the upload cap as such, else err as a 400
// (errors that already carry a status are kept).
func uploadErr(err error, lim Limits, format string, a ...any) error {
	if errors.Is(err, errUploadTooLarge) {
		return errs.New(413, "tarball is over the %d-byte upload limit", lim.MaxUploadBytes)
	}
	var e *errs.Error
	if errors.As(err, &e) {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return errs.Wrap(400, err, format, a...)
}

type unpacker struct {
	root   *os.Root
	lim    Limits
	count  int
	bytes  int64
	files  map[string]bool   // regular files written (hard-link targets)
	links  map[string]string // symlinks created: path → target
	dirs   map[string]bool
	spec   []byte
	nested string // a ufop.yaml found below the root
}

// clean returns the archive-relative path of a tar name ("" for the root),
// or an error naming why it is refused.
func clean(name string) (string, error) {
	if name == "" {
		return "", errors.New("empty name")
	}
	if strings.HasPrefix(name, "/") {
		return "", errors.New("absolute path")
	}
	if strings.ContainsRune(name, 0) {
		return "", errors.New("NUL in name")
	}
	var parts []string
	depth, dotdot := 0, false
	for _, p := range strings.Split(name, "/") {
		switch p {
		case "", ".":
			continue
		case "..":
			dotdot = true
			depth--
			if depth < 0 {
				return "", errors.New("path leaves the archive")
			}
		default:
			depth++
		}
		parts = append(parts, p)
	}
	if dotdot {
		return "", errors.New(`path has a ".." component`)
	}
	return strings.Join(parts, "/"), nil
}

func (u *unpacker) entry(hdr *tar.Header, r io.Reader) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	u.count++
	if u.lim.MaxFiles > 0 && u.count > u.lim.MaxFiles {
		return entryError(hdr.Name, "more than %d entries in the tarball", u.lim.MaxFiles)
	}
	name, err := clean(hdr.Name)
	if err != nil {
		return entryError(hdr.Name, "%v", err)
	}
	if name == "" {
		if hdr.Typeflag == tar.TypeDir {
			return nil
		}
		return entryError(hdr.Name, "names the archive root but is not a folder")
	}
	// Never go through (or replace) a symlink the archive made.
	for p := name; p != "."; p = path.Dir(p) {
		if _, ok := u.links[p]; ok {
			if p == name {
				return entryError(hdr.Name, "replaces the symlink made by an earlier entry")
			}
			return entryError(hdr.Name, "path goes through the symlink %q", p)
		}
	}
	if path.Base(name) == SpecFile && name != SpecFile && u.nested == "" {
		u.nested = name
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		if u.files[name] {
			return entryError(hdr.Name, "folder replaces a file")
		}
		if err := u.root.MkdirAll(name, 0o755); err != nil {
			return entryError(hdr.Name, "cannot create folder: %v", stripRoot(err))
		}
		_ = u.root.Chmod(name, fs.FileMode(hdr.Mode)&0o777|0o700)
		u.dirs[name] = true
	case tar.TypeReg, tar.TypeRegA:
		if u.dirs[name] {
			return entryError(hdr.Name, "file replaces a folder")
		}
		if hdr.Size < 0 {
			return entryError(hdr.Name, "negative size")
		}
		u.bytes += hdr.Size
		if u.lim.MaxBytes > 0 && u.bytes > u.lim.MaxBytes {
			return entryError(hdr.Name, "unpacked size over the %d-byte limit", u.lim.MaxBytes)
		}
		if name == SpecFile && hdr.Size > ufop.MaxSpecBytes {
			return entryError(hdr.Name, "%d bytes, over the %d-byte limit of %s", hdr.Size, ufop.MaxSpecBytes, SpecFile)
		}
		if err := u.mkParent(hdr.Name, name); err != nil {
			return err
		}
		if u.files[name] { // a later copy of the same file wins, as with tar
			if err := u.root.Remove(name); err != nil {
				return entryError(hdr.Name, "cannot replace: %v", stripRoot(err))
			}
		}
		// O_EXCL: never open through a symlink at the last component.
		f, err := u.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fs.FileMode(hdr.Mode)&0o777|0o400)
		if err != nil {
			return entryError(hdr.Name, "cannot create: %v", stripRoot(err))
		}
		var w io.Writer = f
		var spec strings.Builder
		if name == SpecFile {
			w = io.MultiWriter(f, &spec)
		}
		_, err = io.Copy(w, r)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("tarball entry %q: %w", hdr.Name, err)
		}
		u.files[name] = true
		if name == SpecFile {
			u.spec = []byte(spec.String())
		}
	case tar.TypeSymlink:
		if name == SpecFile {
			return entryError(hdr.Name, "%s must be a regular file, not a symlink", SpecFile)
		}
		if u.files[name] || u.dirs[name] {
			return entryError(hdr.Name, "symlink replaces an earlier entry")
		}
		t := hdr.Linkname
		if t == "" {
			return entryError(hdr.Name, "symlink has no target")
		}
		if strings.HasPrefix(t, "/") {
			return entryError(hdr.Name, "symlink to the absolute path %q leaves the archive", t)
		}
		if !inside(path.Join(path.Dir(name), t)) {
			return entryError(hdr.Name, "symlink target %q leaves the archive", t)
		}
		if err := u.mkParent(hdr.Name, name); err != nil {
			return err
		}
		if err := u.root.Symlink(t, name); err != nil {
			return entryError(hdr.Name, "cannot create symlink: %v", stripRoot(err))
		}
		u.links[name] = t
	case tar.TypeLink:
		target, err := clean(hdr.Linkname)
		if err != nil || target == "" || !u.files[target] {
			return entryError(hdr.Name, "hard link to %q, which is not a file of the archive", hdr.Linkname)
		}
		if target == name {
			return nil
		}
		if name == SpecFile {
			return entryError(hdr.Name, "%s must be a regular file, not a hard link", SpecFile)
		}
		if u.dirs[name] {
			return entryError(hdr.Name, "hard link replaces a folder")
		}
		if err := u.mkParent(hdr.Name, name); err != nil {
			return err
		}
		if u.files[name] {
			if err := u.root.Remove(name); err != nil {
				return entryError(hdr.Name, "cannot replace: %v", stripRoot(err))
			}
		}
		if err := u.root.Link(target, name); err != nil {
			return entryError(hdr.Name, "cannot create hard link: %v", stripRoot(err))
		}
		u.files[name] = true
	case tar.TypeChar, tar.TypeBlock:
		return entryError(hdr.Name, "device files are not allowed")
	case tar.TypeFifo:
		return entryError(hdr.Name, "fifos are not allowed")
	default:
		return entryError(hdr.Name, "entries of type %q are not allowed (only files, folders and links)", string(hdr.Typeflag))
	}
	return nil
}

func (u *unpacker) mkParent(raw, name string) error {
	dir := path.Dir(name)
	if dir == "." {
		return nil
	}
	if err := u.root.MkdirAll(dir, 0o755); err != nil {
		return entryError(raw, "cannot create its folder: %v", stripRoot(err))
	}
	return nil
}

// checkLinks resolves every symlink through the others (not just by its
// text, since a target may pass through other links) and refuses one that
// leaves the tree.
func (u *unpacker) checkLinks() error {
	for name, target := range u.links {
		if err := resolveInside(u.links, name, target); err != nil {
			return entryError(name, "symlink target %q %v", target, err)
		}
	}
	return nil
}

func inside(p string) bool {
	return p != ".." && !strings.HasPrefix(p, "../")
}

// resolveInside follows link → target through the symlinks of links and
// fails if any step leaves the tree.
func resolveInside(links map[string]string, name, target string) error {
	stack := strings.Split(path.Dir(name), "/")
	if path.Dir(name) == "." {
		stack = nil
	}
	queue := strings.Split(target, "/")
	hops := 0
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		switch p {
		case "", ".":
			continue
		case "..":
			if len(stack) == 0 {
				return errors.New("leaves the archive")
			}
			stack = stack[:len(stack)-1]
			continue
		}
		stack = append(stack, p)
		if t, ok := links[strings.Join(stack, "/")]; ok {
			hops++
			if hops > 40 {
				return errors.New("goes through too many symlinks")
			}
			if strings.HasPrefix(t, "/") {
				return errors.New("goes through an absolute symlink")
			}
			stack = stack[:len(stack)-1]
			queue = append(strings.Split(t, "/"), queue...)
		}
	}
	return nil
}

// stripRoot drops the operation and path of an *fs.PathError: the entry is
// already named.
func stripRoot(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}
