package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/qufop/qufop/control/api"
)

func userPath(name, rest string) string { return "/v1/users/" + url.PathEscape(name) + rest }

// AddUser creates a user of class ("" is free) and returns its keys: the
// only time the secret key is shown. Admin only.
func (c *Client) AddUser(ctx context.Context, name, class string) (*api.Keys, error) {
	var out api.Keys
	if err := c.call(ctx, http.MethodPost, "/v1/users", nil, api.NewUserRequest{Name: name, Class: class}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Users lists the users (no secret keys). Admin only.
func (c *Client) Users(ctx context.Context) ([]api.User, error) {
	var out []api.User
	err := c.call(ctx, http.MethodGet, "/v1/users", nil, nil, &out)
	return out, err
}

// DeleteUser removes a user and its keys (refused while it owns UFOPs).
// Admin only.
func (c *Client) DeleteUser(ctx context.Context, name string) error {
	return c.call(ctx, http.MethodDelete, userPath(name, ""), nil, nil, &api.UserDeleted{})
}

// RotateKeys replaces a user's key pair and returns the new one, once; the
// old pair stops working within a second. Admin only.
func (c *Client) RotateKeys(ctx context.Context, name string) (*api.Keys, error) {
	var out api.Keys
	if err := c.call(ctx, http.MethodPost, userPath(name, "/keys"), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SetUserLimits replaces a user's own limits (zero fields: its class's).
// Admin only.
func (c *Client) SetUserLimits(ctx context.Context, name string, l api.Limits) (*api.User, error) {
	var out api.User
	if err := c.call(ctx, http.MethodPut, userPath(name, "/limits"), nil, l, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SetClassLimits replaces the limits of a class (free or paid). Admin
// only.
func (c *Client) SetClassLimits(ctx context.Context, class string, l api.Limits) (*api.ClassLimits, error) {
	var out api.ClassLimits
	if err := c.call(ctx, http.MethodPut, "/v1/classes/"+url.PathEscape(class)+"/limits", nil, l, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
