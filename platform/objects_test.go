package platform

import (
	"bytes"
	"image"
	"image/color"
	_ "image/jpeg"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/qufop/qufop/fop"
)

// TestWatermarkWiring: the data plane's image commands read watermark
// images from the buckets it serves.
func TestWatermarkWiring(t *testing.T) {
	photo, err := os.ReadFile("../testdata/images/storm-1920x1080.jpg")
	if err != nil {
		t.Fatal(err)
	}
	logo := image.NewNRGBA(image.Rect(0, 0, 40, 30))
	for i := 0; i < len(logo.Pix); i += 4 {
		logo.Pix[i], logo.Pix[i+3] = 255, 255
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, logo); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, b := range map[string][]byte{"storm.jpg": photo, "logo.png": buf.Bytes()} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c := NewDefaultGatewayConfig()
	dp := newDataPlane(c)
	if err := dp.addBuckets([]Bucket{{Name: "pics", Dir: dir}}); err != nil {
		t.Fatal(err)
	}
	srv, err := dp.server(c)
	if err != nil {
		t.Fatal(err)
	}
	q := "/pics/storm.jpg?watermark/1/image/" + fop.EncodeBase64([]byte("http://localhost/pics/logo.png"))
	w := httptest.NewRecorder()
	srv.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, q, nil))
	if w.Code != 200 {
		t.Fatalf("%s: %d %s", q, w.Code, w.Body.String())
	}
	im, _, err := image.Decode(w.Body)
	if err != nil {
		t.Fatal(err)
	}
	c2 := color.NRGBAModel.Convert(im.At(1920-10-20, 1080-10-15)).(color.NRGBA)
	if c2.R < 215 || c2.G > 40 || c2.B > 40 {
		t.Errorf("%v at the logo's place, want red", c2)
	}
}
