package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/color"
	_ "image/jpeg"
	"image/png"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/auth"
	"github.com/qufop/qufop/fop"
	fimage "github.com/qufop/qufop/fop/image"
	"github.com/qufop/qufop/storage"
	"github.com/qufop/qufop/storage/local"
)

// lateObjects lets the image commands read through a server built after
// them, as platform wires it.
type lateObjects struct{ srv *Server }

func (o *lateObjects) ReadObject(ctx context.Context, from, bucket, key string, max int64) ([]byte, error) {
	return o.srv.ReadObject(ctx, from, bucket, key, max)
}

// watermarkServing serves, with the image commands, buckets holding a
// real photograph (storm.jpg) and a 40×30 red PNG (logo.png): "pics"
// (alice's, public), "secret" (alice's, private), "bobs" (bob's, private)
// and "bobpub" (bob's, public).
func watermarkServing(t *testing.T, fast bool) string {
	t.Helper()
	photo, err := os.ReadFile("../testdata/images/storm-1920x1080.jpg")
	require.NoError(t, err)
	logo := image.NewNRGBA(image.Rect(0, 0, 40, 30))
	for i := 0; i < len(logo.Pix); i += 4 {
		logo.Pix[i], logo.Pix[i+3] = 255, 255
	}
	var buf bytes.Buffer
	require.NoError(t, png.Encode(&buf, logo))
	var bs []storage.Bucket
	for _, name := range []string{"pics", "secret", "bobs", "bobpub"} {
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, "storm.jpg"), photo, 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "logo.png"), buf.Bytes(), 0o644))
		b, err := local.New(name, dir)
		require.NoError(t, err)
		bs = append(bs, b)
	}
	set, err := storage.NewSet(bs...)
	require.NoError(t, err)
	objs := &lateObjects{}
	icfg := fimage.NewDefaultConfig()
	icfg.Objects = objs
	img, err := fimage.New(icfg)
	require.NoError(t, err)
	reg := fop.Registry{}
	img.Register(reg)
	var keys auth.Users
	keys.Add("alice", aliceKeys)
	keys.Add("bob", bobKeys)
	cfg := NewDefaultConfig()
	cfg.FastFront = fast
	srv, err := New(cfg, set, reg, nil, WithAccess(records{
		"pics":   {Owner: "alice"},
		"secret": {Owner: "alice", Private: true},
		"bobs":   {Owner: "bob", Private: true},
		"bobpub": {Owner: "bob"},
	}, keys.Lookup, "admin"))
	require.NoError(t, err)
	objs.srv = srv
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	cancel, done := start(srv, ln)
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after its context ended")
		}
	})
	return "http://" + ln.Addr().String()
}

// TestWatermarkFromStorage: watermark/1 reads its image from the buckets
// the gateway serves, whatever host its URL names, within the rules of
// private buckets.
func TestWatermarkFromStorage(t *testing.T) {
	for _, fast := range []bool{false, true} {
		domain := watermarkServing(t, fast)
		e := time.Now().Add(time.Hour).Unix()
		wm := func(bucket, key string) string {
			return "watermark/1/image/" + fop.EncodeBase64([]byte("https://cdn.example.com/"+bucket+"/"+key))
		}
		tests := []struct {
			name   string
			url    string
			status int
			err    string // substring of the error
		}{
			{"same bucket", domain + "/pics/storm.jpg?" + wm("pics", "logo.png"), 200, ""},
			{"another owner's public bucket", domain + "/pics/storm.jpg?" + wm("bobpub", "logo.png"), 200, ""},
			{"private, from the owner's private bucket", signed(aliceKeys, domain, "secret/storm.jpg?"+wm("secret", "logo.png"), e), 200, ""},
			{"private, from the owner's public bucket", domain + "/pics/storm.jpg?" + wm("secret", "logo.png"), 403, `bucket "secret" is private`},
			{"private, of another owner", signed(aliceKeys, domain, "secret/storm.jpg?"+wm("bobs", "logo.png"), e), 403, `bucket "bobs" is private`},
			{"missing key", domain + "/pics/storm.jpg?" + wm("pics", "nope.png"), 400, `no object "nope.png" in bucket "pics"`},
			{"missing bucket", domain + "/pics/storm.jpg?" + wm("nobucket", "logo.png"), 400, `no bucket "nobucket"`},
		}
		for _, tc := range tests {
			status, body, hdr := fetch(t, tc.url)
			name := tc.name
			if fast {
				name += " (fast front)"
			}
			if !assert.Equal(t, tc.status, status, "%s: %.300q", name, body) {
				continue
			}
			if tc.status != 200 {
				var e apiError
				require.NoError(t, json.Unmarshal([]byte(body), &e), name)
				assert.Contains(t, e.Error, tc.err, name)
				continue
			}
			assert.Equal(t, "image/jpeg", hdr.Get("Content-Type"), name)
			im, _, err := image.Decode(strings.NewReader(body))
			require.NoError(t, err, name)
			require.Equal(t, image.Rect(0, 0, 1920, 1080), im.Bounds(), name)
			// The red logo sits at the default SouthEast, 10 px in.
			for _, p := range []image.Point{{1920 - 10 - 40 + 2, 1080 - 10 - 30 + 2}, {1920 - 10 - 3, 1080 - 10 - 3}} {
				c := color.NRGBAModel.Convert(im.At(p.X, p.Y)).(color.NRGBA)
				assert.True(t, c.R > 215 && c.G < 40 && c.B < 40, "%s: %v at %v, want red", name, c, p)
			}
			c := color.NRGBAModel.Convert(im.At(1920-10-40-6, 1080-10-30-6)).(color.NRGBA)
			assert.False(t, c.R > 200 && c.G < 60 && c.B < 60, "%s: %v outside the logo is red", name, c)
		}
	}
}
