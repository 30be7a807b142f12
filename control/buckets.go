package control

import (
	"net/http"
	"os"
	"path/filepath"

	"github.com/gin-gonic/gin"

	"github.com/qufop/qufop/buckets"
	"github.com/qufop/qufop/control/api"
	"github.com/qufop/qufop/errs"
)

// bucketsAPI serves /v1/buckets (admin only).
type bucketsAPI struct {
	keeper *buckets.Keeper
	admin  string
	// taken reports the names of buckets that have no record (the
	// --bucket flags of this node): a record may not shadow them.
	taken func(name string) bool
}

// WithBuckets serves the buckets API over keeper; admin alone may call it.
// taken names the buckets served without a record (nil: none). Call it
// before Mount.
func (s *Server) WithBuckets(keeper *buckets.Keeper, admin string, taken func(string) bool) *Server {
	s.buckets = &bucketsAPI{keeper: keeper, admin: admin, taken: taken}
	return s
}

func (s *Server) mountBuckets(v1 *gin.RouterGroup) {
	b := s.buckets
	if b == nil {
		return
	}
	g := v1.Group("/buckets", adminOnly(b.admin, "buckets"))
	g.POST("", s.addBucket)
	g.GET("", s.listBuckets)
	g.DELETE("/:bucket", s.deleteBucket)
	g.GET("/:bucket/styles", s.bucketStyles)
	g.PUT("/:bucket/styles/:style", s.setBucketStyle)
	g.DELETE("/:bucket/styles/:style", s.removeBucketStyle)
	g.PUT("/:bucket/separator", s.setBucketSeparator)
}

func (s *Server) addBucket(c *gin.Context) {
	var in api.NewBucketRequest
	if !bindJSON(c, &in) {
		return
	}
	b := s.buckets
	if in.Owner == "" {
		in.Owner = b.admin
	}
	if b.taken != nil && b.taken(in.Name) {
		fail(c, errs.New(buckets.StatusExists, "bucket %q already exists (served from a --bucket flag)", in.Name))
		return
	}
	// Every gateway opens the directory by this path, whatever its own
	// working directory: it must be absolute.
	if !filepath.IsAbs(in.Dir) {
		fail(c, errs.BadRequest("bucket %q: dir %q is not an absolute path", in.Name, in.Dir))
		return
	}
	in.Dir = filepath.Clean(in.Dir)
	if fi, err := os.Stat(in.Dir); err != nil {
		fail(c, errs.BadRequest("bucket %q: dir %q does not exist on this node", in.Name, in.Dir))
		return
	} else if !fi.IsDir() {
		fail(c, errs.BadRequest("bucket %q: %q is not a directory", in.Name, in.Dir))
		return
	}
	rec := buckets.Record{Name: in.Name, Dir: in.Dir, Owner: in.Owner, Private: in.Private, CreatedAt: s.now().UTC()}
	if err := b.keeper.Create(c.Request.Context(), rec); err != nil {
		fail(c, err)
		return
	}
	s.log.Info("bucket added", "bucket", rec.Name, "dir", rec.Dir, "owner", rec.Owner, "private", rec.Private, "by", c.GetString(ctxUser))
	c.JSON(http.StatusOK, bucketView(rec))
}

func (s *Server) listBuckets(c *gin.Context) {
	list, err := s.buckets.keeper.List(c.Request.Context())
	if err != nil {
		fail(c, err)
		return
	}
	out := make([]api.Bucket, 0, len(list))
	for _, r := range list {
		out = append(out, bucketView(r))
	}
	c.JSON(http.StatusOK, out)
}

func (s *Server) deleteBucket(c *gin.Context) {
	name := c.Param("bucket")
	if err := s.buckets.keeper.Delete(c.Request.Context(), name); err != nil {
		fail(c, err)
		return
	}
	s.log.Info("bucket removed", "bucket", name, "by", c.GetString(ctxUser))
	c.JSON(http.StatusOK, api.BucketDeleted{Name: name})
}

func bucketView(r buckets.Record) api.Bucket {
	return api.Bucket{Name: r.Name, Dir: r.Dir, Owner: r.Owner, Private: r.Private, CreatedAt: r.CreatedAt}
}
