package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/qufop/qufop/auth"
	"github.com/qufop/qufop/control/api"
	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/ufop"
)

// upload takes a tarball (the request body), checks it, records a new
// version in state "building" and starts its build. The answer (202) comes
// once the tarball is accepted; the build log follows at .../log.
func (s *Server) upload(c *gin.Context) {
	rec := record(c)
	ctx := c.Request.Context()
	if err := os.MkdirAll(s.cfg.WorkDir, 0o755); err != nil {
		fail(c, errs.Failed(err, "work folder"))
		return
	}
	tmp, err := os.MkdirTemp(s.cfg.WorkDir, "upload-"+rec.Name+"-")
	if err != nil {
		fail(c, errs.Failed(err, "work folder"))
		return
	}
	keep := false
	defer func() {
		if !keep {
			os.RemoveAll(tmp)
		}
	}()
	tarPath := filepath.Join(tmp, "upload.tar")
	if err := s.saveUpload(c, tarPath); err != nil {
		fail(c, err)
		return
	}
	f, err := os.Open(tarPath)
	if err != nil {
		fail(c, errs.Failed(err, "reading the upload"))
		return
	}
	// Unpack once here so that a bad tarball is refused in the answer to the
	// upload, not later in a build log.
	spec, err := s.build.Unpack(ctx, f, filepath.Join(tmp, "check"))
	f.Close()
	if err != nil {
		fail(c, err)
		return
	}
	os.RemoveAll(filepath.Join(tmp, "check"))

	var n int
	updated, err := s.keeper.Update(ctx, rec.Name, func(r *ufop.Record) error {
		n = r.NextVersion()
		r.Versions = append(r.Versions, ufop.Version{
			N: n, State: ufop.Building, Desc: c.Query("desc"), CreatedAt: s.now().UTC(), Spec: spec,
		})
		return nil
	})
	if err != nil {
		fail(c, err)
		return
	}
	logw, err := s.logs.Create(updated.Owner, updated.Name, n)
	if err != nil {
		s.finishBuild(updated.Name, n, Built{}, errs.Failed(err, "creating the build log"))
		fail(c, errs.Failed(err, "creating the build log"))
		return
	}
	keep = true
	s.startBuild(Build{Owner: updated.Owner, Name: updated.Name, Version: n, Tarball: tarPath, Spec: spec}, tmp, logw)
	c.JSON(http.StatusAccepted, api.Uploaded{Name: updated.Name, Version: n, State: string(ufop.Building)})
}

// saveUpload writes the body to path, within the size cap. auth.Verify
// required the signed X-Qiniu-Content-Sha256 of this unsigned body and made
// the body check it at its end; the cap is applied outside that check, so
// an upload over the cap is "too large", not "corrupted" (a truncated read
// can never match its digest).
func (s *Server) saveUpload(c *gin.Context, path string) error {
	if c.Request.ContentLength > s.cfg.MaxUploadBytes {
		return tooLarge(s.cfg.MaxUploadBytes)
	}
	if c.GetHeader(auth.HeaderSHA256) == "" {
		// Verify refuses such a request with a body; this is for a handler
		// mounted without it.
		return errs.BadRequest("missing %s: send the tarball's SHA-256 (hex) in this signed header", auth.HeaderSHA256)
	}
	body := io.LimitReader(c.Request.Body, s.cfg.MaxUploadBytes+1)
	f, err := os.Create(path)
	if err != nil {
		return errs.Failed(err, "saving the upload")
	}
	defer f.Close()
	n, err := io.Copy(f, body)
	switch {
	case n > s.cfg.MaxUploadBytes:
		return tooLarge(s.cfg.MaxUploadBytes)
	case errors.Is(err, auth.ErrDigestMismatch):
		return errs.BadRequest("upload corrupted: its SHA-256 does not match %s", auth.HeaderSHA256)
	case err != nil:
		return errs.Wrap(http.StatusBadRequest, err, "reading the upload failed")
	case n == 0:
		return errs.BadRequest("empty upload: send the tarball as the request body")
	}
	return f.Close()
}

func tooLarge(max int64) error {
	return errs.New(http.StatusRequestEntityTooLarge, "tarball too large: over the %d-byte limit", max)
}

func buildKey(name string) string { return name }

func (s *Server) buildRunning(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running[buildKey(name)]
}

// startBuild runs the build in the background; the server's lifetime, not
// the upload request's, bounds it.
func (s *Server) startBuild(b Build, tmp string, logw io.WriteCloser) {
	s.mu.Lock()
	s.running[buildKey(b.Name)] = true
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer os.RemoveAll(tmp)
		fmt.Fprintf(logw, "qufop: building %s version %d\n", b.Name, b.Version)
		built, err := s.build.Build(s.ctx, b, logw)
		if err != nil {
			fmt.Fprintf(logw, "qufop: build failed: %s\n", errs.Public(err))
			if errs.Public(err) != err.Error() {
				fmt.Fprintf(logw, "qufop: cause: %v\n", err)
			}
		} else {
			fmt.Fprintf(logw, "qufop: build success: %s%s\n", built.Image, built.Dir)
		}
		logw.Close()
		s.finishBuild(b.Name, b.Version, built, err)
	}()
}

func (s *Server) finishBuild(name string, n int, built Built, berr error) {
	_, err := s.keeper.Update(context.Background(), name, func(r *ufop.Record) error {
		v := r.Version(n)
		if v == nil {
			return nil
		}
		if berr != nil {
			v.State, v.Error = ufop.BuildFailed, errs.Public(berr)
			return nil
		}
		v.State, v.Image, v.Dir = ufop.BuildSuccess, built.Image, built.Dir
		return nil
	})
	if err != nil {
		s.log.Error("recording a build result failed", "ufop", name, "version", n, "err", err)
	}
	s.mu.Lock()
	delete(s.running, buildKey(name))
	s.mu.Unlock()
	s.log.Info("build ended", "ufop", name, "version", n, "err", berr)
}

func (s *Server) versions(c *gin.Context) {
	c.JSON(http.StatusOK, versionViews(record(c).Versions))
}

func versionParam(c *gin.Context) (*ufop.Version, bool) {
	n, err := strconv.Atoi(c.Param("version"))
	if err != nil {
		fail(c, errs.BadRequest("bad version %q", c.Param("version")))
		return nil, false
	}
	v := record(c).Version(n)
	if v == nil {
		fail(c, errs.NotFound("ufop %q has no version %d", record(c).Name, n))
		return nil, false
	}
	return v, true
}

func (s *Server) version(c *gin.Context) {
	if v, ok := versionParam(c); ok {
		c.JSON(http.StatusOK, versionView(*v))
	}
}

// buildLog streams a version's build log; with follow=1 it streams until
// the build ends.
func (s *Server) buildLog(c *gin.Context) {
	rec := record(c)
	v, ok := versionParam(c)
	if !ok {
		return
	}
	follow := c.Query("follow") == "1" || c.Query("follow") == "true"
	c.Header("Content-Type", "text/plain; charset=utf-8")
	c.Header("Cache-Control", "no-store")
	c.Status(http.StatusOK)
	w := flushWriter{c.Writer}
	done := func() bool {
		if !follow {
			return true
		}
		if s.buildRunning(rec.Name) {
			return false
		}
		// The build may have ended before this request: re-read the state.
		r, err := s.keeper.Get(context.Background(), rec.Name)
		if err != nil {
			return true
		}
		cur := r.Version(v.N)
		return cur == nil || cur.State != ufop.Building
	}
	if err := s.logs.Follow(c.Request.Context(), rec.Owner, rec.Name, v.N, done, w); err != nil && c.Request.Context().Err() == nil {
		fmt.Fprintf(w, "\nqufop: log unavailable: %v\n", errs.Public(err))
	}
}

// flushWriter pushes every write to the client at once (streamed logs).
type flushWriter struct{ w gin.ResponseWriter }

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	f.w.Flush()
	return n, err
}
