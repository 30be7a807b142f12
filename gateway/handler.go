package gateway

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/fop"
	"github.com/qufop/qufop/storage"
)

// object serves GET/HEAD /<bucket>/<key>[?<chain>][&k=v...].
func (s *Server) object(c *gin.Context) {
	key := strings.TrimPrefix(c.Param("key"), "/")
	chain, err := fop.Parse(c.Request.URL.RawQuery)
	if err != nil {
		s.fail(c, err)
		return
	}
	if chain.Empty() {
		c.Set(ctxCommand, "-")
	} else {
		c.Set(ctxCommand, chain.Cmds[0].Name)
	}
	// Check the whole chain before touching storage: a bad step anywhere is
	// a 400 that costs no I/O.
	procs, err := s.resolve(chain)
	if err != nil {
		s.fail(c, err)
		return
	}
	b, err := s.buckets.Bucket(c.Param("bucket"))
	if err != nil {
		s.fail(c, err)
		return
	}
	if chain.Empty() {
		s.download(c, b, key, chain)
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), s.cfg.RequestTimeout)
	defer cancel()

	rc, obj, err := b.Open(ctx, key)
	if err != nil {
		s.fail(c, err)
		return
	}
	defer rc.Close()
	if obj.Size > s.cfg.MaxSourceBytes {
		s.fail(c, errs.BadRequest("source is %d bytes, over the %d-byte limit of synchronous processing", obj.Size, s.cfg.MaxSourceBytes))
		return
	}
	// The result of a chain on an unchanged object is the same: its ETag is
	// derived from both, so CDNs and browsers revalidate without a rerun.
	etag := resultETag(obj.ETag, chain.Raw)
	if etag != "" && etagMatch(c.GetHeader("If-None-Match"), etag) {
		c.Header("ETag", etag)
		c.Status(http.StatusNotModified)
		return
	}
	data, err := readAll(rc, obj.Size, s.cfg.MaxSourceBytes)
	if err != nil {
		s.fail(c, err)
		return
	}
	rc.Close()

	blob := fop.Blob{Data: data, MIME: obj.MIME}
	for i, cmd := range chain.Cmds {
		blob, err = s.step(ctx, procs[i], cmd, blob)
		if err != nil {
			s.fail(c, err)
			return
		}
	}
	h := c.Writer.Header()
	if blob.NoStore {
		h.Set("Cache-Control", "no-store")
	} else if etag != "" {
		h.Set("ETag", etag)
	}
	setAttachment(c, chain)
	c.Data(http.StatusOK, blob.MIME, blob.Data)
}

// resolve finds the processor of every step and lets it check its
// parameters.
func (s *Server) resolve(chain fop.Chain) ([]fop.Processor, error) {
	procs := make([]fop.Processor, len(chain.Cmds))
	for i, cmd := range chain.Cmds {
		p, ok := s.cmds[cmd.Name]
		if !ok {
			return nil, cmd.Errorf("unknown command %q", cmd.Name)
		}
		if v, ok := p.(fop.Validator); ok {
			if err := v.Validate(cmd); err != nil {
				return nil, err
			}
		}
		procs[i] = p
	}
	return procs, nil
}

// step runs one built-in step on a worker of the pool.
func (s *Server) step(ctx context.Context, p fop.Processor, cmd fop.Cmd, in fop.Blob) (fop.Blob, error) {
	start := time.Now()
	var out fop.Blob
	err := s.pool.Run(ctx, func() error {
		var err error
		out, err = p.Process(ctx, cmd, in)
		return err
	})
	s.m.steps.WithLabelValues(cmd.Name, itoa(errs.Status(err))).Inc()
	s.m.stepTime.WithLabelValues(cmd.Name).Observe(time.Since(start).Seconds())
	if err != nil {
		return fop.Blob{}, err
	}
	out.Derived = true
	if out.MIME == "" {
		out.MIME = http.DetectContentType(out.Data)
	}
	return out, nil
}

// download serves the object as stored, with ranges and conditional requests
// when the bucket's reader can seek.
func (s *Server) download(c *gin.Context, b storage.Bucket, key string, chain fop.Chain) {
	rc, obj, err := b.Open(c.Request.Context(), key)
	if err != nil {
		s.fail(c, err)
		return
	}
	defer rc.Close()
	if obj.MIME != "" {
		c.Header("Content-Type", obj.MIME)
	}
	if obj.ETag != "" {
		c.Header("ETag", `"`+obj.ETag+`"`)
	}
	setAttachment(c, chain)
	if rs, ok := rc.(io.ReadSeeker); ok {
		http.ServeContent(c.Writer, c.Request, "", obj.ModTime, rs)
		return
	}
	c.Header("Content-Length", strconv.FormatInt(obj.Size, 10))
	c.Status(http.StatusOK)
	if c.Request.Method != http.MethodHead {
		_, _ = io.Copy(c.Writer, rc)
	}
}

// readAll reads a source of a known size, refusing more than max bytes even
// if the object grew since it was opened.
func readAll(r io.Reader, size, max int64) ([]byte, error) {
	var buf bytes.Buffer
	if size > 0 && size <= max {
		buf.Grow(int(size))
	}
	n, err := buf.ReadFrom(io.LimitReader(r, max+1))
	if err != nil {
		return nil, errs.Failed(err, "reading the source failed")
	}
	if n > max {
		return nil, errs.BadRequest("source is over the %d-byte limit of synchronous processing", max)
	}
	return buf.Bytes(), nil
}

func resultETag(srcETag, chain string) string {
	if srcETag == "" {
		return ""
	}
	h := sha1.Sum([]byte(srcETag + "|" + chain))
	return `"` + hex.EncodeToString(h[:12]) + `"`
}

func etagMatch(header, etag string) bool {
	if header == "" {
		return false
	}
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(t), "W/"))
		if t == "*" || t == etag {
			return true
		}
	}
	return false
}

// setAttachment honours Qiniu's attname download parameter.
func setAttachment(c *gin.Context, chain fop.Chain) {
	if name := chain.Download.Get("attname"); name != "" {
		c.Header("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
