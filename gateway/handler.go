package gateway

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
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
	key, query := s.styled(c.Param("bucket"), strings.TrimPrefix(c.Param("key"), "/"), c.Request.URL.RawQuery)
	// Until the chain is resolved its first name is only what the client
	// sent: the metrics call it "other" (see otherCommand).
	c.Set(ctxCommand, otherCommand)
	chain, err := fop.Parse(query)
	if err != nil {
		s.fail(c, err)
		return
	}
	if chain.Empty() {
		c.Set(ctxCommand, "-")
	} else if _, builtin := s.cmds[chain.Cmds[0].Name]; builtin {
		c.Set(ctxCommand, chain.Cmds[0].Name)
	}
	b, err := s.buckets.Bucket(c.Param("bucket"))
	if err != nil {
		s.fail(c, err)
		return
	}
	tctx, err := s.authorize(c.Request.Context(), b.Name(), c.Request.RequestURI, c.Request.Host)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.Request = c.Request.WithContext(tctx)
	// The request's deadline covers the lookups of its steps too: a KV
	// store that stops answering costs a 504, not a stuck request.
	ctx, cancel := context.WithTimeout(fop.WithReqID(c.Request.Context(), c.GetString(ctxReqID)), s.cfg.RequestTimeout)
	defer cancel()
	// Check the whole chain before reading the object: a bad step anywhere
	// is a 400 that costs no I/O.
	steps, err := s.resolve(ctx, chain, b.Name())
	if len(steps) > 0 && steps[0].p != nil {
		c.Set(ctxCommand, chain.Cmds[0].Name) // a built-in or a UFOP that exists
	}
	if err != nil {
		s.fail(c, err)
		return
	}
	if chain.Empty() {
		release, err := s.limit(ctx, chain)
		if err != nil {
			s.fail(c, err)
			return
		}
		defer release()
		s.download(c, b, key, chain)
		return
	}
	res, err := s.run(ctx, b, key, chain, steps, c.GetHeader("If-None-Match"))
	if err != nil {
		s.fail(c, err)
		return
	}
	res.headers(chain, c.Writer.Header().Set)
	if res.notModified {
		c.Status(http.StatusNotModified)
		return
	}
	c.Data(http.StatusOK, res.blob.MIME, res.blob.Data)
}

// result is a processed chain, for either front to write.
type result struct {
	blob        fop.Blob
	etag        string // of the result; "" if the source has none
	notModified bool   // ifNoneMatch matched etag: nothing was run
}

// headers sets the caching and download headers of the answer, on either
// front: the ETag (alone on a 304), or no-store for results that must not
// be cached, and attname's Content-Disposition.
func (r result) headers(chain fop.Chain, set func(name, value string)) {
	switch {
	case r.notModified:
		set("ETag", r.etag)
		return
	case r.blob.NoStore:
		set("Cache-Control", "no-store")
	case r.etag != "":
		set("ETag", r.etag)
	}
	if d := attachment(chain); d != "" {
		set("Content-Disposition", d)
	}
}

// run reads the source at key and runs the resolved steps of chain on it.
func (s *Server) run(ctx context.Context, b storage.Bucket, key string, chain fop.Chain, steps []stepProc, ifNoneMatch string) (result, error) {
	// The per-user limits, on both fronts, before any I/O: a refusal
	// costs none.
	release, err := s.limit(ctx, chain)
	if err != nil {
		return result{}, err
	}
	defer release()
	rc, obj, err := b.Open(ctx, key)
	if err != nil {
		return result{}, err
	}
	defer rc.Close()
	if obj.Size > s.cfg.MaxSourceBytes {
		return result{}, errs.BadRequest("source is %d bytes, over the %d-byte limit of synchronous processing", obj.Size, s.cfg.MaxSourceBytes)
	}
	// The result of a chain on an unchanged object by unchanged processors
	// is the same: its ETag is derived from the object, the chain and the
	// version of every step, so CDNs and browsers revalidate without a
	// rerun, and get the new output after an upgrade.
	versions := make([]string, len(steps))
	for i, sp := range steps {
		versions[i] = sp.version()
	}
	etag := resultETag(obj.ETag, chain.Raw, versions)
	if etag != "" && etagMatch(ifNoneMatch, etag) {
		return result{etag: etag, notModified: true}, nil
	}
	data, err := readAll(rc, obj.Size, s.cfg.MaxSourceBytes)
	if err != nil {
		return result{}, err
	}
	rc.Close()

	blob := fop.Blob{Data: data, MIME: obj.MIME, Bucket: b.Name(), Key: key}
	served := false // a step ran another version than resolved (a canary)
	for i, cmd := range chain.Cmds {
		blob, err = s.step(ctx, steps[i], cmd, blob)
		if err != nil {
			return result{}, err
		}
		if blob.Version != "" && blob.Version != versions[i] {
			versions[i], served = blob.Version, true
		}
	}
	if served {
		// The ETag names what made these bytes, so the client's next
		// If-None-Match is checked against the version that made them.
		etag = resultETag(obj.ETag, chain.Raw, versions)
	}
	return result{blob: blob, etag: etag}, nil
}

// stepProc is the processor of one step: a built-in command, run on the
// worker pool, or a UFOP, whose instances bound their own concurrency.
type stepProc struct {
	p       fop.Processor
	builtin bool
}

// version is the version of the step's processor, "" if it has none.
func (sp stepProc) version() string {
	if v, ok := sp.p.(fop.Versioner); ok {
		return v.Version()
	}
	return ""
}

// resolve finds the processor of every step and lets built-ins check their
// parameters. bucket's owner is the caller of the chain's UFOPs. On an
// error the steps found before it are still returned (their p set), so
// that the metrics may name a chain by a first command that exists.
func (s *Server) resolve(ctx context.Context, chain fop.Chain, bucket string) ([]stepProc, error) {
	steps := make([]stepProc, len(chain.Cmds))
	for i, cmd := range chain.Cmds {
		if p, ok := s.cmds[cmd.Name]; ok {
			steps[i] = stepProc{p: p, builtin: true}
			if v, ok := p.(fop.Validator); ok {
				if err := v.Validate(cmd); err != nil {
					return steps, err
				}
			}
			continue
		}
		if s.ufops != nil {
			p, err := s.ufops.Resolve(ctx, cmd, s.bucketInfo(bucket).Owner)
			var known *errs.Error
			if err != nil && ctx.Err() != nil && !errors.As(err, &known) {
				// The lookup ran out of time (or the client left) and
				// says nothing else: 504 (499), not "processing failed".
				err = contextError(ctx)
			}
			if err != nil {
				return steps, err
			}
			if p != nil {
				steps[i] = stepProc{p: p}
				continue
			}
		}
		return steps, cmd.Errorf("unknown command %q", cmd.Name)
	}
	return steps, nil
}

// step runs one step: a built-in on a worker of the pool, a UFOP directly.
func (s *Server) step(ctx context.Context, sp stepProc, cmd fop.Cmd, in fop.Blob) (fop.Blob, error) {
	start := time.Now()
	var out fop.Blob
	run := func() error {
		var err error
		out, err = sp.p.Process(ctx, cmd, in)
		return err
	}
	var err error
	if sp.builtin {
		err = s.pool.Run(ctx, run)
	} else {
		err = run()
	}
	s.m.steps.WithLabelValues(cmd.Name, itoa(errs.Status(err))).Inc()
	s.m.stepTime.WithLabelValues(cmd.Name).Observe(time.Since(start).Seconds())
	if err != nil {
		return fop.Blob{}, err
	}
	out.Derived = true
	out.Bucket, out.Key = in.Bucket, in.Key
	if sp.builtin {
		// A built-in may hand its input back (ignore-error): the version
		// of the step before is not this step's.
		out.Version = ""
	}
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
// if the object grew since it was opened. An object held in memory is not
// copied: steps never modify their input.
func readAll(r io.Reader, size, max int64) ([]byte, error) {
	if b, ok := r.(storage.Byteser); ok {
		data := b.Bytes()
		if int64(len(data)) > max {
			return nil, errs.BadRequest("source is over the %d-byte limit of synchronous processing", max)
		}
		return data, nil
	}
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

// resultETag is the strong ETag of a chain's result: a hash of the source's
// ETag, the chain and the version of each step's processor ("" for none).
func resultETag(srcETag, chain string, versions []string) string {
	if srcETag == "" {
		return ""
	}
	h := sha1.New()
	h.Write([]byte(srcETag + "|" + chain))
	for _, v := range versions {
		// NUL cannot occur in a version or a chain: no two lists of
		// versions hash alike.
		h.Write([]byte{0})
		h.Write([]byte(v))
	}
	return `"` + hex.EncodeToString(h.Sum(nil)[:12]) + `"`
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
	if d := attachment(chain); d != "" {
		c.Header("Content-Disposition", d)
	}
}

// attachment is the Content-Disposition asked for by attname, or "".
func attachment(chain fop.Chain) string {
	if name := chain.Download.Get("attname"); name != "" {
		return mime.FormatMediaType("attachment", map[string]string{"filename": name})
	}
	return ""
}

func itoa(n int) string { return strconv.Itoa(n) }
