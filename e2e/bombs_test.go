package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// maxBombRSS bounds the gateway's peak resident memory over the whole
// bombardment, with a wide margin: a bomb decoded would take from 400 MB
// (the 20000x20000 PNG at 8 bits) to 17 GB (65535x65535 RGB).
const maxBombRSS = 300 << 20

// TestImageBombs runs `qufop gateway` as a process of its own over a bucket
// of image bombs (fop/image/testdata/bombs, and two test images cut in
// half), sends each bomb through several processing URLs from 4 clients at
// once, expects a 400 naming the limit for every one, and bounds the
// process's peak RSS (VmHWM) over the whole run. Loopback only; no Docker.
func TestImageBombs(t *testing.T) {
	work := t.TempDir()
	bin := filepath.Join(work, "qufop")
	goBuild(t, bin, "./cmd/qufop", true)

	bucket := filepath.Join(work, "bombs")
	require.NoError(t, os.Mkdir(bucket, 0o755))
	bombs := map[string]string{ // file: what the 400 says
		"jpeg-65535x65535.jpg":     "source image too large: 65535x65535 (limit 30000 px per side)",
		"png-65535x65535.png":      "source image too large: 65535x65535 (limit 30000 px per side)",
		"png-bomb-20000x20000.png": "source image too large: 20000x20000 (limit 150000000 pixels)",
		"gif-10000-frames.gif":     "too many frames: 10000 (limit 200)",
		"png-truncated.png":        "invalid or truncated image data",
		"jpeg-truncated.jpg":       "invalid or truncated image data",
	}
	for name := range bombs {
		b, err := os.ReadFile(filepath.Join("..", "fop", "image", "testdata", "bombs", name))
		if os.IsNotExist(err) && strings.Contains(name, "truncated") {
			src := map[string]string{"png": "mate-stripes-dark-1920x1440.png", "jpeg": "storm-1920x1080.jpg"}[strings.Split(name, "-")[0]]
			b, err = os.ReadFile(filepath.Join("..", "testdata", "images", src))
			b = b[:len(b)/2]
		}
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(bucket, name), b, 0o644))
	}
	good, err := os.ReadFile(filepath.Join("..", "testdata", "images", "storm-1920x1080.jpg"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(bucket, "storm.jpg"), good, 0o644))

	addr := freePort(t)
	logf, err := os.Create(filepath.Join(work, "gateway.log"))
	require.NoError(t, err)
	cmd := exec.Command(bin, "gateway", "--listen", addr, "--bucket", "b="+bucket, "--quiet", "--workers", "4")
	cmd.Stdout, cmd.Stderr = logf, logf
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-done:
		case <-time.After(time.Minute):
			_ = cmd.Process.Kill()
			<-done
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("gateway output:\n%s", tail(string(b), 40))
		}
	})
	base := "http://" + addr
	require.Eventually(t, func() bool {
		r, err := http.Get(base + "/health")
		if err == nil {
			r.Body.Close()
		}
		return err == nil
	}, 2*time.Minute, 50*time.Millisecond, "qufop gateway did not come up")

	// The gateway processes images: a real one is served.
	r, err := http.Get(base + "/b/storm.jpg?imageView2/2/w/200")
	require.NoError(t, err)
	b, _ := io.ReadAll(r.Body)
	r.Body.Close()
	require.Equal(t, 200, r.StatusCode, string(b))
	baseline := vmHWM(t, cmd.Process.Pid)

	cmds := []string{
		"imageView2/2/w/200", "imageView2/1/w/200/h/200/format/gif",
		"imageMogr2/thumbnail/200x", "imageMogr2/rotate/90", "imageAve",
	}
	type job struct{ file, q string }
	jobs := make(chan job)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var fails []string
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if msg := bombStatus(base+"/b/"+j.file+"?"+j.q, bombs[j.file]); msg != "" {
					mu.Lock()
					fails = append(fails, j.file+"?"+j.q+": "+msg)
					mu.Unlock()
				}
			}
		}()
	}
	sent := 0
	for round := 0; round < 3; round++ {
		for file := range bombs {
			for _, q := range cmds {
				jobs <- job{file, q}
				sent++
			}
		}
	}
	close(jobs)
	wg.Wait()
	for _, f := range fails {
		t.Error(f)
	}
	peak := vmHWM(t, cmd.Process.Pid)
	t.Logf("%d bomb requests, %d not the 400 expected: gateway VmHWM %d MB after a real image, %d MB after the bombs (bound %d MB)",
		sent, len(fails), baseline>>20, peak>>20, maxBombRSS>>20)
	assert.Less(t, peak, int64(maxBombRSS), "peak RSS of the gateway")
}

// bombStatus GETs url and returns what is wrong with the answer, "" for a
// Qiniu-style 400 whose error says want.
func bombStatus(url, want string) string {
	r, err := http.Get(url)
	if err != nil {
		return err.Error()
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return err.Error()
	}
	var e struct {
		Code  int    `json:"code"`
		Error string `json:"error"`
	}
	if r.StatusCode != 400 || json.Unmarshal(b, &e) != nil || e.Code != 400 {
		return fmt.Sprintf("status %d: %.200q", r.StatusCode, b)
	}
	if !strings.Contains(e.Error, want) {
		return fmt.Sprintf("error %q, want it to say %q", e.Error, want)
	}
	return ""
}

// vmHWM is the peak resident set size of process pid, in bytes.
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			require.NoError(t, err)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/<pid>/status")
	return 0
}
