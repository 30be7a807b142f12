package control

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/qufop/qufop/buckets"
	"github.com/qufop/qufop/control/api"
)

// The styles of a bucket record (/v1/buckets/NAME/styles and /separator,
// admin only as the rest of /v1/buckets). The Keeper checks names, chains
// and separators; the gateways pick changes up with the record.

func (s *Server) bucketStyles(c *gin.Context) {
	rec, err := s.buckets.keeper.Get(c.Request.Context(), c.Param("bucket"))
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, stylesView(*rec))
}

func (s *Server) setBucketStyle(c *gin.Context) {
	var in api.StyleRequest
	if !bindJSON(c, &in) {
		return
	}
	name, style := c.Param("bucket"), c.Param("style")
	rec, err := s.buckets.keeper.SetStyle(c.Request.Context(), name, style, in.Chain)
	if err != nil {
		fail(c, err)
		return
	}
	s.log.Info("bucket style set", "bucket", name, "style", style, "chain", in.Chain, "by", c.GetString(ctxUser))
	c.JSON(http.StatusOK, stylesView(*rec))
}

func (s *Server) removeBucketStyle(c *gin.Context) {
	name, style := c.Param("bucket"), c.Param("style")
	rec, err := s.buckets.keeper.RemoveStyle(c.Request.Context(), name, style)
	if err != nil {
		fail(c, err)
		return
	}
	s.log.Info("bucket style removed", "bucket", name, "style", style, "by", c.GetString(ctxUser))
	c.JSON(http.StatusOK, stylesView(*rec))
}

func (s *Server) setBucketSeparator(c *gin.Context) {
	var in api.SeparatorRequest
	if !bindJSON(c, &in) {
		return
	}
	name := c.Param("bucket")
	rec, err := s.buckets.keeper.SetSeparator(c.Request.Context(), name, in.Separator)
	if err != nil {
		fail(c, err)
		return
	}
	s.log.Info("bucket style separator set", "bucket", name, "separator", in.Separator, "by", c.GetString(ctxUser))
	c.JSON(http.StatusOK, stylesView(*rec))
}

func stylesView(r buckets.Record) api.BucketStyles {
	st := map[string]string{}
	for k, v := range r.Styles {
		st[k] = v
	}
	return api.BucketStyles{Bucket: r.Name, Separator: r.Separators(), Styles: st}
}
