package builder

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qufop/qufop/ufop"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func TestRenderDockerfileGolden(t *testing.T) {
	cfg := NewDefaultConfig()
	cases := []struct {
		golden string
		yaml   string
	}{
		{"ubuntu", `image: ubuntu
build_script:
  - sudo apt-get update
  - sudo apt-get -y install imagemagick
  - mv $RESOURCE/* .
run: ./qufop qufop.conf
`},
		{"busybox", `image: busybox
build_script:
  - mv $RESOURCE/* .
  - echo "it's built" > built.txt
run: httpd -f -p 9100 -h .
`},
		{"previous", `image: thumb.v7
build_script:
  - cp $RESOURCE/new.conf .
run: ./thumb -c new.conf
`},
		{"env", `image: local/busybox:1
env:
  LANG: C.UTF-8
  GREETING: 'say "hi" for $5 \o/'
build_script:
  - |
    if [ -f $RESOURCE/x ]; then
      cp $RESOURCE/x .
    fi
run: ./app --port $PORT_HTTP
`},
	}
	for _, tc := range cases {
		t.Run(tc.golden, func(t *testing.T) {
			spec, err := ufop.ParseSpec([]byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			base, err := cfg.ResolveBase(spec.Image, "alice")
			if err != nil {
				t.Fatal(err)
			}
			got, err := RenderDockerfile(spec, RenderOptions{Base: base, User: cfg.User, Port: Port})
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tc.golden+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./builder/ -run Golden -update)", err)
			}
			if got != string(want) {
				t.Errorf("Dockerfile differs from %s:\n--- got\n%s\n--- want\n%s", path, got, want)
			}
		})
	}
}

func TestResolveBase(t *testing.T) {
	cfg := NewDefaultConfig()
	for in, want := range map[string]string{
		"ubuntu":                  "ubuntu:22.04",
		"busybox":                 "local/busybox:1",
		"thumb.v7":                "127.0.0.1:5000/alice/thumb:v7",
		"my-ufop.v12":             "127.0.0.1:5000/alice/my-ufop:v12",
		"local/busybox:1":         "local/busybox:1",
		"127.0.0.1:5000/bob/x:v1": "127.0.0.1:5000/bob/x:v1",
		"debian:bookworm":         "debian:bookworm",
	} {
		got, err := cfg.ResolveBase(in, "alice")
		if err != nil || got != want {
			t.Errorf("ResolveBase(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestRenderEnvLineBreak(t *testing.T) {
	spec := &ufop.Spec{Image: "busybox", Run: "x", Env: map[string]string{"A": "1\n2"}}
	_, err := RenderDockerfile(spec, RenderOptions{Base: "b", User: "1:1", Port: 9100})
	if err == nil || !strings.Contains(err.Error(), "env: A") {
		t.Fatalf("err = %v", err)
	}
}
