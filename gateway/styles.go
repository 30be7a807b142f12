package gateway

// Bucket styles, Qiniu's aliases of processing chains: in a bucket whose
// record names style "thumb" = "imageView2/2/w/200", with "-" among its
// separators, GET /<bucket>/cat.jpg-thumb is GET /<bucket>/cat.jpg?imageView2/2/w/200:
// the same run, bytes, headers, ETag and errors, on either front. The
// download token of a private bucket still signs the URL as sent.
//
// As Qiniu's service does, the separator is looked for first: a key that
// ends with <sep><name> of an existing style is always styled, even when an
// object of that literal name exists (a CDN caches the URL as the style's
// result either way). A key whose suffix names no style is an object key
// like any other (a missing one is the plain 404).

import (
	"strings"

	"github.com/qufop/qufop/fop"
)

// styled resolves a styled key of bucket: it returns the object's key and
// the query to run (the style's chain, then the steps of the request's own
// chain, if any, then its download parameters). Keys that name no style
// come back as they are.
func (s *Server) styled(bucket, key, rawQuery string) (string, string) {
	info := s.bucketInfo(bucket)
	if len(info.Styles) == 0 || info.Separator == "" {
		return key, rawQuery
	}
	// Style names hold no separator: the name is what follows the last.
	i := strings.LastIndexAny(key, info.Separator)
	if i <= 0 {
		return key, rawQuery
	}
	chain, ok := info.Styles[key[i+1:]]
	if !ok {
		return key, rawQuery
	}
	if rawQuery == "" {
		return key[:i], chain
	}
	own, err := fop.Parse(rawQuery)
	if err != nil {
		// Answered as the request's own error, with nothing resolved.
		return key, rawQuery
	}
	if own.Empty() {
		return key[:i], chain + "&" + rawQuery // download parameters only
	}
	// Steps of the URL's own follow the style's, as a pipeline.
	q := chain + "|" + own.Raw
	if _, rest, ok := strings.Cut(rawQuery, "&"); ok {
		q += "&" + rest
	}
	return key[:i], q
}
