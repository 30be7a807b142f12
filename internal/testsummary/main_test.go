package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

func TestSummary(t *testing.T) {
	for _, tc := range []struct {
		file   string
		failed bool
		want   []string
		absent []string
	}{
		{"testdata/skips.json", false, []string{
			"ok  \tgithub.com/qufop/qufop/a\t0.504s\n",
			"?   \tgithub.com/qufop/qufop/b\t[no test files]\n",
			"2 skipped test(s):\n",
			"SKIP a TestDocker: a_test.go:10: skipping: no Docker daemon answers\n",
			"SKIP a TestNomad/real: a_test.go:13: skipping: no nomad on PATH\n",
		}, []string{"=== RUN", "TestFine output"}},
		{"testdata/fail.json", true, []string{
			"    x_test.go:13: want 1, got 2\n",
			"    x_test.go:15: sub failed\n",
			"--- FAIL: TestBroken",
			"FAIL\tgithub.com/qufop/qufop/x\t0.106s\n",
			"no test was skipped\n",
		}, []string{"TestFine output"}},
		{"testdata/panic.json", true, []string{"panic: boom", "p_test.go:5", "FAIL\tgithub.com/qufop/qufop/p\t0.005s\n"}, nil},
	} {
		t.Run(tc.file, func(t *testing.T) {
			in, err := os.ReadFile(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			s := &summary{w: &out, pkgs: map[string]*pkgState{}}
			if err := s.read(bytes.NewReader(in)); err != nil {
				t.Fatal(err)
			}
			if got := s.finish(); got != tc.failed {
				t.Errorf("failed = %v, want %v", got, tc.failed)
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			for _, a := range tc.absent {
				if strings.Contains(out.String(), a) {
					t.Errorf("output has %q:\n%s", a, out.String())
				}
			}
		})
	}
}

func TestEmptyStreamFails(t *testing.T) {
	var out bytes.Buffer
	s := &summary{w: &out, pkgs: map[string]*pkgState{}}
	if err := s.read(strings.NewReader("")); err != nil {
		t.Fatal(err)
	}
	if !s.finish() {
		t.Fatal("an empty stream must fail: nothing was tested")
	}
}
