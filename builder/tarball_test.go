package builder

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qufop/qufop/errs"
)

func TestUnpackGood(t *testing.T) {
	for _, gz := range []bool{false, true} {
		dest := filepath.Join(t.TempDir(), "res")
		data := makeTar(t, gz,
			tentry{name: "./", typ: tar.TypeDir},
			file("./ufop.yaml", goodSpec),
			tentry{name: "./bin/", typ: tar.TypeDir},
			tentry{name: "./bin/app", body: "#!/bin/sh\necho hi\n", mode: 0o755},
			tentry{name: "./lib/", typ: tar.TypeDir},
			tentry{name: "lib/current", typ: tar.TypeSymlink, link: "../bin/app"},
			tentry{name: "bin/app2", typ: tar.TypeLink, link: "./bin/app"},
			tentry{name: "self", typ: tar.TypeSymlink, link: "."},
		)
		spec, err := Unpack(context.Background(), bytes.NewReader(data), dest, Limits{MaxBytes: 1 << 20, MaxFiles: 100})
		if err != nil {
			t.Fatalf("gz=%v: %v", gz, err)
		}
		if spec.Image != "busybox" || spec.Run != "./app" || len(spec.BuildScript) != 1 {
			t.Fatalf("spec = %+v", spec)
		}
		fi, err := os.Stat(filepath.Join(dest, "bin/app"))
		if err != nil || fi.Mode().Perm()&0o100 == 0 {
			t.Fatalf("bin/app: %v %v", fi, err)
		}
		if l, err := os.Readlink(filepath.Join(dest, "lib/current")); err != nil || l != "../bin/app" {
			t.Fatalf("lib/current -> %q, %v", l, err)
		}
		b, err := os.ReadFile(filepath.Join(dest, "bin/app2"))
		if err != nil || !strings.Contains(string(b), "echo hi") {
			t.Fatalf("hard link: %q %v", b, err)
		}
	}
}

func TestUnpackRefusals(t *testing.T) {
	spec := file("ufop.yaml", goodSpec)
	lim := Limits{MaxBytes: 1 << 20, MaxFiles: 100}
	cases := []struct {
		name    string
		entries []tentry
		lim     *Limits
		want    []string // substrings of the error
	}{
		{"absolute", []tentry{spec, file("/etc/x", "x")}, nil, []string{`"/etc/x"`, "absolute path"}},
		{"dotdot", []tentry{spec, file("../x", "x")}, nil, []string{`tarball entry "../x": path leaves the archive`}},
		{"deep dotdot", []tentry{spec, file("a/../../x", "x")}, nil, []string{`"a/../../x"`, "leaves the archive"}},
		{"inner dotdot", []tentry{spec, file("a/../x", "x")}, nil, []string{`"a/../x"`, `".." component`}},
		{"symlink absolute", []tentry{spec, {name: "l", typ: tar.TypeSymlink, link: "/etc/passwd"}}, nil, []string{`"l"`, "absolute path", "/etc/passwd"}},
		{"symlink relative out", []tentry{spec, {name: "a/l", typ: tar.TypeSymlink, link: "../../etc"}}, nil, []string{`"a/l"`, "leaves the archive"}},
		{"symlink chain out", []tentry{spec,
			{name: "d/", typ: tar.TypeDir},
			{name: "l2", typ: tar.TypeSymlink, link: "d/l1/.."},
			{name: "d/l1", typ: tar.TypeSymlink, link: ".."},
		}, nil, []string{`"l2"`, "leaves the archive"}},
		{"through symlink", []tentry{spec,
			{name: "sub/", typ: tar.TypeDir},
			{name: "l", typ: tar.TypeSymlink, link: "sub"},
			file("l/x", "x"),
		}, nil, []string{`"l/x"`, `through the symlink "l"`}},
		{"replace symlink", []tentry{spec,
			{name: "l", typ: tar.TypeSymlink, link: "ufop.yaml"},
			file("l", "x"),
		}, nil, []string{`"l"`, "replaces the symlink"}},
		{"hardlink out", []tentry{spec, {name: "h", typ: tar.TypeLink, link: "/etc/shadow"}}, nil, []string{`"h"`, "hard link", "not a file of the archive"}},
		{"hardlink missing", []tentry{spec, {name: "h", typ: tar.TypeLink, link: "nothere"}}, nil, []string{`"h"`, "not a file of the archive"}},
		{"device", []tentry{spec, {name: "dev/null", typ: tar.TypeChar}}, nil, []string{`"dev/null"`, "device"}},
		{"block", []tentry{spec, {name: "sda", typ: tar.TypeBlock}}, nil, []string{`"sda"`, "device"}},
		{"fifo", []tentry{spec, {name: "p", typ: tar.TypeFifo}}, nil, []string{`"p"`, "fifo"}},
		{"too many files", []tentry{spec, file("a", ""), file("b", ""), file("c", "")}, &Limits{MaxBytes: 1 << 20, MaxFiles: 3}, []string{`"c"`, "more than 3 entries"}},
		{"too large", []tentry{spec, file("big", strings.Repeat("x", 200))}, &Limits{MaxBytes: 150, MaxFiles: 10}, []string{`"big"`, "over the 150-byte limit"}},
		{"yaml symlink", []tentry{file("x", goodSpec), {name: "ufop.yaml", typ: tar.TypeSymlink, link: "x"}}, nil, []string{`"ufop.yaml"`, "regular file"}},
		{"missing ufop.yaml", []tentry{file("app", "x")}, nil, []string{"no ufop.yaml at its root"}},
		{"nested ufop.yaml", []tentry{{name: "myufop/", typ: tar.TypeDir}, file("myufop/ufop.yaml", goodSpec)}, nil, []string{"no ufop.yaml at its root", "found myufop/ufop.yaml"}},
		{"malformed ufop.yaml", []tentry{file("ufop.yaml", "image: busybox\nrun: [unclosed\n")}, nil, []string{"ufop.yaml:", "not valid YAML"}},
		{"bad value", []tentry{file("ufop.yaml", "image: busybox\nbuild_script: make\nrun: ./app\n")}, nil, []string{"ufop.yaml:2: build_script: want a list"}},
		{"unknown key", []tentry{file("ufop.yaml", "image: busybox\nrun: ./app\nport: 80\n")}, nil, []string{"ufop.yaml:3: port: unknown key"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := lim
			if tc.lim != nil {
				l = *tc.lim
			}
			for _, gz := range []bool{false, true} {
				dir := t.TempDir()
				dest := filepath.Join(dir, "res")
				_, err := Unpack(context.Background(), bytes.NewReader(makeTar(t, gz, tc.entries...)), dest, l)
				if err == nil {
					t.Fatalf("gz=%v: no error", gz)
				}
				for _, w := range tc.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("gz=%v: error %q does not contain %q", gz, err, w)
					}
				}
				if st := errs.Status(err); st != 400 {
					t.Errorf("status %d, want 400 (%v)", st, err)
				}
				// Nothing outside dest.
				ents, _ := os.ReadDir(dir)
				if len(ents) != 1 {
					t.Errorf("wrote outside dest: %v", ents)
				}
			}
		})
	}
}

func TestUnpackUploadCap(t *testing.T) {
	data := makeTar(t, false, file("ufop.yaml", goodSpec), file("x", strings.Repeat("y", 4096)))
	_, err := Unpack(context.Background(), bytes.NewReader(data), t.TempDir(), Limits{MaxUploadBytes: 1024})
	if err == nil || !strings.Contains(err.Error(), "upload limit") || errs.Status(err) != 413 {
		t.Fatalf("err = %v (%d)", err, errs.Status(err))
	}
	// Exactly at the cap is fine.
	if _, err := Unpack(context.Background(), bytes.NewReader(data), t.TempDir(), Limits{MaxUploadBytes: int64(len(data))}); err != nil {
		t.Fatal(err)
	}
}

func TestUnpackNotATar(t *testing.T) {
	_, err := Unpack(context.Background(), strings.NewReader("hello, this is not a tarball at all......"), t.TempDir(), Limits{})
	if err == nil || errs.Status(err) != 400 {
		t.Fatalf("err = %v", err)
	}
}
