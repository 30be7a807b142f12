package control

import (
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/qufop/qufop/control/api"
	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/tenant"
	"github.com/qufop/qufop/users"
)

// WithUsers serves the users API (/v1/users, /v1/classes) on store. admin
// is the platform's admin user (its keys are the platform's, not in the
// store): the only one who may call it. Call it before Mount.
func (s *Server) WithUsers(store *users.Store, admin string) *Server {
	s.accounts, s.admin = store, admin
	return s
}

// mountUsers adds the users API, admin only, when there is a store.
func (s *Server) mountUsers(v1 *gin.RouterGroup) {
	if s.accounts == nil {
		return
	}
	g := v1.Group("", adminOnly(s.admin, "users and classes"))
	g.POST("/users", s.addUser)
	g.GET("/users", s.listUsers)
	g.DELETE("/users/:user", s.deleteUser)
	g.POST("/users/:user/keys", s.rotateKeys)
	g.PUT("/users/:user/limits", s.setUserLimits)
	g.PUT("/classes/:class/limits", s.setClassLimits)
}

// adminOnly lets only admin (none if "") through to routes that manage
// what, for the 403's message.
func adminOnly(admin, what string) gin.HandlerFunc {
	return func(c *gin.Context) {
		if admin == "" || c.GetString(ctxUser) != admin {
			fail(c, errs.New(http.StatusForbidden, "only the admin manages %s", what))
			return
		}
		c.Next()
	}
}

func (s *Server) addUser(c *gin.Context) {
	var in api.NewUserRequest
	if !bindJSON(c, &in) {
		return
	}
	class, err := tenant.ParseClass(in.Class)
	if err != nil {
		fail(c, errs.BadRequest("%v", err))
		return
	}
	u, err := s.accounts.Create(c.Request.Context(), in.Name, class)
	if err != nil {
		fail(c, err)
		return
	}
	s.log.Info("user added", "user", u.Name, "class", u.Class, "by", c.GetString(ctxUser))
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, api.Keys{Name: u.Name, Class: string(u.Class), AccessKey: u.Keys[0].AccessKey, SecretKey: u.Keys[0].SecretKey})
}

func (s *Server) listUsers(c *gin.Context) {
	list, err := s.accounts.List(c.Request.Context())
	if err != nil {
		fail(c, err)
		return
	}
	out := make([]api.User, 0, len(list))
	for i := range list {
		out = append(out, userView(&list[i]))
	}
	c.JSON(http.StatusOK, out)
}

func userView(u *users.User) api.User {
	return api.User{Name: u.Name, Class: string(u.Class), AccessKey: u.AccessKey(), Limits: limitsView(u.Limits), CreatedAt: u.CreatedAt}
}

func limitsView(l tenant.Limits) api.Limits {
	return api.Limits{RPS: l.RPS, Burst: l.Burst, Commands: l.Commands}
}

// deleteUser removes a user and its keys. A user who still owns UFOPs or
// buckets is refused (409, naming them): their records, images and
// instances would be left with an owner nobody can sign as.
func (s *Server) deleteUser(c *gin.Context) {
	name := c.Param("user")
	if name == s.admin {
		fail(c, errs.New(http.StatusForbidden, "the admin user %q cannot be deleted", name))
		return
	}
	ctx := c.Request.Context()
	if _, err := s.accounts.Get(ctx, name); err != nil {
		fail(c, err)
		return
	}
	recs, err := s.keeper.List(ctx)
	if err != nil {
		fail(c, err)
		return
	}
	var owned []string
	for _, r := range recs {
		if r.Owner == name {
			owned = append(owned, r.Name)
		}
	}
	if len(owned) > 0 {
		fail(c, errs.New(http.StatusConflict, "user %q owns ufops %s: unreg them first", name, strings.Join(owned, ", ")))
		return
	}
	// Nor buckets: their requests' tenant would be nobody, and a private
	// one would take tokens signed with keys that no longer exist.
	if s.buckets != nil {
		bs, err := s.buckets.keeper.List(ctx)
		if err != nil {
			fail(c, err)
			return
		}
		owned = owned[:0]
		for _, b := range bs {
			if b.Owner == name {
				owned = append(owned, b.Name)
			}
		}
		if len(owned) > 0 {
			fail(c, errs.New(http.StatusConflict, "user %q owns buckets %s: remove them first (qufop bucket rm NAME)", name, strings.Join(owned, ", ")))
			return
		}
	}
	if err := s.accounts.Delete(ctx, name); err != nil {
		fail(c, err)
		return
	}
	s.log.Info("user deleted", "user", name, "by", c.GetString(ctxUser))
	c.JSON(http.StatusOK, api.UserDeleted{Name: name})
}

func (s *Server) rotateKeys(c *gin.Context) {
	name := c.Param("user")
	if name == s.admin {
		fail(c, errs.BadRequest("the admin's keys are the platform's (its environment or admin.json), not the user store's"))
		return
	}
	creds, err := s.accounts.Rotate(c.Request.Context(), name)
	if err != nil {
		fail(c, err)
		return
	}
	s.log.Info("user keys rotated", "user", name, "by", c.GetString(ctxUser))
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, api.Keys{Name: name, AccessKey: creds.AccessKey, SecretKey: creds.SecretKey})
}

func bindLimits(c *gin.Context) (tenant.Limits, bool) {
	var in api.Limits
	if !bindJSON(c, &in) {
		return tenant.Limits{}, false
	}
	l := tenant.Limits{RPS: in.RPS, Burst: in.Burst, Commands: in.Commands}
	if err := users.CheckLimits(l); err != nil {
		fail(c, err)
		return tenant.Limits{}, false
	}
	return l, true
}

func (s *Server) setUserLimits(c *gin.Context) {
	l, ok := bindLimits(c)
	if !ok {
		return
	}
	u, err := s.accounts.SetLimits(c.Request.Context(), c.Param("user"), l)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, userView(u))
}

func (s *Server) setClassLimits(c *gin.Context) {
	class := tenant.Class(c.Param("class"))
	if _, err := tenant.ParseClass(string(class)); err != nil || class == "" {
		fail(c, errs.NotFound("no such class %q: want free or paid", class))
		return
	}
	l, ok := bindLimits(c)
	if !ok {
		return
	}
	if err := s.accounts.SetClassLimits(c.Request.Context(), class, l); err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, api.ClassLimits{Class: string(class), Limits: limitsView(l)})
}
