package builder

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/go-connections/nat"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/qufop/qufop/ufop"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func TestRenderBuildScriptGolden(t *testing.T) {
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
		{"multiline", `image: local/busybox:1
build_script:
  - |
    if [ -f $RESOURCE/x ]; then
      cp $RESOURCE/x .
    fi
run: ./app --port $PORT_HTTP
`},
		{"empty", `image: thumb.v7
run: ./thumb
`},
	}
	for _, tc := range cases {
		t.Run(tc.golden, func(t *testing.T) {
			spec, err := ufop.ParseSpec([]byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			got, err := RenderBuildScript(spec, DefaultUser)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tc.golden+".sh.golden")
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
				t.Errorf("build script differs from %s:\n--- got\n%s\n--- want\n%s", path, got, want)
			}
		})
	}
}

func TestRenderBuildScriptBadUser(t *testing.T) {
	spec := &ufop.Spec{Image: "busybox", Run: "x"}
	if _, err := RenderBuildScript(spec, "ufop"); err == nil {
		t.Fatal("non-numeric user accepted")
	}
	if _, err := RenderBuildScript(nil, DefaultUser); err == nil {
		t.Fatal("nil spec accepted")
	}
}

func TestImageConfig(t *testing.T) {
	cfg := NewDefaultConfig()
	cfg.Labels = map[string]string{"qufop.platform": "p1"}
	spec := &ufop.Spec{Image: "busybox", Run: "./app --port $PORT_HTTP", Env: map[string]string{
		"LANG": "C.UTF-8", "GREETING": `say "hi" for $5 \o/`, "HOME": "/elsewhere", "MULTI": "a\nb",
	}}
	job := Job{Owner: "alice", Name: "demo", Version: 3}
	c := imageConfig(spec, nil, cfg, job)
	wantEnv := []string{"PORT_HTTP=9100", `GREETING=say "hi" for $5 \o/`, "LANG=C.UTF-8", "MULTI=a\nb", "HOME=/home/ufop"}
	if !slices.Equal(c.Env, wantEnv) {
		t.Errorf("env %q, want %q", c.Env, wantEnv)
	}
	if c.User != "10001:10001" || c.WorkingDir != AppDir || c.StopSignal != "SIGTERM" {
		t.Errorf("user %q, workdir %q, stop signal %q", c.User, c.WorkingDir, c.StopSignal)
	}
	if _, ok := c.ExposedPorts[nat.Port("9100/tcp")]; !ok || len(c.ExposedPorts) != 1 {
		t.Errorf("exposed ports %v", c.ExposedPorts)
	}
	if !slices.Equal(c.Cmd, []string{"/bin/sh", "-c", spec.Run}) {
		t.Errorf("cmd %q", c.Cmd)
	}
	if c.Entrypoint == nil || len(c.Entrypoint) != 0 {
		t.Errorf("entrypoint %#v, want empty and not nil (so docker commit does not fill it in)", c.Entrypoint)
	}
	want := map[string]string{"qufop.platform": "p1", "qufop.ufop": "demo", "qufop.owner": "alice", "qufop.version": "3"}
	if len(c.Labels) != len(want) {
		t.Errorf("labels %v, want %v", c.Labels, want)
	}
	for k, v := range want {
		if c.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, c.Labels[k], v)
		}
	}
	if be := buildEnv(spec); slices.Contains(be, "HOME=/home/ufop") || !slices.Contains(be, "HOME=/elsewhere") || !slices.Contains(be, "PORT_HTTP=9100") {
		t.Errorf("build env %q", be)
	}

	// A base's entrypoint is kept (the build container runs without it).
	base := &image.InspectResponse{Config: &dockerspec.DockerOCIImageConfig{ImageConfig: ocispec.ImageConfig{Entrypoint: []string{"/entry.sh"}}}}
	if c := imageConfig(spec, base, cfg, job); !slices.Equal(c.Entrypoint, []string{"/entry.sh"}) {
		t.Errorf("entrypoint %q", c.Entrypoint)
	}
}

func TestResolveBase(t *testing.T) {
	cfg := NewDefaultConfig()
	ns := cfg
	ns.Namespace = "plat-1"
	local := ns
	local.Registry = ""
	for _, tc := range []struct {
		cfg      Config
		in, want string
	}{
		{cfg, "ubuntu", "ubuntu:22.04"},
		{cfg, "busybox", "local/busybox:1"},
		{cfg, "thumb.v7", "127.0.0.1:5000/alice/thumb:v7"},
		{cfg, "my-ufop.v12", "127.0.0.1:5000/alice/my-ufop:v12"},
		{cfg, "local/busybox:1", "local/busybox:1"},
		{cfg, "127.0.0.1:5000/bob/x:v1", "127.0.0.1:5000/bob/x:v1"},
		{cfg, "debian:bookworm", "debian:bookworm"},
		{ns, "busybox", "local/busybox:1"},
		{ns, "thumb.v7", "127.0.0.1:5000/plat-1/alice/thumb:v7"},
		{local, "thumb.v7", "plat-1/alice/thumb:v7"},
	} {
		got, err := tc.cfg.ResolveBase(tc.in, "alice")
		if err != nil || got != tc.want {
			t.Errorf("ResolveBase(%q) with namespace %q = %q, %v; want %q", tc.in, tc.cfg.Namespace, got, err, tc.want)
		}
	}
}

func TestTagAndParseTag(t *testing.T) {
	cfg := NewDefaultConfig()
	ns := cfg
	ns.Namespace = "plat-1"
	bare := cfg
	bare.Registry = ""
	nsBare := ns
	nsBare.Registry = ""
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{cfg, "127.0.0.1:5000/alice/demo:v3"},
		{ns, "127.0.0.1:5000/plat-1/alice/demo:v3"},
		{bare, "alice/demo:v3"},
		{nsBare, "plat-1/alice/demo:v3"},
	} {
		tag := tc.cfg.Tag("alice", "demo", 3)
		if tag != tc.want {
			t.Errorf("Tag = %q, want %q", tag, tc.want)
		}
		o, n, v, ok := tc.cfg.ParseTag(tag)
		if !ok || o != "alice" || n != "demo" || v != 3 {
			t.Errorf("ParseTag(%q) = %q %q %d %v", tag, o, n, v, ok)
		}
	}
	for _, tc := range []struct {
		cfg Config
		ref string
	}{
		{cfg, "local/busybox:1"},
		{cfg, "127.0.0.1:5000/plat-1/alice/demo:v3"}, // another platform's
		{ns, "127.0.0.1:5000/alice/demo:v3"},
		{ns, "127.0.0.1:5000/plat-2/alice/demo:v3"},
		{cfg, "127.0.0.1:5000/alice/demo:v03"},
		{cfg, "127.0.0.1:5000/alice/demo:v0"},
		{cfg, "127.0.0.1:5000/alice/demo:latest"},
		{cfg, "127.0.0.1:5000/alice/demo@sha256:abc"},
		{cfg, "127.0.0.1:5000/Alice/demo:v1"},
		{cfg, "127.0.0.1:5001/alice/demo:v1"},
		{bare, "127.0.0.1:5000/alice/demo:v1"},
		{nsBare, "alice/demo:v1"},
	} {
		if o, n, v, ok := tc.cfg.ParseTag(tc.ref); ok {
			t.Errorf("ParseTag(%q) with namespace %q = %q %q %d, want refused", tc.ref, tc.cfg.Namespace, o, n, v)
		}
	}
}

func TestConfigValidateNamespaceAndLabels(t *testing.T) {
	base := NewDefaultConfig()
	for _, ns := range []string{"", "plat-1", "a.b_c", strings.Repeat("n", 64)} {
		c := base
		c.Namespace = ns
		if err := c.Validate(); err != nil {
			t.Errorf("namespace %q: %v", ns, err)
		}
	}
	for _, ns := range []string{"Plat", "a/b", "-a", "a-", "a..b", strings.Repeat("n", 65), "a b"} {
		c := base
		c.Namespace = ns
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "namespace") {
			t.Errorf("namespace %q: err %v", ns, err)
		}
	}
	c := base
	c.Labels = map[string]string{"qufop.platform": "p1", "other": ""}
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
	for _, k := range []string{"qufop.ufop", "qufop.owner", "qufop.version", "", "a=b", "a b"} {
		c := base
		c.Labels = map[string]string{k: "x"}
		if err := c.Validate(); err == nil {
			t.Errorf("label %q accepted", k)
		}
	}
}
