package builder

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/qufop/qufop/errs"
)

// fuzzLimits are small so that the fuzzer reaches them.
var fuzzLimits = Limits{MaxBytes: 64 << 10, MaxUploadBytes: 256 << 10, MaxFiles: 32}

// FuzzTarball feeds arbitrary bytes to Unpack as an uploaded tarball, as
// they are and with the header checksums repaired (random bytes almost
// never pass tar's checksum, which would leave the unpacker itself
// unexplored), gzipped when gz. Beyond "no panic" it checks what Unpack
// promises: a refusal is a 400 or 413; nothing is written outside dest;
// dest holds only folders, regular files and symlinks, without set-id bits,
// within the limits; on success the ufop.yaml is a regular file at the root
// and no symlink resolves, on the real file system, outside dest.
func FuzzTarball(f *testing.F) {
	for _, seed := range fuzzSeeds(f) {
		f.Add(seed, false)
		f.Add(seed, true)
	}
	f.Fuzz(func(t *testing.T, data []byte, gz bool) {
		checkUnpack(t, data)
		fixed := repairTar(data)
		if gz {
			var buf bytes.Buffer
			zw := gzip.NewWriter(&buf)
			zw.Write(fixed)
			zw.Close()
			fixed = buf.Bytes()
		}
		checkUnpack(t, fixed)
	})
}

func checkUnpack(t *testing.T, data []byte) {
	t.Helper()
	base := t.TempDir()
	outside := filepath.Join(base, "outside")
	if err := os.Mkdir(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	canary := filepath.Join(outside, "canary")
	if err := os.WriteFile(canary, []byte("canary"), 0o644); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(base, "res")
	spec, err := Unpack(context.Background(), bytes.NewReader(data), dest, fuzzLimits)

	// Nothing outside dest, whatever the outcome.
	names := dirNames(t, base)
	if len(names) > 2 || (len(names) == 2 && names[1] != "res") || names[0] != "outside" {
		t.Fatalf("Unpack wrote beside dest: %q (err %v)", names, err)
	}
	if got := dirNames(t, outside); len(got) != 1 || got[0] != "canary" {
		t.Fatalf("Unpack wrote outside dest: %q (err %v)", got, err)
	}
	if b, rerr := os.ReadFile(canary); rerr != nil || string(b) != "canary" {
		t.Fatalf("Unpack changed a file outside dest: %q %v (err %v)", b, rerr, err)
	}

	if err != nil {
		if st := errs.Status(err); st != 400 && st != 413 {
			t.Fatalf("refusal with status %d: %v", st, err)
		}
		if errs.Public(err) == "processing failed" {
			t.Fatalf("refusal without a public message: %v", err)
		}
		if spec != nil {
			t.Fatalf("a spec with an error: %v", err)
		}
		// dest may hold part of the archive (the caller removes it), but
		// even that part obeys the entry rules.
		walkDest(t, dest, false)
		return
	}
	if int64(len(data)) > fuzzLimits.MaxUploadBytes {
		t.Fatalf("accepted %d bytes over the %d-byte upload limit", len(data), fuzzLimits.MaxUploadBytes)
	}
	if spec == nil || spec.Image == "" || spec.Run == "" {
		t.Fatalf("accepted with an incomplete spec %+v", spec)
	}
	fi, lerr := os.Lstat(filepath.Join(dest, SpecFile))
	if lerr != nil || !fi.Mode().IsRegular() {
		t.Fatalf("accepted without a regular %s at the root: %v %v", SpecFile, fi, lerr)
	}
	walkDest(t, dest, true)
}

// walkDest checks every entry of dest: kinds, modes, limits and, when the
// archive was accepted, that no symlink leads out.
func walkDest(t *testing.T, dest string, accepted bool) {
	t.Helper()
	if _, err := os.Lstat(dest); errors.Is(err, fs.ErrNotExist) {
		return // refused before anything was made
	}
	var n int
	var size int64
	inodes := map[uint64]bool{}
	err := filepath.WalkDir(dest, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dest {
			return nil
		}
		n++
		fi, err := d.Info()
		if err != nil {
			return err
		}
		m := fi.Mode()
		if m&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != 0 {
			t.Fatalf("%s: mode %v has set-id or sticky bits", p, m)
		}
		switch {
		case m.IsDir():
		case m.IsRegular():
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && !inodes[st.Ino] {
				inodes[st.Ino] = true
				size += fi.Size()
			}
		case m&fs.ModeSymlink != 0:
			if accepted {
				rel, _ := filepath.Rel(dest, p)
				if leavesDir(dest, rel) {
					target, _ := os.Readlink(p)
					t.Fatalf("accepted a symlink out: %s -> %s", rel, target)
				}
			}
		default:
			t.Fatalf("%s: mode %v is not a folder, file or symlink", p, m)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walking dest: %v", err)
	}
	// Entries the archive made (folders made for a file's parents are not
	// entries, but each stands for at least one that is).
	if n > 2*fuzzLimits.MaxFiles {
		t.Fatalf("%d names in dest for at most %d entries", n, fuzzLimits.MaxFiles)
	}
	if size > fuzzLimits.MaxBytes {
		t.Fatalf("%d bytes in dest, over the %d-byte limit", size, fuzzLimits.MaxBytes)
	}
}

// leavesDir resolves rel below dir the way the kernel would, reading the
// links on disk (independent of the unpacker's own bookkeeping), and
// reports whether the path gets above dir or to an absolute target.
func leavesDir(dir, rel string) bool {
	var stack []string
	queue := strings.Split(filepath.ToSlash(rel), "/")
	for hops := 0; len(queue) > 0; {
		c := queue[0]
		queue = queue[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(stack) == 0 {
				return true
			}
			stack = stack[:len(stack)-1]
			continue
		}
		stack = append(stack, c)
		p := filepath.Join(append([]string{dir}, stack...)...)
		fi, err := os.Lstat(p)
		if err != nil {
			return false // the kernel would stop here too (ENOENT, ENOTDIR)
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			continue
		}
		if hops++; hops > 255 {
			return false // ELOOP
		}
		target, err := os.Readlink(p)
		if err != nil || strings.HasPrefix(target, "/") {
			return true
		}
		stack = stack[:len(stack)-1]
		queue = append(strings.Split(target, "/"), queue...)
	}
	return false
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, len(es))
	for i, e := range es {
		names[i] = e.Name()
	}
	return names
}

// repairTar returns a copy of data with the checksum of every header block
// recomputed, following the size fields from block to block. Gzip input is
// returned as it is.
func repairTar(data []byte) []byte {
	if len(data) >= 2 && data[0] == 0x1f && data[1] == 0x8b {
		return data
	}
	b := bytes.Clone(data)
	for off := 0; off+512 <= len(b); {
		h := b[off : off+512]
		if isZero(h) {
			off += 512
			continue
		}
		copy(h[148:156], "        ")
		var sum int64
		for _, c := range h {
			sum += int64(c)
		}
		ck := strconv.FormatInt(sum, 8)
		for len(ck) < 6 {
			ck = "0" + ck
		}
		copy(h[148:156], ck+"\x00 ")
		size, err := strconv.ParseInt(strings.Trim(string(h[124:136]), " \x00"), 8, 64)
		if err != nil || size < 0 || size > int64(len(b)) {
			size = 0
		}
		off += 512 + int((size+511)/512*512)
	}
	return b
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// fuzzSeeds are real tarballs: the examples' folders as `make tar` packs
// them, a good archive with every entry kind, and one of each refusal.
func fuzzSeeds(f *testing.F) [][]byte {
	var seeds [][]byte
	for _, dir := range []string{"../examples/ufop-demo", "../examples/ufop-sh"} {
		seeds = append(seeds, seedTar(f, dir))
	}
	if len(seeds) == 0 {
		f.Fatal("no seeds")
	}
	spec := file("ufop.yaml", goodSpec)
	for _, es := range [][]tentry{
		{
			{name: "./", typ: tar.TypeDir},
			file("./ufop.yaml", goodSpec),
			{name: "./bin/", typ: tar.TypeDir},
			{name: "./bin/app", body: "#!/bin/sh\necho hi\n", mode: 0o755},
			{name: "lib/current", typ: tar.TypeSymlink, link: "../bin/app"},
			{name: "bin/app2", typ: tar.TypeLink, link: "./bin/app"},
			{name: "self", typ: tar.TypeSymlink, link: "."},
		},
		{spec, file("../x", "x")},
		{spec, file("/etc/x", "x")},
		{spec, {name: "a/l", typ: tar.TypeSymlink, link: "../../etc"}},
		{spec, {name: "d/", typ: tar.TypeDir}, {name: "l2", typ: tar.TypeSymlink, link: "d/l1/.."}, {name: "d/l1", typ: tar.TypeSymlink, link: ".."}},
		{spec, {name: "sub/", typ: tar.TypeDir}, {name: "l", typ: tar.TypeSymlink, link: "sub"}, file("l/x", "x")},
		{spec, {name: "h", typ: tar.TypeLink, link: "/etc/shadow"}},
		{spec, {name: "dev/null", typ: tar.TypeChar}},
		{spec, {name: "p", typ: tar.TypeFifo}},
		{spec, {name: "x", body: "s", mode: 0o4755}},
		{{name: "ufop.yaml", typ: tar.TypeSymlink, link: "x"}, file("x", goodSpec)},
		{file("app/ufop.yaml", goodSpec)},
		{file("ufop.yaml", "image: [\n")},
	} {
		seeds = append(seeds, makeTar(f, false, es...))
	}
	return seeds
}

// seedTar packs the sources of an example folder as its `make tar` would
// (its untracked build/ output left out: a 6 MB seed would slow every run).
func seedTar(f *testing.F, dir string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "build" {
			return filepath.SkipDir
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		h, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		h.Name = "./" + filepath.ToSlash(rel)
		if d.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			_, err = tw.Write(b)
			return err
		}
		return nil
	})
	if err == nil {
		err = tw.Close()
	}
	if err != nil {
		f.Fatalf("packing %s: %v", dir, err)
	}
	return buf.Bytes()
}

// The fuzz checks must be able to fail: leavesDir sees a link out through
// another link, and repairTar makes a tarball with broken checksums whole.
func TestFuzzChecks(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Mkdir(filepath.Join(dir, "d"), 0o755))
	must(os.Symlink("..", filepath.Join(dir, "d", "up")))
	must(os.Symlink("d/up/..", filepath.Join(dir, "out")))
	must(os.Symlink("d/up/d", filepath.Join(dir, "in")))
	must(os.Symlink("/etc", filepath.Join(dir, "abs")))
	for name, want := range map[string]bool{"out": true, "abs": true, "in": false, "d/up": false, "nothere/../..": false} {
		if got := leavesDir(dir, name); got != want {
			t.Errorf("leavesDir(%q) = %v, want %v", name, got, want)
		}
	}

	good := makeTar(t, false, file("ufop.yaml", goodSpec), file("a", "x"))
	broken := bytes.Clone(good)
	broken[0] = 'U' // "Ufop.yaml": the first checksum no longer matches
	broken[512+512] = 'b'
	if _, err := Unpack(context.Background(), bytes.NewReader(broken), t.TempDir(), fuzzLimits); err == nil {
		t.Fatal("a broken checksum was accepted")
	}
	broken[0] = 'u'
	if _, err := Unpack(context.Background(), bytes.NewReader(repairTar(broken)), t.TempDir(), fuzzLimits); err != nil {
		t.Fatalf("repaired: %v", err)
	}
}
