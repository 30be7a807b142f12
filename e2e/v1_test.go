package e2e

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// v1Source is an example Qiniu v1 program as its author ships it: the
// static binary and the example's ufop.yaml, unchanged.
func v1Source(t *testing.T, example string) string {
	t.Helper()
	dir := t.TempDir()
	goBuild(t, filepath.Join(dir, example), "./examples/"+example, false)
	spec, err := os.ReadFile(filepath.Join("..", "examples", example, "ufop.yaml"))
	require.NoError(t, err)
	require.NotContains(t, string(spec), "health", "a Qiniu v1 ufop.yaml has no health key")
	require.NotContains(t, string(spec), "protocol", "nor a protocol")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "ufop.yaml"), spec, 0o644))
	return dir
}

// Qiniu's first-generation programs (POST /uop on 9100, no /health,
// PORT_HTTP ignored, ufop.yaml with image, build_script and run only)
// deploy and answer through qufop unchanged.
func TestQiniuV1Programs(t *testing.T) {
	p := startPlatform(t)
	suffix := time.Now().UnixNano() % 1e6
	typ, fetch := fmt.Sprintf("v1type-%d", suffix), fmt.Sprintf("v1fetch-%d", suffix)
	sample, err := os.ReadFile("../platform/sample/sample.jpg")
	require.NoError(t, err)

	for _, u := range []struct{ name, example string }{{typ, "ufop-v1-type"}, {fetch, "ufop-v1-fetch"}} {
		p.must("reg", u.name, "-m", "2", "-d", "a Qiniu v1 program")
		out := p.must("build", u.name, "-f", v1Source(t, u.example))
		assert.Contains(t, out, "build success", out)
		p.must("chver", u.name, "-c", "1")
		out = p.must("resize", u.name, "-n", "2")
		assert.Contains(t, out, "2 instance(s) of "+u.name+" version 1 healthy.", out)
		info := p.must("info", u.name, "--json")
		var rec struct {
			Versions []struct {
				Spec struct{ Protocol, Health string } `json:"spec"`
			} `json:"versions"`
		}
		require.NoError(t, json.Unmarshal([]byte(info), &rec), info)
		require.Len(t, rec.Versions, 1)
		assert.Equal(t, "uop", rec.Versions[0].Spec.Protocol, "a Qiniu ufop.yaml is a v1 program")
		assert.Empty(t, rec.Versions[0].Spec.Health)
		s := p.state(u.name)
		require.Len(t, s.Instances, 2)
		for i, in := range s.Instances {
			assert.Equal(t, i+1, in.Index)
			assert.True(t, in.Healthy, "instance %d", in.Index)
			assert.NotEmpty(t, in.BridgeAddr)
			assert.True(t, strings.HasPrefix(in.HostAddr, "127.0.0.1:"), in.HostAddr)
		}
	}

	// It reads src.mimetype and src.fsize, and fetches nothing.
	code, ctype, body := p.get("/demo/sample.jpg?" + typ)
	require.Equal(t, 200, code, body)
	assert.Equal(t, "application/json", ctype)
	assert.JSONEq(t, fmt.Sprintf(`{"mimetype":"image/jpeg","kind":"image","fsize":%d,"bucket":"demo","key":"sample.jpg"}`, len(sample)), body)
	code, _, body = p.get("/demo/sample.jpg?imageView2/2/w/100/format/png|" + typ + "/kind")
	require.Equal(t, 200, code, body)
	assert.Equal(t, "image\n", body)
	code, _, body = p.get("/demo/sample.jpg?" + typ + "/nope")
	assert.Equal(t, 599, code, "its own error comes back as 599 with its message")
	assert.Contains(t, body, "unknown command nope")

	// It fetches src.url: the object, or the previous step's output.
	sum := md5.Sum(sample)
	code, _, body = p.get("/demo/sample.jpg?" + fetch)
	require.Equal(t, 200, code, body)
	assert.JSONEq(t, fmt.Sprintf(`{"md5":%q,"size":%d}`, hex.EncodeToString(sum[:]), len(sample)), body)
	_, _, thumb := p.get("/demo/sample.jpg?imageView2/2/w/100")
	tsum := md5.Sum([]byte(thumb))
	code, _, body = p.get("/demo/sample.jpg?imageView2/2/w/100|" + fetch)
	require.Equal(t, 200, code, body)
	assert.JSONEq(t, fmt.Sprintf(`{"md5":%q,"size":%d}`, hex.EncodeToString(tsum[:]), len(thumb)), body)

	// Both instances serve: sequential calls take turns.
	for range 6 {
		code, _, _ := p.get("/demo/sample.jpg?" + typ)
		require.Equal(t, 200, code)
	}
	for _, idx := range []string{"1", "2"} {
		logs := p.must("logs", typ, "-index", idx)
		assert.Contains(t, logs, "ufop-v1-type listening on 0.0.0.0:9100")
		assert.Contains(t, logs, `cmd="`+typ+`"`, "instance %s served some of the calls", idx)
	}

	for _, name := range []string{typ, fetch} {
		out := p.must("unreg", name)
		assert.Contains(t, out, "Ufop "+name+" unregistered.")
		assert.Contains(t, out, "removed ")
	}
}
