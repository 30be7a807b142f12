package auth

import (
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"io"
	"strings"
)

// DigestReader passes r through and, at EOF, fails with ErrDigestMismatch
// unless the data's SHA-256 is want (hex). A signed X-Qiniu-Content-Sha256
// thus covers a body too large to be in the signing string.
type DigestReader struct {
	r    io.Reader
	h    hash.Hash
	want string
}

// NewDigestReader wraps r; want is a hex SHA-256.
func NewDigestReader(r io.Reader, want string) *DigestReader {
	return &DigestReader{r: r, h: sha256.New(), want: strings.ToLower(want)}
}

func (d *DigestReader) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	d.h.Write(p[:n])
	if err == io.EOF && hex.EncodeToString(d.h.Sum(nil)) != d.want {
		return n, ErrDigestMismatch
	}
	return n, err
}
