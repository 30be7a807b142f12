package builder

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/image"
	"github.com/qufop/qufop/errs"
)

// Remove deletes one built image, artifact being a Result.Image of this
// configuration (any other reference is refused): first its manifest from
// the registry, then the tag from the daemon.
//
// The daemon's removal is not forced: it untags, and deletes the image only
// when nothing else holds it. An image that other images were built on
// (a version named as another UFOP's base) stays as their untagged parent,
// so they keep working; a container of it makes the removal fail. Parents
// left untagged that way are pruned with the last image built on them:
// they could be named no more, and would pile up; tagged parents (the base
// images) and parents of other images or containers are never pruned.
// Not finding the image or the manifest is no error: Remove may be repeated.
// A registry that refuses deletions (405: storage.delete not enabled) is
// reported in the error, after the local removal was done all the same.
// Deleting a manifest does not free its layers in the registry's storage
// until the registry's garbage collection runs.
func (d *Docker) Remove(ctx context.Context, artifact string) error {
	owner, name, _, ok := d.cfg.ParseTag(artifact)
	if !ok {
		return errs.BadRequest("%q is not an image of this builder (want %s)", artifact, d.cfg.Tag("<owner>", "<name>", 1))
	}
	var msgs []string
	status := errs.StatusProcessingFailed
	if d.cfg.Registry != "" {
		repo := strings.TrimPrefix(d.cfg.Repository(owner, name), d.cfg.Registry+"/")
		tag := artifact[strings.LastIndexByte(artifact, ':')+1:]
		if err := d.reg.deleteManifest(ctx, repo, tag); err != nil {
			msgs = append(msgs, err.Error())
		}
	}
	if _, err := d.c.ImageRemove(ctx, artifact, image.RemoveOptions{PruneChildren: true}); err != nil && !cerrdefs.IsNotFound(err) {
		msgs = append(msgs, fmt.Sprintf("daemon: %v", err))
		if cerrdefs.IsConflict(err) { // a container uses it
			status = http.StatusConflict
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return errs.New(status, "removing %s: %s", artifact, strings.Join(msgs, "; "))
}

// manifestTypes are the manifests the daemon pushes (schema 2) and OCI ones.
var manifestTypes = []string{
	"application/vnd.docker.distribution.manifest.v2+json",
	"application/vnd.oci.image.manifest.v1+json",
}

// registryClient speaks the registry's HTTP API for what the daemon does
// not do: deleting manifests. It uses HTTPS, except on loopback addresses,
// and falls back to plain HTTP when the registry does not speak TLS, as the
// daemon does for insecure registries.
type registryClient struct {
	addr string
	hc   *http.Client
}

func newRegistryClient(addr string) *registryClient {
	return &registryClient{addr: addr, hc: &http.Client{Timeout: time.Minute}}
}

func (r *registryClient) schemes() []string {
	host := r.addr
	if h, _, err := net.SplitHostPort(r.addr); err == nil {
		host = h
	}
	if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
		return []string{"http"}
	}
	return []string{"https", "http"}
}

// do sends a request to path, trying the schemes in turn while the
// connection itself fails.
func (r *registryClient) do(ctx context.Context, method, path string, header http.Header) (*http.Response, error) {
	var err error
	for _, scheme := range r.schemes() {
		var req *http.Request
		req, err = http.NewRequestWithContext(ctx, method, scheme+"://"+r.addr+path, nil)
		if err != nil {
			return nil, err
		}
		for k, v := range header {
			req.Header[k] = v
		}
		var resp *http.Response
		if resp, err = r.hc.Do(req); err == nil {
			return resp, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, err
}

// deleteManifest deletes repo:tag's manifest by its digest; a missing one
// is no error.
func (r *registryClient) deleteManifest(ctx context.Context, repo, tag string) error {
	resp, err := r.do(ctx, http.MethodHead, "/v2/"+repo+"/manifests/"+tag, http.Header{"Accept": manifestTypes})
	if err != nil {
		return fmt.Errorf("registry %s: %w", r.addr, err)
	}
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("registry %s: manifest of %s:%s: %s", r.addr, repo, tag, resp.Status)
	}
	digest := resp.Header.Get("Docker-Content-Digest")
	if digest == "" {
		return fmt.Errorf("registry %s: manifest of %s:%s has no Docker-Content-Digest", r.addr, repo, tag)
	}
	resp, err = r.do(ctx, http.MethodDelete, "/v2/"+repo+"/manifests/"+digest, nil)
	if err != nil {
		return fmt.Errorf("registry %s: %w", r.addr, err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusAccepted, http.StatusOK, http.StatusNotFound:
		return nil
	case http.StatusMethodNotAllowed:
		return fmt.Errorf("registry %s does not allow deleting manifests (405; storage.delete.enabled is off): %s:%s stays in the registry", r.addr, repo, tag)
	}
	return fmt.Errorf("registry %s: deleting %s@%s: %s %s", r.addr, repo, digest, resp.Status, strings.TrimSpace(string(body)))
}
