package ufop

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/errs"
)

func TestParseSpecQiniuExample(t *testing.T) {
	// The v1 example of the reference, unchanged: a v1 program (POST /uop)
	// with no health endpoint.
	s, err := ParseSpec([]byte(`image: ubuntu
build_script:
  - sudo apt-get update
  - sudo apt-get -y install imagemagick
  - mv $RESOURCE/* .
run: ./qufop qufop.conf
`))
	require.NoError(t, err)
	assert.Equal(t, &Spec{
		Image:       "ubuntu",
		BuildScript: []string{"sudo apt-get update", "sudo apt-get -y install imagemagick", "mv $RESOURCE/* ."},
		Run:         "./qufop qufop.conf",
		Protocol:    ProtocolUOP,
		Health:      "",
		Flavor:      "C1M1",
		Concurrency: 1,
		Timeout:     30 * time.Second,
		KillTimeout: 5 * time.Second,
	}, s)
}

func TestParseSpecExtensions(t *testing.T) {
	s, err := ParseSpec([]byte(`image: local/busybox:1
run: ./server
protocol: uop
health: /healthz
env:
  MODE: fast
  LEVEL: 3
flavor: C2M4
concurrency: 8
timeout: 2m
kill_timeout: 10
`))
	require.NoError(t, err)
	assert.Equal(t, "local/busybox:1", s.Image)
	assert.Equal(t, ProtocolUOP, s.Protocol)
	assert.Equal(t, "/healthz", s.Health)
	assert.Equal(t, map[string]string{"MODE": "fast", "LEVEL": "3"}, s.Env)
	assert.Equal(t, "C2M4", s.Flavor)
	assert.Equal(t, 8, s.Concurrency)
	assert.Equal(t, 2*time.Minute, s.Timeout)
	assert.Equal(t, 10*time.Second, s.KillTimeout)
}

func TestParseSpecErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // each must appear in the error
	}{
		{"empty", "", []string{"ufop.yaml:1: file is empty"}},
		{"not a mapping", "- a\n- b\n", []string{"ufop.yaml:1: want a mapping"}},
		{"syntax", "image: ubuntu\nrun: [x\n", []string{"not valid YAML"}},
		{"unknown key", "image: ubuntu\nrun: x\nport: 9100\n", []string{"ufop.yaml:3: port: unknown key"}},
		{"missing run", "image: ubuntu\n", []string{"run: missing (required)"}},
		{"missing image", "run: x\n", []string{"image: missing (required)"}},
		{"duplicate", "image: ubuntu\nrun: x\nrun: y\n", []string{"ufop.yaml:3: run: given twice (first at line 2)"}},
		{"bad image", "image: Not An Image\nrun: x\n", []string{"ufop.yaml:1: image:", "not an image name"}},
		{"script not list", "image: ubuntu\nrun: x\nbuild_script: make\n", []string{"ufop.yaml:3: build_script: want a list"}},
		{"empty script entry", "image: ubuntu\nrun: x\nbuild_script:\n  - make\n  - ''\n", []string{"ufop.yaml:5: build_script: each entry"}},
		{"protocol", "image: ubuntu\nrun: x\nprotocol: grpc\n", []string{"ufop.yaml:3: protocol: want handler or uop"}},
		{"health", "image: ubuntu\nrun: x\nhealth: health\n", []string{"ufop.yaml:3: health: want an HTTP path"}},
		{"env list", "image: ubuntu\nrun: x\nenv: [A]\n", []string{"ufop.yaml:3: env: want a mapping"}},
		{"env name", "image: ubuntu\nrun: x\nenv:\n  1A: x\n", []string{"ufop.yaml:4: env: \"1A\" is not a valid"}},
		{"env reserved", "image: ubuntu\nrun: x\nenv:\n  PORT_HTTP: 1\n", []string{"ufop.yaml:4: env: PORT_HTTP is set by the platform"}},
		{"flavor", "image: ubuntu\nrun: x\nflavor: huge\n", []string{"ufop.yaml:3: flavor: want a flavor such as C1M1"}},
		{"flavor range", "image: ubuntu\nrun: x\nflavor: C99M1\n", []string{"out of range"}},
		{"concurrency", "image: ubuntu\nrun: x\nconcurrency: 0\n", []string{"ufop.yaml:3: concurrency: want an integer in 1..1024"}},
		{"concurrency text", "image: ubuntu\nrun: x\nconcurrency: many\n", []string{"concurrency: want an integer"}},
		{"timeout", "image: ubuntu\nrun: x\ntimeout: soon\n", []string{"ufop.yaml:3: timeout: want a duration"}},
		{"timeout too long", "image: ubuntu\nrun: x\ntimeout: 2h\n", []string{"timeout: want a duration in (0, 1h0m0s]"}},
		{"kill_timeout too long", "image: ubuntu\nrun: x\nkill_timeout: 1m\n", []string{"kill_timeout: want a duration in (0, 30s]"}},
		{"all at once", "image: ''\nrun: x\nfoo: 1\nconcurrency: -1\n", []string{"ufop.yaml:1: image", "ufop.yaml:3: foo", "ufop.yaml:4: concurrency"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ParseSpec([]byte(tc.yaml))
			require.Error(t, err)
			assert.Nil(t, s)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
			assert.Equal(t, 400, errs.Status(err))
		})
	}
}

func TestParseSpecTooLarge(t *testing.T) {
	_, err := ParseSpec([]byte("image: ubuntu\nrun: x\n# " + strings.Repeat("x", MaxSpecBytes)))
	assert.ErrorContains(t, err, "over the")
}

func TestFlavors(t *testing.T) {
	for name, want := range map[string]Flavor{
		"C1M1":    {"C1M1", 1, 1024},
		"C2M4":    {"C2M4", 2, 4096},
		"default": {"C1M1", 1, 1024},
	} {
		f, err := ParseFlavor(name)
		require.NoError(t, err, name)
		assert.Equal(t, want, f)
	}
	for _, bad := range []string{"", "c1m1", "C0M1", "C1M0", "C17M1", "C1M65", "M1C1", "C1M1 "} {
		_, err := ParseFlavor(bad)
		assert.Error(t, err, bad)
	}
	assert.Equal(t, 2000, Flavor{CPUs: 2}.CPUMHz())
}

// FuzzParseSpec: never panics; what it accepts is complete and in range.
func FuzzParseSpec(f *testing.F) {
	// The specs of the examples are the real fixtures: a seed corpus that
	// silently went empty would leave the fuzzer to find YAML by itself.
	seeds, _ := filepath.Glob("../examples/*/ufop.yaml")
	if len(seeds) == 0 {
		f.Fatal("no ../examples/*/ufop.yaml to seed from")
	}
	for _, p := range seeds {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("image: ubuntu\nbuild_script:\n  - echo a\n  - |\n    echo b\nrun: ./x\nprotocol: uop\nhealth: /h\nenv:\n  A: \"1\"\n  B: two\nflavor: C2M4\nconcurrency: 3\ntimeout: 1m\nkill_timeout: 5s\n"))
	f.Add([]byte("image: ubuntu\nrun: x\n"))
	f.Add([]byte("image: ubuntu\nrun: x\nenv:\n  A: 1\ntimeout: 3\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSpec(b)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "ufop.yaml:") {
				t.Fatalf("error without a line: %v", err)
			}
			return
		}
		if s.Image == "" || s.Run == "" || s.Concurrency < 1 || s.Timeout <= 0 || s.KillTimeout <= 0 {
			t.Fatalf("accepted an incomplete spec: %+v", s)
		}
		if _, err := ParseFlavor(s.Flavor); err != nil {
			t.Fatalf("accepted a bad flavor: %v", err)
		}
	})
}

func TestParseBase(t *testing.T) {
	for _, tc := range []struct {
		image, name string
		version     int
		ok          bool
	}{
		{"test.v7", "test", 7, true},
		{"my-ufop.v12", "my-ufop", 12, true},
		{"a.b.v1", "a.b", 1, true},
		{"ubuntu", "", 0, false},
		{"test.v0", "", 0, false},
		{"local/busybox:1", "", 0, false},
		{"Test.v1", "", 0, false},
	} {
		name, v, ok := ParseBase(tc.image)
		assert.Equal(t, []any{tc.name, tc.version, tc.ok}, []any{name, v, ok}, tc.image)
	}
	v, ok := BaseVersion("demo.v3", "demo")
	assert.True(t, ok)
	assert.Equal(t, 3, v)
	_, ok = BaseVersion("demo.v3", "other")
	assert.False(t, ok)
}
