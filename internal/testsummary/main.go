// Command testsummary reads `go test -json` on stdin and prints what plain
// `go test` prints (a line per package, the output of failing tests), then
// every skipped test with the reason it gave: plain `go test` hides skips,
// and a test skipped because a service is missing looks like a pass.
//
//	go test -json ./... | go run ./internal/testsummary
//
// It exits 1 when a test or a package failed (also when the stream says
// nothing at all), so that make can stop on it.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

// event is one line of test2json's output.
type event struct {
	Action     string
	Package    string
	ImportPath string // build-output and build-fail
	Test       string
	Elapsed    float64
	Output     string
}

type pkgState struct {
	out   []string // package-level output (no test)
	lines []line   // test output in order of arrival
}

type line struct{ test, text string }

type skip struct{ pkg, test, why string }

type summary struct {
	w       io.Writer
	pkgs    map[string]*pkgState
	skipped []skip
	failed  bool
	seen    bool
}

func main() {
	s := &summary{w: os.Stdout, pkgs: map[string]*pkgState{}}
	if err := s.read(os.Stdin); err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(2)
	}
	if s.finish() {
		os.Exit(1)
	}
}

func (s *summary) pkg(name string) *pkgState {
	p := s.pkgs[name]
	if p == nil {
		p = &pkgState{}
		s.pkgs[name] = p
	}
	return p
}

func (s *summary) read(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			// Not an event (go vet or the linker talking): pass it on.
			fmt.Fprintln(s.w, string(line))
			continue
		}
		s.seen = true
		s.event(e)
	}
	return sc.Err()
}

func (s *summary) event(e event) {
	switch e.Action {
	case "build-output":
		fmt.Fprint(s.w, e.Output)
		return
	case "build-fail":
		s.failed = true
		return
	}
	p := s.pkg(e.Package)
	switch e.Action {
	case "output":
		if e.Test == "" {
			p.out = append(p.out, e.Output)
		} else {
			p.lines = append(p.lines, line{e.Test, e.Output})
		}
	case "skip":
		if e.Test != "" {
			s.skipped = append(s.skipped, skip{e.Package, e.Test, reason(p.output(e.Test, false))})
			return
		}
		s.endPackage(e, p)
	case "fail":
		if e.Test != "" {
			// A failing subtest's output is printed with its parent's.
			if !strings.Contains(e.Test, "/") {
				for _, l := range p.output(e.Test, true) {
					fmt.Fprint(s.w, l)
				}
			}
			return
		}
		s.failed = true
		s.endPackage(e, p)
	case "pass":
		if e.Test == "" {
			s.endPackage(e, p)
		}
	}
}

// output is what test printed, with its subtests' output if asked, in
// the order go test printed it.
func (p *pkgState) output(test string, subtests bool) []string {
	var out []string
	for _, l := range p.lines {
		if l.test == test || subtests && strings.HasPrefix(l.test, test+"/") {
			out = append(out, l.text)
		}
	}
	return out
}

// endPackage prints the package's line as go test does.
func (s *summary) endPackage(e event, p *pkgState) {
	switch e.Action {
	case "pass":
		fmt.Fprintf(s.w, "ok  \t%s\t%.3fs\n", e.Package, e.Elapsed)
	case "skip":
		fmt.Fprintf(s.w, "?   \t%s\t[no test files]\n", e.Package)
	case "fail":
		// Package-level output: a panic, a TestMain failure, a timeout.
		for _, l := range p.out {
			if !strings.HasPrefix(l, "FAIL") && !strings.HasPrefix(l, "ok ") {
				fmt.Fprint(s.w, l)
			}
		}
		fmt.Fprintf(s.w, "FAIL\t%s\t%.3fs\n", e.Package, e.Elapsed)
	}
	delete(s.pkgs, e.Package)
}

// reason is what a skipped test said: its output without the framing
// lines go test adds.
func reason(out []string) string {
	var msg []string
	for _, l := range out {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- SKIP") {
			continue
		}
		msg = append(msg, t)
	}
	if len(msg) == 0 {
		return "(no reason given)"
	}
	return strings.Join(msg, " ")
}

// finish prints the skipped tests and says whether anything failed.
func (s *summary) finish() bool {
	if len(s.skipped) > 0 {
		fmt.Fprintf(s.w, "\n%d skipped test(s):\n", len(s.skipped))
		for _, k := range s.skipped {
			fmt.Fprintf(s.w, "SKIP %s %s: %s\n", strings.TrimPrefix(k.pkg, "github.com/qufop/qufop/"), k.test, k.why)
		}
	} else if s.seen {
		fmt.Fprintln(s.w, "\nno test was skipped")
	}
	if !s.seen {
		fmt.Fprintln(s.w, "testsummary: no test events on stdin")
		return true
	}
	return s.failed
}
