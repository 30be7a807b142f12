package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/qufop/qufop/auth"
	"github.com/qufop/qufop/client"
)

// Environment variables that override the saved login.
const (
	envAddr      = "QUFOP_ADDR"
	envAccessKey = "QUFOP_ACCESS_KEY"
	envSecretKey = "QUFOP_SECRET_KEY"
	envConfig    = "QUFOP_CONFIG"
)

var errNotLoggedIn = errors.New("not logged in: run qufop login (or set QUFOP_ADDR, QUFOP_ACCESS_KEY, QUFOP_SECRET_KEY)")

// loginConfig is what `qufop login` saves.
type loginConfig struct {
	Addr      string `json:"addr"`
	AccessKey string `json:"access_key"`
	SecretKey string `json:"secret_key"`
}

// loginConfigPath is $QUFOP_CONFIG or ~/.qufop/config.json.
func loginConfigPath() (string, error) {
	if p := os.Getenv(envConfig); p != "" {
		return p, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no home folder for the login file (set %s): %v", envConfig, err)
	}
	return filepath.Join(home, ".qufop", "config.json"), nil
}

// readLoginConfig reads the saved login; a missing file is an empty one.
func readLoginConfig() (loginConfig, string, error) {
	var c loginConfig
	path, err := loginConfigPath()
	if err != nil {
		return c, "", err
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return c, path, nil
	}
	if err != nil {
		return c, path, fmt.Errorf("reading the login: %v", err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, path, fmt.Errorf("login file %s is damaged (%v): run qufop login again", path, err)
	}
	return c, path, nil
}

// writeLoginConfig saves c at path, readable by the user only.
func writeLoginConfig(path string, c loginConfig) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("saving the login: %v", err)
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".config-*.json")
	if err != nil {
		return fmt.Errorf("saving the login: %v", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("saving the login: %v", err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("saving the login: %v", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("saving the login: %v", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("saving the login: %v", err)
	}
	return nil
}

// loadLogin is the saved login with the environment's overrides.
func loadLogin() (loginConfig, error) {
	c, _, err := readLoginConfig()
	envSet := os.Getenv(envAccessKey) != "" && os.Getenv(envSecretKey) != ""
	if err != nil && !envSet {
		return c, err
	}
	for _, o := range []struct {
		v   *string
		env string
	}{{&c.Addr, envAddr}, {&c.AccessKey, envAccessKey}, {&c.SecretKey, envSecretKey}} {
		if v := os.Getenv(o.env); v != "" {
			*o.v = v
		}
	}
	if c.AccessKey == "" || c.SecretKey == "" {
		return c, errNotLoggedIn
	}
	if c.Addr == "" {
		c.Addr = client.DefaultAddr
	}
	return c, nil
}

// newAPIClient returns a client of the management API as the logged-in
// user.
func newAPIClient() (*client.Client, error) {
	c, err := loadLogin()
	if err != nil {
		return nil, err
	}
	if _, err := client.BaseURL(c.Addr); err != nil {
		return nil, err
	}
	return client.New(c.Addr, auth.Credentials{AccessKey: c.AccessKey, SecretKey: c.SecretKey}), nil
}

// isTerminal reports whether f is an *os.File on a terminal.
func isTerminal(f any) bool {
	file, ok := f.(*os.File)
	return ok && term.IsTerminal(int(file.Fd()))
}

// interruptContext ends on Ctrl-C or SIGTERM.
func interruptContext(parent context.Context) (context.Context, context.CancelFunc) {
	if parent == nil {
		parent = context.Background()
	}
	return signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
}

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// qufopctlTime is qufopctl's time format (2015-09-08 15:33:15 +0800 CST).
func qufopctlTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05 -0700 MST")
}

// modeName is qufopctl's access mode (PRIVATE, PUBLIC).
func modeName(m string) string { return strings.ToUpper(m) }
